//! Ed25519: signing keys (PKCS#8), signatures, and their verification.

use zeroize::Zeroizing;

/// The length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// The length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Ed25519Error {
    #[error("cannot generate an Ed25519 key: the system's random generator failed")]
    Generate,
    #[error("not a usable Ed25519 private key (PKCS#8 expected)")]
    BadKey,
}

/// A signature did not verify with the key given (or the key or signature is malformed).
#[derive(Debug, thiserror::Error)]
#[error("the Ed25519 signature does not verify with this key")]
pub struct BadSignature;

/// An Ed25519 private key, parsed once.
pub struct SigningKey(ring::signature::Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<secret>)")
    }
}

impl SigningKey {
    /// A fresh key as a PKCS#8 document, zeroised when dropped.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, Ed25519Error> {
        let document =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .map_err(|_| Ed25519Error::Generate)?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// Parses a PKCS#8 key (v1, as rcgen writes it, or v2 with the public key).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, Ed25519Error> {
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map(SigningKey)
            .map_err(|_| Ed25519Error::BadKey)
    }

    /// The key of a 32-byte seed: for fixed test and fuzzing keys.
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey, Ed25519Error> {
        ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
            .map(SigningKey)
            .map_err(|_| Ed25519Error::BadKey)
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        use ring::signature::KeyPair as _;
        self.0.public_key().as_ref()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.0.sign(message).as_ref());
        out
    }
}

/// Checks that `signature` is `public_key`'s signature of `message`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(message, signature)
        .map_err(|_| BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let other = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let signature = key.sign(b"message");
        assert_eq!(key.public_key().len(), PUBLIC_KEY_LEN);
        assert!(verify(key.public_key(), b"message", &signature).is_ok());
        assert!(verify(key.public_key(), b"messagf", &signature).is_err());
        assert!(verify(other.public_key(), b"message", &signature).is_err());
        assert!(verify(key.public_key(), b"message", &signature[1..]).is_err());
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.public_key())));
    }

    #[test]
    fn a_seed_gives_the_same_key_every_time() {
        let a = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let b = SigningKey::from_seed(&[7u8; 32]).unwrap();
        assert_eq!(a.public_key(), b.public_key());
    }
}
