//! The run's Ed25519 key: made in memory when the run starts, its public half sent with
//! `run/start`, its private half only ever used to sign the proof of each session the run
//! opens ([`run_proof_message`](portcullis_proto::access::run_proof_message)). It is never
//! written anywhere and never reaches the command.

use anyhow::Context as _;
use portcullis_crypto::ed25519::SigningKey;
use portcullis_proto::keys;

/// The run's key pair.
#[derive(Debug)]
pub(crate) struct RunKey(SigningKey);

impl RunKey {
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let pkcs8 = SigningKey::generate_pkcs8().context("cannot make the run's key")?;
        Ok(Self(
            SigningKey::from_pkcs8(&pkcs8).context("cannot make the run's key")?,
        ))
    }

    /// The public key as `StartRun.run_public_key`: DER SubjectPublicKeyInfo, base64url.
    pub(crate) fn public_spki_b64(&self) -> anyhow::Result<String> {
        let raw: [u8; 32] = self
            .0
            .public_key()
            .try_into()
            .context("the run's public key is not 32 bytes")?;
        Ok(keys::b64(&keys::ed25519_spki(&raw)))
    }

    /// A proof: the base64url signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        keys::b64(&self.0.sign(message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_proto::access::run_proof_message;

    use super::*;

    #[test]
    fn a_proof_verifies_with_the_key_sent_at_start() {
        let key = RunKey::generate().unwrap();
        let spki = keys::unb64(&key.public_spki_b64().unwrap()).unwrap();
        let raw = keys::ed25519_from_spki(&spki).unwrap();
        let message = run_proof_message("ar_1", "CLIENTKEY");
        let proof = keys::unb64(&key.sign(&message)).unwrap();
        assert!(portcullis_crypto::ed25519::verify(&raw, &message, &proof).is_ok());
        let other = run_proof_message("ar_1", "OTHERKEY");
        assert!(portcullis_crypto::ed25519::verify(&raw, &other, &proof).is_err());
        // Another run's key makes other proofs.
        assert_ne!(
            RunKey::generate().unwrap().sign(&message),
            key.sign(&message)
        );
    }
}
