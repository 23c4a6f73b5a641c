//! caching_sha2_password's RSA exchange, for a client without TLS whose password corelay
//! must see once (a full authentication): corelay sends its public key (PEM), the client
//! sends `password\0` XOR the scramble, encrypted with RSA-OAEP (SHA-1, MGF1-SHA-1). And
//! the same from the client side, for a backend that asks corelay for a full
//! authentication over a plain connection.
//!
//! The key pair is `proxy.tls_rsa_key` (PKCS#8 PEM) or, without one, made by each process
//! the first time a client asks for it (2048 bits).

use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    OAEP_SHA1_MGF1SHA1,
};

/// corelay's RSA key pair for the exchange.
pub struct RsaKey {
    key: OaepPrivateDecryptingKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({} bits)", self.key.key_size_bits())
    }
}

impl RsaKey {
    fn from_key(key: PrivateDecryptingKey) -> Result<RsaKey, String> {
        let der = key.public_key().as_der().map_err(|_| "cannot encode the RSA public key".to_string())?;
        let public_pem = pem("PUBLIC KEY", der.as_ref());
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| "not an RSA key OAEP can use".to_string())?;
        Ok(RsaKey { key, public_pem })
    }

    /// A fresh 2048-bit key pair.
    pub fn generate() -> Result<RsaKey, String> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| "cannot make an RSA key".to_string())?;
        Self::from_key(key)
    }

    /// An RSA private key in PKCS#8 PEM (`openssl genpkey -algorithm RSA`).
    pub fn from_pem(text: &[u8]) -> Result<RsaKey, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;
        let der = match PrivateKeyDer::from_pem_slice(text).map_err(|e| format!("no PEM private key read: {e}"))? {
            PrivateKeyDer::Pkcs8(der) => der,
            _ => {
                return Err("not a PKCS#8 key (BEGIN PRIVATE KEY): convert it with openssl pkcs8 -topk8 -nocrypt".into())
            }
        };
        let key = PrivateDecryptingKey::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| format!("not an RSA private key corelay can use: {e}"))?;
        Self::from_key(key)
    }

    /// The public key as PEM (what a client is sent).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The password a client encrypted for `scramble`, without its NUL; None when it does
    /// not decrypt.
    pub fn decrypt_password(&self, ciphertext: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.key.min_output_size()];
        let plain = self.key.decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut out, None).ok()?;
        let mut password: Vec<u8> = unmix(plain, scramble);
        if password.last() == Some(&0) {
            password.pop();
        }
        Some(password)
    }
}

/// The key pair of this process, made on first use.
pub fn generated() -> Option<Arc<RsaKey>> {
    static KEY: OnceLock<Option<Arc<RsaKey>>> = OnceLock::new();
    KEY.get_or_init(|| match RsaKey::generate() {
        Ok(k) => Some(Arc::new(k)),
        Err(e) => {
            tracing::error!("caching_sha2_password RSA exchange unavailable: {e}");
            None
        }
    })
    .clone()
}

/// `password\0` XOR the scramble (cycled), encrypted with a server's PEM public key: what a
/// client sends in the exchange.
pub fn encrypt_password(public_pem: &[u8], password: &[u8], scramble: &[u8]) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    let (kind, der) =
        <(SectionKind, Vec<u8>)>::from_pem_slice(public_pem).map_err(|e| format!("bad public key: {e}"))?;
    if kind != SectionKind::PublicKey {
        return Err("the server did not send a PUBLIC KEY".into());
    }
    let key = PublicEncryptingKey::from_der(&der).map_err(|e| format!("bad public key: {e}"))?;
    let key = OaepPublicEncryptingKey::new(key).map_err(|_| "not an RSA key OAEP can use".to_string())?;
    let mut plain = password.to_vec();
    plain.push(0);
    let mixed = unmix(&plain, scramble);
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key.encrypt(&OAEP_SHA1_MGF1SHA1, &mixed, &mut out, None).map_err(|_| "RSA encryption failed")?.len();
    out.truncate(n);
    Ok(out)
}

/// XOR with the scramble, cycled (its own inverse).
fn unmix(data: &[u8], scramble: &[u8]) -> Vec<u8> {
    if scramble.is_empty() {
        return data.to_vec();
    }
    data.iter().enumerate().map(|(i, b)| b ^ scramble[i % scramble.len()]).collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_encrypted_with_the_public_key_decrypts() {
        let key = generated().expect("a key pair");
        assert!(key.public_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let scramble = crate::protocol::auth::new_scramble();
        let sealed =
            encrypt_password(key.public_pem().as_bytes(), b"a longer password than the scramble", &scramble).unwrap();
        assert_eq!(sealed.len(), 256);
        assert_eq!(key.decrypt_password(&sealed, &scramble).unwrap(), b"a longer password than the scramble");
        let other = crate::protocol::auth::new_scramble();
        assert_ne!(key.decrypt_password(&sealed, &other).unwrap(), b"a longer password than the scramble");
        assert!(key.decrypt_password(b"garbage", &scramble).is_none());
    }

    #[test]
    fn pem_base64_pads() {
        assert_eq!(pem("X", b"ab"), "-----BEGIN X-----\nYWI=\n-----END X-----\n");
        assert_eq!(pem("X", b"abc"), "-----BEGIN X-----\nYWJj\n-----END X-----\n");
    }
}
