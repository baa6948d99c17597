//! AES-256-GCM: what seals the controller's private keys under its master key. A sealed blob
//! is the 12-byte random nonce, the ciphertext and the 16-byte tag; the associated data binds
//! it to its context (a blob cannot be moved to another row).

use zeroize::Zeroizing;

/// The length of the key in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = ring::aead::NONCE_LEN;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AeadError {
    #[error("an AES-256-GCM key must be {KEY_LEN} bytes, found {0}")]
    KeyLength(usize),
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
    #[error("sealing failed")]
    Seal,
    /// Wrong key, wrong context, or a blob that was cut or changed.
    #[error("cannot open the sealed data: wrong key or context, or the data was changed")]
    Open,
}

/// An AES-256-GCM key.
pub struct SealingKey(ring::aead::LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<secret>)")
    }
}

impl SealingKey {
    pub fn new(key: &[u8]) -> Result<SealingKey, AeadError> {
        if key.len() != KEY_LEN {
            return Err(AeadError::KeyLength(key.len()));
        }
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key)
            .map_err(|_| AeadError::KeyLength(key.len()))?;
        Ok(SealingKey(ring::aead::LessSafeKey::new(unbound)))
    }

    /// Encrypts `plain` under a fresh random nonce, binding `context`.
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, AeadError> {
        let nonce = crate::random::bytes::<NONCE_LEN>()?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(context),
                &mut buf,
            )
            .map_err(|_| AeadError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what [`SealingKey::seal`] sealed with the same `context`; the plaintext is
    /// zeroised when dropped.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(AeadError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce =
            ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| AeadError::Open)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain = self
            .0
            .open_in_place(nonce, ring::aead::Aad::from(context), &mut buf)
            .map_err(|_| AeadError::Open)?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sealed_opens_with_its_key_and_context_only() {
        let key = SealingKey::new(&[1u8; 32]).unwrap();
        let sealed = key.seal(b"k1/grant", b"private").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 7 + TAG_LEN);
        assert_eq!(
            key.open(b"k1/grant", &sealed).unwrap().as_slice(),
            b"private"
        );
        assert!(key.open(b"k2/grant", &sealed).is_err());
        let other = SealingKey::new(&[2u8; 32]).unwrap();
        assert!(other.open(b"k1/grant", &sealed).is_err());
        let mut changed = sealed.clone();
        changed[NONCE_LEN] ^= 1;
        assert!(key.open(b"k1/grant", &changed).is_err());
        assert!(key
            .open(b"k1/grant", &sealed[..NONCE_LEN + TAG_LEN - 1])
            .is_err());
        assert!(SealingKey::new(&[0u8; 31]).is_err());
    }
}
