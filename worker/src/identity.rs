//! The worker's identity on disk: its Ed25519 key (0600), its certificate, the controller CA,
//! and its id; created by enrolment with a join token.

use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::api::JoinRequest;
use portcullis_proto::clock::Clock;
use portcullis_proto::link::{self, Frame, Request, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use tokio_util::codec::Framed;

use crate::{ExposeSecret as _, WorkerError};

#[derive(Clone)]
pub struct Identity {
    pub worker_id: String,
    /// The private key (PKCS#8), zeroised when the last copy of the identity is dropped.
    pub key_pkcs8: Arc<secrecy::SecretSlice<u8>>,
    pub cert_pem: String,
    pub ca_pem: String,
    /// When the certificate was issued and expires (unix seconds); 0 when unknown, which
    /// makes the worker renew at once.
    pub cert_issued_at: u64,
    pub cert_expires_at: u64,
}

impl Identity {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.key_pkcs8.expose_secret().to_vec(),
        ))
    }

    pub fn cert_der(&self) -> Result<CertificateDer<'static>, WorkerError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| WorkerError::Identity(format!("bad certificate: {e}")))
    }

    pub fn ca_der(&self) -> Result<CertificateDer<'static>, WorkerError> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| WorkerError::Identity(format!("bad CA certificate: {e}")))
    }

    /// Hex SHA-256 of the worker's public key: what clients pin.
    pub fn fingerprint(&self) -> Result<String, WorkerError> {
        let key = rcgen::KeyPair::try_from(self.key_pkcs8.expose_secret())
            .map_err(|e| WorkerError::Identity(e.to_string()))?;
        Ok(portcullis_proto::keys::spki_fingerprint(
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        ))
    }

    /// Loads the identity from `dir`, if the worker has enrolled.
    pub fn load(dir: &Path) -> Result<Option<Identity>, WorkerError> {
        let id_path = dir.join("worker.json");
        if !id_path.exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| WorkerError::Identity(format!("cannot read {name}: {e}")))
        };
        let meta: serde_json::Value = serde_json::from_str(&read("worker.json")?)
            .map_err(|e| WorkerError::Identity(e.to_string()))?;
        let worker_id = meta["worker_id"]
            .as_str()
            .ok_or_else(|| WorkerError::Identity("worker.json has no worker_id".into()))?
            .to_owned();
        let key = PrivatePkcs8KeyDer::from_pem_slice(read("worker.key")?.as_bytes())
            .map_err(|e| WorkerError::Identity(format!("bad worker.key: {e}")))?;
        Ok(Some(Identity {
            worker_id,
            key_pkcs8: Arc::new(key.secret_pkcs8_der().to_vec().into()),
            cert_pem: read("worker.crt")?,
            ca_pem: read("ca.pem")?,
            cert_issued_at: meta["cert_issued_at"].as_u64().unwrap_or(0),
            cert_expires_at: meta["cert_expires_at"].as_u64().unwrap_or(0),
        }))
    }

    fn save(&self, dir: &Path, key_pem: &str) -> Result<(), WorkerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| WorkerError::Identity(format!("cannot create {}: {e}", dir.display())))?;
        write_file(&dir.join("worker.key"), key_pem, 0o600)?;
        write_file(&dir.join("ca.pem"), &self.ca_pem, 0o644)?;
        write_file(
            &dir.join("worker.json"),
            &serde_json::json!({"worker_id": self.worker_id}).to_string(),
            0o644,
        )?;
        save_certificate(
            dir,
            &self.cert_pem,
            self.cert_issued_at,
            self.cert_expires_at,
        )
    }
}

/// Saves the identity a join produced.
pub fn finish_enrolment(
    dir: &Path,
    key: rcgen::KeyPair,
    joined: portcullis_proto::api::JoinResponse,
    issued_at: u64,
) -> Result<Identity, WorkerError> {
    let identity = Identity {
        worker_id: joined.worker_id,
        key_pkcs8: Arc::new(key.serialize_der().into()),
        cert_pem: joined.cert_pem,
        ca_pem: joined.ca_pem,
        cert_issued_at: issued_at,
        cert_expires_at: joined.cert_expires_at,
    };
    identity.save(dir, &key.serialize_pem())?;
    Ok(identity)
}

/// Saves a (renewed) certificate with its validity next to the identity.
pub fn save_certificate(
    dir: &Path,
    pem: &str,
    issued_at: u64,
    expires_at: u64,
) -> Result<(), WorkerError> {
    write_file(&dir.join("worker.crt"), pem, 0o644)?;
    let path = dir.join("worker.json");
    let mut meta: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    meta["cert_issued_at"] = issued_at.into();
    meta["cert_expires_at"] = expires_at.into();
    write_file(&path, &meta.to_string(), 0o644)
}

/// Writes `contents` to `path` with `mode`, atomically (see `portcullis_files`: a fresh
/// 0600 temporary file, flushed, given `mode`, renamed over `path`).
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), WorkerError> {
    portcullis_files::write_atomic(path, contents.as_bytes(), mode)
        .map_err(|e| WorkerError::Identity(e.to_string()))
}

/// Verifies the controller during enrolment: the CA it presents must hash to the value in the
/// join token, and the leaf must chain to that CA for the controller's name.
#[derive(Debug)]
struct PinnedCaVerifier {
    ca_hash: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.last().ok_or(rustls::Error::General(
            "the controller sent no CA certificate".into(),
        ))?;
        let spki = webpki::EndEntityCert::try_from(ca)
            .map_err(|_| rustls::Error::General("unparsable CA certificate".into()))?
            .subject_public_key_info();
        if portcullis_proto::keys::spki_fingerprint(spki.as_ref()) != self.ca_hash {
            return Err(rustls::Error::General(
                "the controller's CA does not match the join token: wrong controller?".into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Enrols with a join token at one of the controllers; saves and returns the identity.
pub async fn enrol(
    dir: &Path,
    controllers: &[String],
    token: &str,
    name: &str,
    proxy_addr: &str,
    clock: &dyn Clock,
) -> Result<Identity, WorkerError> {
    let (ca_hash, _) = portcullis_proto::api::join_token::parse(token)
        .map_err(|m| WorkerError::Enrol(m.to_owned()))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map_err(|e| WorkerError::Identity(e.to_string()))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCaVerifier {
        ca_hash: ca_hash.to_owned(),
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| WorkerError::Identity(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![link::ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let request = Frame::Request {
        id: 1,
        body: Request::Join(JoinRequest {
            token: token.to_owned(),
            name: name.to_owned(),
            public_key: portcullis_proto::keys::b64(&spki),
            proxy_addr: proxy_addr.to_owned(),
        }),
    };
    let bytes = link::encode(&request).map_err(|e| WorkerError::Enrol(e.to_string()))?;
    let mut last = String::from("no controller address is configured");
    for addr in controllers {
        let attempt = async {
            let tcp = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let server =
                ServerName::try_from(link::CONTROLLER_SERVER_NAME).map_err(|e| e.to_string())?;
            let tls = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                connector.connect(server, tcp),
            )
            .await
            .map_err(|_| format!("TLS with {addr} timed out"))?
            .map_err(|e| format!("TLS with {addr} failed: {e}"))?;
            join_over(tls, bytes.clone()).await
        };
        match attempt.await {
            Ok(joined) => return finish_enrolment(dir, key, joined, clock.unix_secs()),
            Err(message) => last = message,
        }
    }
    Err(WorkerError::Enrol(last))
}

/// Sends the encoded `join` request on a fresh link (either direction: the worker dialled
/// out, or a controller dialled in) and reads the controller's answer.
pub(crate) async fn join_over<S>(
    stream: S,
    join: bytes::Bytes,
) -> Result<portcullis_proto::api::JoinResponse, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, link::codec());
    framed.send(join).await.map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), framed.next())
        .await
        .map_err(|_| "the controller did not answer the join request".to_string())?
        .ok_or("the controller closed the link")?
        .map_err(|e| e.to_string())?;
    match link::decode(&answer).map_err(|e| e.to_string())? {
        Frame::Response {
            body: Response::Joined(joined),
            ..
        } => Ok(joined),
        Frame::Response {
            body: Response::Error { message, .. },
            ..
        } => Err(format!(
            "the controller refused to enrol this worker: {message}"
        )),
        _ => Err("unexpected answer to the join request".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::write_file;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_leftover_temporary_file_does_not_lend_its_mode_to_the_key() {
        let dir = tempfile::tempdir().unwrap();
        // What an interrupted write (or another user) may leave behind, world-readable.
        for leftover in ["worker.tmp", ".identity.tmp"] {
            let path = dir.path().join(leftover);
            std::fs::write(&path, "old").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let key = dir.path().join("worker.key");
        write_file(&key, "PRIVATE", 0o600).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "PRIVATE");
        // A key file that was world-readable is replaced by a 0600 one.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&key, "PRIVATE2", 0o600).unwrap();
        assert_eq!(mode(&key), 0o600);
        // Public files get the mode asked for.
        let cert = dir.path().join("worker.crt");
        write_file(&cert, "CERT", 0o644).unwrap();
        assert_eq!(mode(&cert), 0o644);
    }
}
