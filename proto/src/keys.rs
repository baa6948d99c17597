//! Fingerprints of public keys, computed identically by controller, worker and CLI.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// SHA-256 of a DER `SubjectPublicKeyInfo`, hex encoded (64 lowercase characters).
///
/// This is what a grant binds the client's TLS key to, and what a client pins for a worker.
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref())
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
    fn b64_round_trips() {
        let data = [0u8, 1, 250, 255];
        assert_eq!(unb64(&b64(&data)).ok(), Some(data.to_vec()));
        assert!(unb64("***").is_err());
    }
}
