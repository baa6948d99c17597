//! The master key: 32 bytes that seal every private key in the store (AES-256-GCM).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};

use super::KeyError;
use crate::secret::Secret;

pub struct MasterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &Secret<String>) -> Result<MasterKey, KeyError> {
        let bytes = hex::decode(text.expose().trim()).map_err(|_| {
            KeyError::MasterKey("the master key must be 64 hex characters (32 bytes)".into())
        })?;
        if bytes.len() != 32 {
            return Err(KeyError::MasterKey(format!(
                "the master key must be 32 bytes, found {}",
                bytes.len()
            )));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| KeyError::MasterKey("cannot use the master key".into()))?;
        Ok(MasterKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Reads a master key file.
    pub fn from_file(path: &std::path::Path) -> Result<MasterKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            KeyError::MasterKey(format!(
                "cannot read master key file {}: {e}",
                path.display()
            ))
        })?;
        Self::from_hex(&Secret::new(text))
    }

    /// A new random master key as hex, for first starts.
    pub fn generate_hex() -> Result<Secret<String>, KeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Crypto("no system randomness".into()))?;
        Ok(Secret::new(hex::encode(bytes)))
    }

    /// Encrypts `plain`, binding it to `context` (the key's id and purpose): the sealed blob
    /// cannot be moved to another row.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyError::Crypto("no system randomness".into()))?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| KeyError::Crypto("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyError::Unseal(context.to_owned()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| KeyError::Unseal(context.to_owned()))?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Unseal(context.to_owned()))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let hex = MasterKey::generate_hex().unwrap();
        let key = MasterKey::from_hex(&hex).unwrap();
        let sealed = key.seal("k1/grant", b"private").unwrap();
        assert_eq!(key.open("k1/grant", &sealed).unwrap(), b"private");
        assert!(key.open("k2/grant", &sealed).is_err());
        let other = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
        assert!(other.open("k1/grant", &sealed).is_err());
        assert!(MasterKey::from_hex(&Secret::new("abcd".into())).is_err());
    }
}
