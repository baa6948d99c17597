//! SSH user certificates from the embedded CA (`local-ca`): short-lived, named by the session
//! (key id = session id, so the target's sshd log names the session), limited to the logins
//! the policy grants, and usable only from the workers' egress addresses.

pub(crate) mod krl;

use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::{Ed25519Keypair, Ed25519PrivateKey, KeypairData};
use ssh_key::public::Ed25519PublicKey;
use ssh_key::{PrivateKey, PublicKey};

use crate::secret::{ExposeSecret as _, SecretBytes};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SshError {
    #[error("ssh_public_key is not an OpenSSH public key: {0}")]
    BadPublicKey(String),
    #[error("the SSH CA key is unusable: {0}")]
    BadCaKey(String),
    #[error("cannot sign the SSH certificate: {0}")]
    Signing(String),
}

/// What a certificate is for.
pub(crate) struct CertificateRequest<'a> {
    pub session_id: &'a str,
    pub principals: &'a [String],
    /// Addresses the certificate may be used from (critical option `source-address`).
    pub source_addresses: &'a [String],
    pub valid_after: u64,
    pub valid_before: u64,
    pub serial: u64,
}

/// The CA's public key in OpenSSH format, for targets' `TrustedUserCAKeys`.
pub(crate) fn ca_public_openssh(raw_public: &[u8]) -> Result<String, SshError> {
    let bytes: [u8; 32] = raw_public
        .try_into()
        .map_err(|_| SshError::BadCaKey("not an Ed25519 key".into()))?;
    let key = PublicKey::from(Ed25519PublicKey(bytes));
    key.to_openssh()
        .map_err(|e| SshError::BadCaKey(e.to_string()))
}

/// The 32-byte seed of an Ed25519 PKCS#8 document (RFC 8410: the last 32 bytes of the
/// `CurvePrivateKey` OCTET STRING, which ends the v1 document before any public key).
fn ed25519_seed(pkcs8: &[u8]) -> Result<Zeroizing<[u8; 32]>, SshError> {
    // PKCS#8 v1/v2 for Ed25519 contain `04 22 04 20 <32-byte seed>`.
    let marker = [0x04, 0x22, 0x04, 0x20];
    let at = pkcs8
        .windows(4)
        .position(|w| w == marker)
        .ok_or_else(|| SshError::BadCaKey("no Ed25519 seed in PKCS#8".into()))?;
    pkcs8
        .get(at + 4..at + 36)
        .and_then(|s| s.try_into().ok())
        .map(Zeroizing::new)
        .ok_or_else(|| SshError::BadCaKey("short Ed25519 seed".into()))
}

/// Signs a user certificate for `user_key` (OpenSSH public key text) with the CA key (PKCS#8).
pub(crate) fn sign(
    ca_pkcs8: &SecretBytes,
    user_key: &str,
    req: &CertificateRequest<'_>,
) -> Result<String, SshError> {
    let user = PublicKey::from_openssh(user_key.trim())
        .map_err(|e| SshError::BadPublicKey(e.to_string()))?;
    let seed = ed25519_seed(ca_pkcs8.expose_secret())?;
    let private = Ed25519PrivateKey::from_bytes(&seed);
    let keypair = Ed25519Keypair::from(private);
    let ca = PrivateKey::new(KeypairData::Ed25519(keypair), "portcullis-ssh-ca")
        .map_err(|e| SshError::BadCaKey(e.to_string()))?;
    let mut builder = Builder::new_with_random_nonce(
        &mut ssh_key::rand_core::OsRng,
        user.key_data().clone(),
        req.valid_after,
        req.valid_before,
    )
    .map_err(|e| SshError::Signing(e.to_string()))?;
    builder
        .serial(req.serial)
        .map_err(|e| SshError::Signing(e.to_string()))?;
    builder
        .key_id(req.session_id)
        .map_err(|e| SshError::Signing(e.to_string()))?;
    builder
        .cert_type(CertType::User)
        .map_err(|e| SshError::Signing(e.to_string()))?;
    for principal in req.principals {
        builder
            .valid_principal(principal)
            .map_err(|e| SshError::Signing(e.to_string()))?;
    }
    if !req.source_addresses.is_empty() {
        builder
            .critical_option("source-address", req.source_addresses.join(","))
            .map_err(|e| SshError::Signing(e.to_string()))?;
    }
    for ext in [
        "permit-pty",
        "permit-port-forwarding",
        "permit-agent-forwarding",
    ] {
        builder
            .extension(ext, "")
            .map_err(|e| SshError::Signing(e.to_string()))?;
    }
    let cert = builder
        .sign(&ca)
        .map_err(|e| SshError::Signing(e.to_string()))?;
    cert.to_openssh()
        .map_err(|e| SshError::Signing(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_a_certificate_that_names_the_session() {
        let ca = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let user = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let user_pub = user.public_key().to_openssh().unwrap();
        let text = sign(
            &SecretBytes::from(ca.serialize_der()),
            &user_pub,
            &CertificateRequest {
                session_id: "s_123",
                principals: &["alice".to_string()],
                source_addresses: &["127.0.0.2".to_string()],
                valid_after: 100,
                valid_before: 400,
                serial: 42,
            },
        )
        .unwrap();
        let cert = ssh_key::Certificate::from_openssh(&text).unwrap();
        assert_eq!(cert.key_id(), "s_123");
        assert_eq!(cert.serial(), 42);
        assert_eq!(cert.valid_principals(), &["alice".to_string()]);
        assert_eq!(
            cert.critical_options()
                .get("source-address")
                .map(String::as_str),
            Some("127.0.0.2")
        );
        let ca_pub = ca_public_openssh(ca.public_key_raw()).unwrap();
        let ca_key = PublicKey::from_openssh(&ca_pub).unwrap();
        assert_eq!(cert.signature_key(), ca_key.key_data());
        assert!(sign(
            &SecretBytes::from(ca.serialize_der()),
            "garbage",
            &CertificateRequest {
                session_id: "s",
                principals: &[],
                source_addresses: &[],
                valid_after: 0,
                valid_before: 1,
                serial: 1,
            }
        )
        .is_err());
    }
}
