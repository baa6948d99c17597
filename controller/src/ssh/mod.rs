//! SSH certificates from the keyset. User certificates from the embedded CA (`ssh-ca`, the
//! `local-ca` backend): short-lived, named by the session (key id = session id, so the
//! target's sshd log names the session), limited to the logins the policy grants, and usable
//! only from the workers' egress addresses. Host certificates for the workers' SSH gateways
//! from the host CA (`ssh-host-ca`, [`sign_host`]): for the one name
//! [`portcullis_proto::gateway::HOST_ALIAS`], the key id naming the worker. Neither CA signs
//! the other kind.

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

/// The CA's private key, for signing, from its PKCS#8 document.
fn ca_private_key(ca_pkcs8: &SecretBytes, comment: &str) -> Result<PrivateKey, SshError> {
    let seed = ed25519_seed(ca_pkcs8.expose_secret())?;
    let private = Ed25519PrivateKey::from_bytes(&seed);
    let keypair = Ed25519Keypair::from(private);
    PrivateKey::new(KeypairData::Ed25519(keypair), comment)
        .map_err(|e| SshError::BadCaKey(e.to_string()))
}

/// An OpenSSH public key line as `ALGORITHM BASE64`, without its comment; a text that is not
/// an OpenSSH public key is refused.
pub(crate) fn normalised_public_key(text: &str) -> Result<String, SshError> {
    let mut key =
        PublicKey::from_openssh(text.trim()).map_err(|e| SshError::BadPublicKey(e.to_string()))?;
    key.set_comment("");
    key.to_openssh()
        .map(|line| line.trim_end().to_owned())
        .map_err(|e| SshError::BadPublicKey(e.to_string()))
}

/// The SHA-256 fingerprint of an OpenSSH public key (`SHA256:...`), for audit events.
pub(crate) fn fingerprint(text: &str) -> Result<String, SshError> {
    let key =
        PublicKey::from_openssh(text.trim()).map_err(|e| SshError::BadPublicKey(e.to_string()))?;
    Ok(key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

/// What a gateway's host certificate is for.
pub(crate) struct HostCertificateRequest<'a> {
    /// The worker whose gateway presents it (the key id: `worker:<id>`).
    pub worker_id: &'a str,
    pub valid_after: u64,
    pub valid_before: u64,
    pub serial: u64,
}

/// Signs a host certificate for a worker's gateway key `host_key` (OpenSSH public key text)
/// with the host CA key (PKCS#8): the only principal is
/// [`portcullis_proto::gateway::HOST_ALIAS`].
pub(crate) fn sign_host(
    host_ca_pkcs8: &SecretBytes,
    host_key: &str,
    req: &HostCertificateRequest<'_>,
) -> Result<String, SshError> {
    let host = PublicKey::from_openssh(host_key.trim())
        .map_err(|e| SshError::BadPublicKey(e.to_string()))?;
    let ca = ca_private_key(host_ca_pkcs8, "portcullis-ssh-host-ca")?;
    let signing = |e: ssh_key::Error| SshError::Signing(e.to_string());
    let mut builder = Builder::new_with_random_nonce(
        &mut ssh_key::rand_core::OsRng,
        host.key_data().clone(),
        req.valid_after,
        req.valid_before,
    )
    .map_err(signing)?;
    builder.serial(req.serial).map_err(signing)?;
    builder
        .key_id(format!("worker:{}", req.worker_id))
        .map_err(signing)?;
    builder.cert_type(CertType::Host).map_err(signing)?;
    builder
        .valid_principal(portcullis_proto::gateway::HOST_ALIAS)
        .map_err(signing)?;
    let cert = builder.sign(&ca).map_err(signing)?;
    cert.to_openssh().map_err(signing)
}

/// Signs a user certificate for `user_key` (OpenSSH public key text) with the CA key (PKCS#8).
pub(crate) fn sign(
    ca_pkcs8: &SecretBytes,
    user_key: &str,
    req: &CertificateRequest<'_>,
) -> Result<String, SshError> {
    let user = PublicKey::from_openssh(user_key.trim())
        .map_err(|e| SshError::BadPublicKey(e.to_string()))?;
    let ca = ca_private_key(ca_pkcs8, "portcullis-ssh-ca")?;
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
    fn a_host_certificate_names_the_gateway_alias_and_the_worker() {
        let ca = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let host = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let text = sign_host(
            &SecretBytes::from(ca.serialize_der()),
            &host.public_key().to_openssh().unwrap(),
            &HostCertificateRequest {
                worker_id: "w_1",
                valid_after: 100,
                valid_before: 400,
                serial: 7,
            },
        )
        .unwrap();
        let cert = ssh_key::Certificate::from_openssh(&text).unwrap();
        assert_eq!(cert.cert_type(), CertType::Host);
        assert_eq!(
            cert.valid_principals(),
            &[portcullis_proto::gateway::HOST_ALIAS.to_string()]
        );
        assert_eq!(cert.key_id(), "worker:w_1");
        assert_eq!((cert.valid_after(), cert.valid_before()), (100, 400));
        assert_eq!(cert.public_key(), host.public_key().key_data());
        let ca_key =
            PublicKey::from_openssh(&ca_public_openssh(ca.public_key_raw()).unwrap()).unwrap();
        assert_eq!(cert.signature_key(), ca_key.key_data());
        // The certificate verifies under its CA (signature and validity at time 200).
        cert.validate_at(200, [&ca_key.fingerprint(ssh_key::HashAlg::Sha256)])
            .unwrap();
        assert!(sign_host(
            &SecretBytes::from(ca.serialize_der()),
            "not a key",
            &HostCertificateRequest {
                worker_id: "w_1",
                valid_after: 0,
                valid_before: 1,
                serial: 1,
            }
        )
        .is_err());
    }

    #[test]
    fn a_public_key_is_normalised_without_its_comment() {
        let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let mut public = key.public_key().clone();
        public.set_comment("alice@laptop");
        let line = public.to_openssh().unwrap();
        assert!(line.ends_with(" alice@laptop"));
        let normal = normalised_public_key(&format!("  {line}\n")).unwrap();
        assert_eq!(normal.split(' ').count(), 2, "{normal}");
        assert!(normal.starts_with("ssh-ed25519 AAAA"));
        assert!(line.starts_with(&normal));
        assert!(normalised_public_key("ssh-ed25519 !!!").is_err());
        assert!(fingerprint(&normal).unwrap().starts_with("SHA256:"));
    }

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
