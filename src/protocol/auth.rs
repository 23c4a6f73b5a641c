//! Authentication plugins: scramble generation, the client-side computations the proxy does
//! when it logs in to a backend, and the server-side checks it does for its own clients.
//!
//! The proxy knows every product user's password, so it can verify
//! `mysql_native_password` and the `caching_sha2_password` fast path by recomputing the
//! client's proof; no RSA exchange is ever needed.

use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::ProtocolError;

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const ED25519: &str = "client_ed25519";

/// Length of the scramble (nonce) the proxy sends in its greeting.
pub const SCRAMBLE_LEN: usize = 20;

/// A fresh random scramble. Bytes are 7-bit, never NUL and never `$`, like the server's,
/// because clients treat the scramble as a C string in places.
pub fn new_scramble() -> [u8; SCRAMBLE_LEN] {
    let mut s = [0u8; SCRAMBLE_LEN];
    rand::thread_rng().fill_bytes(&mut s);
    for b in &mut s {
        *b &= 0x7F;
        if *b == 0 || *b == b'$' {
            *b = b'0' + (*b % 10);
        }
    }
    s
}

/// `SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))`; empty for an empty password.
pub fn native_proof(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    xor_proof::<Sha1>(password, scramble, true)
}

/// `SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble)`; empty for an empty
/// password.
pub fn caching_sha2_proof(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    xor_proof::<Sha256>(password, scramble, false)
}

/// The shape both scramble plugins share: `H(p) XOR H(x)` where `x` is the scramble and
/// `H(H(p))` concatenated (scramble first for native, last for caching_sha2).
fn xor_proof<D: Digest>(password: &[u8], scramble: &[u8], scramble_first: bool) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = D::digest(password);
    let stage2 = D::digest(&stage1);
    let mut h = D::new();
    if scramble_first {
        h.update(scramble);
        h.update(&stage2);
    } else {
        h.update(&stage2);
        h.update(scramble);
    }
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// MariaDB's `client_ed25519`: an Ed25519 signature of the scramble whose secret key is
/// expanded from SHA-512 of the password (instead of from a 32-byte seed).
pub fn ed25519_proof(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
    use curve25519_dalek::scalar::{clamp_integer, Scalar};

    let az = Sha512::digest(password);
    let mut lower = [0u8; 32];
    lower.copy_from_slice(&az[..32]);
    let a = Scalar::from_bytes_mod_order(clamp_integer(lower));
    let public = (&a * ED25519_BASEPOINT_TABLE).compress();

    let r = Scalar::from_hash(Sha512::new().chain_update(&az[32..]).chain_update(scramble));
    let big_r = (&r * ED25519_BASEPOINT_TABLE).compress();
    let k = Scalar::from_hash(
        Sha512::new().chain_update(big_r.as_bytes()).chain_update(public.as_bytes()).chain_update(scramble),
    );
    let s = k * a + r;
    let mut sig = Vec::with_capacity(64);
    sig.extend_from_slice(big_r.as_bytes());
    sig.extend_from_slice(s.as_bytes());
    sig
}

/// The proof a client must send for `plugin`, computed from the password the proxy knows.
pub fn proof_for(plugin: &str, password: &[u8], scramble: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    match plugin {
        NATIVE => Ok(native_proof(password, scramble)),
        CACHING_SHA2 => Ok(caching_sha2_proof(password, scramble)),
        ED25519 => Ok(ed25519_proof(password, scramble)),
        other => Err(ProtocolError::UnsupportedPlugin(other.to_string())),
    }
}

/// Checks a client's proof in constant time with respect to its content.
pub fn verify(plugin: &str, password: &[u8], scramble: &[u8], proof: &[u8]) -> bool {
    let expected = match plugin {
        NATIVE => native_proof(password, scramble),
        CACHING_SHA2 => caching_sha2_proof(password, scramble),
        _ => return false,
    };
    // Some clients send a trailing NUL after an empty proof.
    let proof = if expected.is_empty() && proof == [0] { &[][..] } else { proof };
    if expected.len() != proof.len() {
        return false;
    }
    expected.iter().zip(proof).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn scramble_is_fresh_and_safe() {
        let a = new_scramble();
        let b = new_scramble();
        assert_ne!(a, b);
        assert!(a.iter().all(|&c| c != 0 && c != b'$' && c < 0x80));
    }

    #[test]
    fn native_matches_known_vector() {
        let scramble = b"IGPd!W8ku5{@dQ(hc*Sx";
        let proof = native_proof(b"secret", scramble);
        assert_eq!(proof.len(), 20);
        assert!(verify(NATIVE, b"secret", scramble, &proof));
        assert!(!verify(NATIVE, b"secreT", scramble, &proof));
        // SHA1(SHA1("secret")) is PASSWORD('secret') without the leading '*'.
        let stage2 = Sha1::digest(Sha1::digest(b"secret"));
        assert_eq!(stage2.to_vec(), hex("14E65567ABDB5135D0CFD9A70B3032C179A49EE7"));
    }

    #[test]
    fn native_proof_recovers_stage1() {
        // The server check: SHA1(proof XOR SHA1(scramble + stage2)) == stage2.
        let scramble = new_scramble();
        let proof = native_proof(b"pw", &scramble);
        let stage2 = Sha1::digest(Sha1::digest(b"pw"));
        let mut h = Sha1::new();
        h.update(scramble);
        h.update(stage2);
        let mix = h.finalize();
        let stage1: Vec<u8> = proof.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(Sha1::digest(&stage1), stage2);
    }

    #[test]
    fn empty_password_is_empty_proof() {
        assert!(native_proof(b"", b"x").is_empty());
        assert!(verify(NATIVE, b"", b"x", b""));
        assert!(verify(NATIVE, b"", b"x", b"\0"));
        assert!(verify(CACHING_SHA2, b"", b"x", b""));
        assert!(!verify(NATIVE, b"", b"x", b"abc"));
    }

    #[test]
    fn caching_sha2_verifies() {
        let scramble = new_scramble();
        let p = caching_sha2_proof(b"s3cret", &scramble);
        assert_eq!(p.len(), 32);
        assert!(verify(CACHING_SHA2, b"s3cret", &scramble, &p));
        assert!(!verify(CACHING_SHA2, b"s3cret", &new_scramble(), &p));
        assert!(!verify(NATIVE, b"s3cret", &scramble, &p));
    }

    #[test]
    fn ed25519_signature_verifies_with_public_key() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        use curve25519_dalek::scalar::{clamp_integer, Scalar};
        let msg = [7u8; 32];
        let sig = ed25519_proof(b"hunter2", &msg);
        assert_eq!(sig.len(), 64);
        // Public key as the server stores it.
        let az = Sha512::digest(b"hunter2");
        let mut lower = [0u8; 32];
        lower.copy_from_slice(&az[..32]);
        let a = Scalar::from_bytes_mod_order(clamp_integer(lower));
        let public = (&a * ED25519_BASEPOINT_TABLE).compress();
        // Standard verification: S*B == R + H(R||A||M)*A.
        let r = CompressedEdwardsY::from_slice(&sig[..32]).unwrap().decompress().unwrap();
        let mut sb = [0u8; 32];
        sb.copy_from_slice(&sig[32..]);
        let s = Scalar::from_canonical_bytes(sb).unwrap();
        let k =
            Scalar::from_hash(Sha512::new().chain_update(&sig[..32]).chain_update(public.as_bytes()).chain_update(msg));
        let lhs = &s * ED25519_BASEPOINT_TABLE;
        let rhs = r + k * public.decompress().unwrap();
        assert_eq!(lhs.compress(), rhs.compress());
    }
}
