//! What corelay keeps of a product user's password: never the password itself, only the
//! server's own hash forms, from which it checks clients.
//!
//! - `mysql_native_password`: `SHA1(SHA1(pw))`, written `*<40 hex>` (MariaDB's
//!   `PASSWORD()`);
//! - `caching_sha2_password` fast path: `SHA256(SHA256(pw))`;
//! - `caching_sha2_password` as MySQL stores it: `$A$005$<20-byte salt><43 characters>`,
//!   SHA-256 crypt with 5,000 rounds. From it only a full authentication (the password
//!   sent over TLS) can be checked; the fast-path hash that check yields is what a shard
//!   caches for the next logins.
//!
//! A plaintext `password` in the configuration becomes the first two at load.

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A user's password as corelay holds it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credential {
    /// The password is empty.
    pub empty: bool,
    /// `SHA1(SHA1(pw))`.
    pub native: Option<[u8; 20]>,
    /// `SHA256(SHA256(pw))`.
    pub sha2: Option<[u8; 32]>,
    /// MySQL's stored `caching_sha2_password` form.
    pub sha2_crypt: Option<Sha2Crypt>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.empty { "Credential(empty)" } else { "Credential(********)" })
    }
}

/// SHA-256 crypt: salt, rounds and the encoded digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha2Crypt {
    salt: Vec<u8>,
    rounds: u32,
    digest: String,
}

/// MySQL's rounds, in thousands (`005`).
const MYSQL_ROUNDS_K: u32 = 5;
const SALT_LEN: usize = 20;
const DIGEST_CHARS: usize = 43;

impl Credential {
    /// Reads a configured `password`: a hash form, else a plaintext password.
    pub fn parse(password: &str) -> Credential {
        if password.is_empty() {
            return Credential { empty: true, ..Default::default() };
        }
        if let Some(stage2) = native_hash(password) {
            return Credential { native: Some(stage2), ..Default::default() };
        }
        if let Some(c) = Sha2Crypt::parse(password) {
            return Credential { sha2_crypt: Some(c), ..Default::default() };
        }
        Credential::plain(password.as_bytes())
    }

    /// From a password in the clear (forgotten as soon as hashed).
    pub fn plain(password: &[u8]) -> Credential {
        Credential {
            empty: password.is_empty(),
            native: Some(Sha1::digest(Sha1::digest(password)).into()),
            sha2: Some(Sha256::digest(Sha256::digest(password)).into()),
            sha2_crypt: None,
        }
    }

    /// Whether a `mysql_native_password` proof for `scramble` is right.
    pub fn check_native(&self, scramble: &[u8], proof: &[u8]) -> bool {
        if self.empty {
            return proof.is_empty() || proof == [0];
        }
        let Some(stage2) = self.native else { return false };
        check_xor::<Sha1>(&stage2, scramble, proof, true)
    }

    /// Whether a `caching_sha2_password` fast-path proof is right, against `sha2` or the
    /// fast-path hash a shard cached (`cached`).
    pub fn check_sha2_fast(&self, cached: Option<[u8; 32]>, scramble: &[u8], proof: &[u8]) -> bool {
        if self.empty {
            return proof.is_empty() || proof == [0];
        }
        match self.sha2.or(cached) {
            Some(stage2) => check_xor::<Sha256>(&stage2, scramble, proof, false),
            None => false,
        }
    }

    /// Whether the fast path can be checked without a full authentication first.
    pub fn has_fast_path(&self, cached: Option<[u8; 32]>) -> bool {
        self.empty || self.sha2.is_some() || cached.is_some()
    }

    /// Checks a password sent in the clear (over TLS); on success returns its fast-path
    /// hash, for the shard to cache.
    pub fn check_cleartext(&self, password: &[u8]) -> Option<[u8; 32]> {
        let stage2: [u8; 32] = Sha256::digest(Sha256::digest(password)).into();
        let ok = if self.empty {
            password.is_empty()
        } else if let Some(c) = &self.sha2_crypt {
            c.matches(password)
        } else if let Some(s) = self.sha2 {
            eq(&s, &stage2)
        } else if let Some(n) = self.native {
            let n2: [u8; 20] = Sha1::digest(Sha1::digest(password)).into();
            eq(&n, &n2)
        } else {
            false
        };
        ok.then_some(stage2)
    }

    /// The key a shard caches a fast-path hash under (the stored form itself).
    pub fn cache_key(&self) -> Option<&str> {
        self.sha2_crypt.as_ref().map(|c| c.digest.as_str())
    }
}

/// `*` and 40 hex digits: `SHA1(SHA1(pw))`.
fn native_hash(s: &str) -> Option<[u8; 20]> {
    crate::util::hex::decode(s.strip_prefix('*')?)?.try_into().ok()
}

/// The `*<40 hex>` form of a password.
pub fn native_form(password: &[u8]) -> String {
    format!("*{}", crate::util::hex::encode(&Sha1::digest(Sha1::digest(password)), true))
}

/// MySQL's stored `caching_sha2_password` form of a password, with a fresh salt of
/// printable characters (so the form fits a config file as it is).
pub fn sha2_crypt_form(password: &[u8]) -> String {
    use rand::Rng;
    const PRINTABLE: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let salt: Vec<u8> = (0..SALT_LEN).map(|_| PRINTABLE[rng.gen_range(0..PRINTABLE.len())]).collect();
    let digest = sha256_crypt(password, &salt, MYSQL_ROUNDS_K * 1000);
    format!("$A${MYSQL_ROUNDS_K:03}${}{digest}", String::from_utf8_lossy(&salt))
}

impl Sha2Crypt {
    /// The form as MySQL stores it, or as `SHOW CREATE USER` prints it (`0x` and hex).
    fn parse(s: &str) -> Option<Sha2Crypt> {
        let raw: Vec<u8> = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) if hex.len() % 2 == 0 => (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<_>>()?,
            Some(_) => return None,
            None => s.as_bytes().to_vec(),
        };
        let rest = raw.strip_prefix(b"$A$")?;
        let dollar = rest.iter().position(|&b| b == b'$')?;
        let rounds: u32 =
            std::str::from_utf8(&rest[..dollar]).ok()?.parse().ok().filter(|&r| (1..=999).contains(&r))?;
        let bytes = &rest[dollar + 1..];
        if bytes.len() != SALT_LEN + DIGEST_CHARS {
            return None;
        }
        Some(Sha2Crypt {
            salt: bytes[..SALT_LEN].to_vec(),
            rounds: rounds * 1000,
            digest: String::from_utf8(bytes[SALT_LEN..].to_vec()).ok()?,
        })
    }

    fn matches(&self, password: &[u8]) -> bool {
        eq(sha256_crypt(password, &self.salt, self.rounds).as_bytes(), self.digest.as_bytes())
    }
}

/// Compares in time independent of where the inputs differ.
fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The scramble plugins' check from the stored hash: `H(proof XOR H(mix)) == stage2`,
/// where mix is the scramble and stage2 (scramble first for native, last for sha2).
fn check_xor<D: Digest>(stage2: &[u8], scramble: &[u8], proof: &[u8], scramble_first: bool) -> bool {
    let mut h = D::new();
    if scramble_first {
        h.update(scramble);
        h.update(stage2);
    } else {
        h.update(stage2);
        h.update(scramble);
    }
    let mix = h.finalize();
    if proof.len() != mix.len() {
        return false;
    }
    let stage1: Vec<u8> = proof.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
    eq(&D::digest(&stage1), stage2)
}

/// SHA-256 crypt (Drepper's), with any salt length, encoded in crypt's base-64.
fn sha256_crypt(password: &[u8], salt: &[u8], rounds: u32) -> String {
    let p = password;
    let b = Sha256::new().chain_update(p).chain_update(salt).chain_update(p).finalize();
    let mut a = Sha256::new().chain_update(p).chain_update(salt);
    let mut n = p.len();
    while n > 32 {
        a.update(b);
        n -= 32;
    }
    a.update(&b[..n]);
    let mut n = p.len();
    while n > 0 {
        if n & 1 == 1 {
            a.update(b);
        } else {
            a.update(p);
        }
        n >>= 1;
    }
    let a = a.finalize();
    let mut dp = Sha256::new();
    for _ in 0..p.len() {
        dp.update(p);
    }
    let dp = dp.finalize();
    let pseq: Vec<u8> = dp.iter().cycle().take(p.len()).copied().collect();
    let mut ds = Sha256::new();
    for _ in 0..16 + usize::from(a[0]) {
        ds.update(salt);
    }
    let ds = ds.finalize();
    let sseq: Vec<u8> = ds.iter().cycle().take(salt.len()).copied().collect();
    let mut c: [u8; 32] = a.into();
    for i in 0..rounds {
        let mut h = Sha256::new();
        if i % 2 == 1 {
            h.update(&pseq);
        } else {
            h.update(c);
        }
        if i % 3 != 0 {
            h.update(&sseq);
        }
        if i % 7 != 0 {
            h.update(&pseq);
        }
        if i % 2 == 1 {
            h.update(c);
        } else {
            h.update(&pseq);
        }
        c = h.finalize().into();
    }
    const ORDER: [(usize, usize, usize); 10] = [
        (0, 10, 20),
        (21, 1, 11),
        (12, 22, 2),
        (3, 13, 23),
        (24, 4, 14),
        (15, 25, 5),
        (6, 16, 26),
        (27, 7, 17),
        (18, 28, 8),
        (9, 19, 29),
    ];
    let mut out = String::with_capacity(DIGEST_CHARS);
    for (x, y, z) in ORDER {
        b64(&mut out, (u32::from(c[x]) << 16) | (u32::from(c[y]) << 8) | u32::from(c[z]), 4);
    }
    b64(&mut out, (u32::from(c[31]) << 8) | u32::from(c[30]), 3);
    out
}

fn b64(out: &mut String, mut v: u32, n: usize) {
    const CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for _ in 0..n {
        out.push(CHARS[(v & 0x3f) as usize] as char);
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::auth::{caching_sha2_proof, native_proof, new_scramble};

    #[test]
    fn sha256_crypt_matches_the_reference_vectors() {
        // From the SHA-crypt specification (and glibc's crypt).
        assert_eq!(sha256_crypt(b"Hello world!", b"saltstring", 5000), "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5");
        assert_eq!(
            sha256_crypt(b"we have a short salt string but not a short password", b"short", 77777),
            "JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"
        );
    }

    #[test]
    fn native_hash_checks_proofs_without_the_password() {
        let form = native_form(b"secret");
        assert_eq!(form, "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7");
        let c = Credential::parse(&form);
        assert!(c.native.is_some() && c.sha2.is_none());
        let scramble = new_scramble();
        assert!(c.check_native(&scramble, &native_proof(b"secret", &scramble)));
        assert!(!c.check_native(&scramble, &native_proof(b"Secret", &scramble)));
        assert!(!c.check_native(&scramble, b""));
    }

    #[test]
    fn plaintext_checks_both_plugins() {
        let c = Credential::parse("pw");
        let scramble = new_scramble();
        assert!(c.check_native(&scramble, &native_proof(b"pw", &scramble)));
        assert!(c.check_sha2_fast(None, &scramble, &caching_sha2_proof(b"pw", &scramble)));
        assert!(!c.check_sha2_fast(None, &scramble, &caching_sha2_proof(b"px", &scramble)));
        assert!(c.check_cleartext(b"pw").is_some() && c.check_cleartext(b"p").is_none());
        assert_eq!(format!("{c:?}"), "Credential(********)", "never printed");
    }

    #[test]
    fn mysql_stored_form_needs_a_full_authentication_then_caches() {
        let form = sha2_crypt_form(b"s3cret");
        assert!(form.starts_with("$A$005$") && form.len() == 7 + 20 + 43, "{form}");
        let c = Credential::parse(&form);
        assert!(!c.has_fast_path(None));
        let scramble = new_scramble();
        let proof = caching_sha2_proof(b"s3cret", &scramble);
        assert!(!c.check_sha2_fast(None, &scramble, &proof));
        assert!(c.check_cleartext(b"wrong").is_none());
        let cached = c.check_cleartext(b"s3cret");
        assert!(cached.is_some());
        assert!(c.check_sha2_fast(cached, &scramble, &proof));
        // As SHOW CREATE USER prints it.
        let hex = crate::util::hex::encode(form.as_bytes(), true);
        assert!(Credential::parse(&format!("0x{hex}")).check_cleartext(b"s3cret").is_some());
    }

    #[test]
    fn empty_password() {
        let c = Credential::parse("");
        assert!(c.check_native(b"x", b"") && c.check_native(b"x", b"\0"));
        assert!(!c.check_native(b"x", b"abc"));
        assert!(c.check_sha2_fast(None, b"x", b""));
    }
}
