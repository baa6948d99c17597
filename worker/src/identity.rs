//! The worker's identity on disk: its Ed25519 key (0600), its certificate, the controllers'
//! CA bundle (`ca.pem`, replaced when a TLS CA rotation changes it), and its id; created by
//! enrolment with a join token.

use std::path::Path;
use std::sync::Arc;

use portcullis_proto::clock::Clock;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls_pki_types::pem::PemObject as _;

use crate::enrol::{Enrolment, Side};
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
    key: &rcgen::KeyPair,
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

/// Saves the controllers' CA bundle (public certificates) as `ca.pem`, atomically.
pub(crate) fn save_ca(dir: &Path, pem: &str) -> Result<(), WorkerError> {
    write_file(&dir.join("ca.pem"), pem, 0o644)
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

/// Enrols with a join token at one of the controllers, dialling each in turn; saves and
/// returns the identity.
pub async fn enrol(
    dir: &Path,
    controllers: &[String],
    token: &str,
    name: &str,
    proxy_addr: &str,
    clock: &dyn Clock,
) -> Result<Identity, WorkerError> {
    let enrolment = Enrolment::new(token, name, proxy_addr, Side::Dial)?;
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
            enrolment
                .attempt(tcp, std::time::Duration::from_secs(10))
                .await
                .map_err(|e| format!("with {addr}: {e}"))
        };
        match attempt.await {
            Ok(joined) => return enrolment.finish(dir, joined, clock.unix_secs()),
            Err(message) => last = message,
        }
    }
    Err(WorkerError::Enrol(last))
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
