//! Sealing the secrets of a published configuration: passwords travel to the shards
//! through the status region encrypted (ChaCha20-Poly1305) with a key made at start that
//! lives only in corelay's own memory (a forked shard inherits it), never in the region.
//! Any process of the same user can read the region's memfd; none of it is a password.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

/// The key, made once per corelay.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new() -> Sealer {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map(LessSafeKey::new);
        bytes.fill(0);
        match key {
            Ok(key) => Sealer { key },
            // A 32-byte key always fits ChaCha20-Poly1305.
            Err(_) => unreachable!("ChaCha20-Poly1305 takes a 32-byte key"),
        }
    }

    /// `text` encrypted, as hex (nonce, then ciphertext and tag).
    pub fn seal(&self, text: &str) -> String {
        use rand::RngCore;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut data = text.as_bytes().to_vec();
        // Sealing into a Vec only fails on lengths no configuration reaches (> 256 GiB).
        let _ = self.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data);
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        crate::util::hex::encode(&sealed, false)
    }

    /// The text [`Sealer::seal`] sealed with this key.
    pub fn open(&self, sealed: &str) -> Result<String, String> {
        let bytes = crate::util::hex::decode(sealed).ok_or("sealed secrets are not hex")?;
        if bytes.len() < NONCE_LEN {
            return Err("sealed secrets are too short".into());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce")?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| "sealed secrets do not open with this corelay's key")?;
        String::from_utf8(plain.to_vec()).map_err(|_| "sealed secrets are not text".into())
    }
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_its_key() {
        let s = Sealer::new();
        let sealed = s.seal("db_pw=hunter2");
        assert!(!sealed.contains("hunter2") && !sealed.contains(&crate::util::hex::encode(b"hunter2", false)));
        assert_eq!(s.open(&sealed).unwrap(), "db_pw=hunter2");
        assert_ne!(s.seal("x"), s.seal("x"), "a fresh nonce each time");
        assert!(Sealer::new().open(&sealed).is_err());
        assert!(s.open("zz").is_err());
    }
}
