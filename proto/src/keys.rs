//! Fingerprints of public keys, computed identically by controller, worker and CLI.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// SHA-256 of a DER `SubjectPublicKeyInfo`, hex encoded (64 lowercase characters).
///
/// This is what a grant binds the client's TLS key to, and what a client pins for a worker.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    portcullis_crypto::digest::sha256_hex(spki_der)
}

/// SHA-256 of a raw 32-byte Ed25519 public key, hex encoded (64 lowercase characters).
///
/// This names a service account's key: the `kid` of its assertions, the key its API token is
/// bound to, and what `portcullis users` shows.
pub fn ed25519_fingerprint(raw: &[u8; 32]) -> String {
    portcullis_crypto::digest::sha256_hex(raw)
}

/// Base64url (no padding) of arbitrary bytes, for keys carried in JSON.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes [`b64`] output.
pub fn unb64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            spki_fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn ed25519_fingerprint_is_sha256_hex_of_the_raw_key() {
        assert_eq!(
            ed25519_fingerprint(&[0u8; 32]),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn b64_round_trips() {
        let data = [0u8, 1, 250, 255];
        assert_eq!(unb64(&b64(&data)).ok(), Some(data.to_vec()));
        assert!(unb64("***").is_err());
    }
}

/// The fixed DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410); the 32 key bytes
/// follow it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a public key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an Ed25519 SubjectPublicKeyInfo (Portcullis keys are Ed25519)")]
pub struct NotEd25519;

/// The raw 32-byte key of an Ed25519 SPKI; any other algorithm or encoding is refused.
pub fn ed25519_from_spki(spki_der: &[u8]) -> Result<[u8; 32], NotEd25519> {
    let rest = spki_der
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .ok_or(NotEd25519)?;
    rest.try_into().map_err(|_| NotEd25519)
}

/// The SPKI DER of a raw Ed25519 public key.
pub fn ed25519_spki(raw: &[u8; 32]) -> Vec<u8> {
    let mut out = ED25519_SPKI_PREFIX.to_vec();
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod spki_tests {
    use super::*;

    #[test]
    fn ed25519_spki_round_trips_and_others_are_refused() {
        let raw = [7u8; 32];
        let spki = ed25519_spki(&raw);
        assert_eq!(spki.len(), 44);
        assert_eq!(ed25519_from_spki(&spki), Ok(raw));
        assert_eq!(ed25519_from_spki(&spki[..43]), Err(NotEd25519));
        let mut other = spki.clone();
        other[8] = 0x71;
        assert_eq!(ed25519_from_spki(&other), Err(NotEd25519));
    }
}
