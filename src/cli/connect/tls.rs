//! The client's TLS to a worker's proxy listener: a per-session Ed25519 identity, and the
//! worker's key pinned (`portcullis_crypto`'s `PinnedKey`).
//!
//! There is no CA in this path. The controller, over its authenticated API, names the worker
//! and the SHA-256 of its public key (SPKI); the verifier accepts exactly that key and then
//! really checks the TLS 1.3 handshake signature with it, so only the holder of the pinned
//! private key can complete the handshake. The certificate's names and dates carry no
//! authority here and are not checked.

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use portcullis_crypto::tls::{self, verify::PinnedKey, ClientAuth};
use portcullis_proto::proxy;
use rcgen::PublicKeyData as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// The name the client asks for; the key is pinned, so the name is not checked.
pub(crate) const WORKER_SERVER_NAME: &str = "portcullis-worker";

/// The client certificate's name.
const CLIENT_NAME: &str = "portcullis-client";

/// The ephemeral key and self-signed certificate of one session. The grant binds the
/// key's SPKI hash; the worker checks that this certificate carries that key.
pub(crate) struct ClientIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// A fresh Ed25519 key and a self-signed certificate for it.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .context("cannot generate the session key")?;
        let cert = rcgen::CertificateParams::new(vec![CLIENT_NAME.into()])
            .and_then(|params| params.self_signed(&key))
            .context("cannot make the session certificate")?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// Reads an identity from PEM (as kept in a session hand-off file).
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .context("the session certificate is not valid PEM")?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .context("the session key is not a valid PKCS#8 PEM key")?;
        let pair = rcgen::KeyPair::try_from(&key)
            .context("the session key is not a usable Ed25519 key")?;
        if spki_of(&cert)? != pair.subject_public_key_info() {
            bail!("the session certificate does not belong to the session key");
        }
        Ok(Self { cert, key })
    }

    /// The DER `SubjectPublicKeyInfo` of the key: what authorize-session receives.
    pub(crate) fn public_key_der(&self) -> anyhow::Result<Vec<u8>> {
        spki_of(&self.cert)
    }

    pub(crate) fn cert_pem(&self) -> String {
        pem("CERTIFICATE", self.cert.as_ref())
    }

    /// The private key as PKCS#8 PEM; goes only into a 0600 hand-off file.
    pub(crate) fn key_pem(&self) -> String {
        pem("PRIVATE KEY", self.key.secret_pkcs8_der())
    }

    /// The rustls client config for one session: TLS 1.3 only, the proxy ALPN, this
    /// identity as client certificate, and the worker key pinned to `worker_fingerprint`.
    pub(crate) fn client_config(
        &self,
        worker_fingerprint: &str,
    ) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let worker = Arc::new(PinnedKey::new(worker_fingerprint)?);
        let auth = ClientAuth::Cert {
            chain: vec![self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(self.key.clone_key()),
        };
        let config = tls::client_config(worker, auth, proxy::ALPN)
            .context("cannot use the session key as TLS client key")?;
        Ok(Arc::new(config))
    }
}

/// The server name sent in the handshake (SNI); never checked against the certificate.
pub(crate) fn server_name() -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(WORKER_SERVER_NAME).context("invalid worker server name")
}

fn spki_of(cert: &CertificateDer<'_>) -> anyhow::Result<Vec<u8>> {
    tls::spki_of(cert).context("cannot parse the session certificate")
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use portcullis_proto::keys;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A worker-like TLS identity for tests: (certificate, key, fingerprint).
    pub(crate) fn worker_identity() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["worker".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let fingerprint = keys::spki_fingerprint(&key.subject_public_key_info());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key, fingerprint)
    }

    /// Serves a certificate with whatever signing key it is given, matching or not.
    #[derive(Debug)]
    struct FixedCert(Arc<CertifiedKey>);

    impl ResolvesServerCert for FixedCert {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    pub(crate) fn server_config(
        cert: CertificateDer<'static>,
        signing_key: PrivateKeyDer<'static>,
    ) -> Arc<rustls::ServerConfig> {
        let signer = tls::signing_key(&signing_key).unwrap();
        let resolver = FixedCert(Arc::new(CertifiedKey::new(vec![cert], signer)));
        let config = tls::server_config(
            Arc::new(tls::verify::AnyKey),
            tls::ServerCert::Resolver(Arc::new(resolver)),
            proxy::ALPN,
        )
        .unwrap();
        Arc::new(config)
    }

    /// Runs one handshake and a one-byte exchange; returns the client's error, if any.
    async fn handshake(server: Arc<rustls::ServerConfig>, pin: &str) -> Result<(), String> {
        handshake_with(server, pin).await.map_err(|e| e.to_string())
    }

    async fn handshake_with(
        server: Arc<rustls::ServerConfig>,
        pin: &str,
    ) -> Result<(), std::io::Error> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(server).accept(tcp).await {
                let _ = tls.write_all(b"!").await;
                let _ = tls.shutdown().await;
            }
        });
        let identity = ClientIdentity::generate().unwrap();
        let config = identity.client_config(pin).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name().unwrap(), tcp)
            .await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(proxy::ALPN));
        Ok(())
    }

    #[tokio::test]
    async fn pinned_key_is_accepted() {
        let (cert, key, fingerprint) = worker_identity();
        handshake(server_config(cert, key), &fingerprint)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn another_key_is_refused() {
        let (cert, key, _) = worker_identity();
        let (_, _, other) = worker_identity();
        let err = handshake_with(server_config(cert, key), &other)
            .await
            .unwrap_err();
        let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            panic!("not a certificate error: {err}");
        };
        assert!(other.0.to_string().contains("is not the key"), "{other:?}");
    }

    /// A server that shows the pinned certificate but cannot sign with its key fails: the
    /// handshake signature is really verified, not just the certificate compared.
    #[tokio::test]
    async fn pinned_certificate_without_its_key_is_refused() {
        let (cert, _, fingerprint) = worker_identity();
        let (_, impostor_key, _) = worker_identity();
        let err = handshake(server_config(cert, impostor_key), &fingerprint)
            .await
            .unwrap_err();
        assert!(err.to_lowercase().contains("signature"), "{err}");
    }

    #[test]
    fn identity_round_trips_through_pem() {
        let identity = ClientIdentity::generate().unwrap();
        let again = ClientIdentity::from_pem(&identity.cert_pem(), &identity.key_pem()).unwrap();
        assert_eq!(
            again.public_key_der().unwrap(),
            identity.public_key_der().unwrap()
        );
        let other = ClientIdentity::generate().unwrap();
        assert!(ClientIdentity::from_pem(&identity.cert_pem(), &other.key_pem()).is_err());
        assert!(!format!("{identity:?}").contains("PRIVATE"));
    }

    #[test]
    fn fingerprint_must_be_hex() {
        let identity = ClientIdentity::generate().unwrap();
        assert!(identity.client_config("abc").is_err());
        assert!(identity.client_config(&"AB".repeat(32)).is_ok());
    }
}
