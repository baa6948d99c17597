//! The API's own certificate (`api.tls_cert_file`, `api.tls_key_file`): read from the admin's
//! files at start, then re-read whenever they change, without a restart.
//!
//! [`ReloadingCertificate`] is the rustls resolver the API's TLS configuration holds: every
//! handshake takes the pair it holds at that moment. [`watch`] looks at the files every few
//! seconds (their inode, size and modification time, so both a rewrite in place and a
//! rename over them count) and swaps in the new pair only when it loads whole: a broken new
//! pair (a key that does not match the chain, a half-written file, a key others may read) is
//! logged and the old one kept, so renewing a certificate never takes the API down. The
//! internal CA is not involved: the cluster link and the worker proxy keep their own.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::config::CertificateFiles;

/// How often [`watch`] looks at the files.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Why a certificate pair could not be used. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read the API certificate file {path} (api.tls_cert_file): {message}")]
    Chain { path: String, message: String },
    #[error("cannot read the API key file {path} (api.tls_key_file): {message}")]
    Key { path: String, message: String },
    #[error(
        "the API key file {path} (api.tls_key_file) has mode {mode:o}: other users can read it; \
         run `chmod 600 {path}` (owned by the account the controller runs as)"
    )]
    Readable { path: String, mode: u32 },
    #[error(
        "the key in {key} does not belong to the first certificate in {cert}: \
         put the server's own certificate first, then its intermediates ({message})"
    )]
    Mismatch {
        cert: String,
        key: String,
        message: String,
    },
}

/// Reads and checks a certificate pair: the chain (PEM, leaf first), the key (PEM: PKCS#8,
/// RSA or EC) readable by its owner only, and the key matching the leaf.
pub(crate) fn load(files: &CertificateFiles) -> Result<CertifiedKey, CertificateError> {
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let chain = read_chain(&files.cert).map_err(|message| CertificateError::Chain {
        path: cert_path.clone(),
        message,
    })?;
    let key = read_key(&files.key)?;
    let signer = portcullis_crypto::tls::signing_key(&key).map_err(|e| CertificateError::Key {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| CertificateError::Mismatch {
            cert: cert_path,
            key: key_path,
            message: e.to_string(),
        })?;
    Ok(certified)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let failed = |message: String| CertificateError::Key {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    // The mode of the file opened, not of whatever the path names a moment later.
    let mode = file
        .metadata()
        .map_err(|e| failed(e.to_string()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(CertificateError::Readable {
            path: path.display().to_string(),
            mode,
        });
    }
    PrivateKeyDer::from_pem_reader(std::io::BufReader::new(file)).map_err(|e| {
        failed(format!(
            "no PEM private key (PKCS#8, RSA or EC) in it: {e}"
        ))
    })
}

/// The rustls resolver of the API: the pair it holds now, for every handshake.
#[derive(Debug)]
pub(crate) struct ReloadingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCertificate {
    pub(crate) fn new(first: CertifiedKey) -> ReloadingCertificate {
        ReloadingCertificate {
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// The pair handshakes get from now on.
    pub(crate) fn replace(&self, next: CertifiedKey) {
        // A writer cannot panic while holding the lock (it only assigns), so a poisoned
        // lock still holds a whole pair.
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(next);
    }

    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What identifies the contents of one file without reading it: a change of any field means
/// the file was rewritten or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    inode: u64,
    device: u64,
    size: u64,
    modified: Option<SystemTime>,
}

/// The stamps of both files; `None` for a file that cannot be looked at right now (it is
/// being replaced): a change like any other.
pub(crate) fn stamps(files: &CertificateFiles) -> [Option<FileStamp>; 2] {
    [stamp(&files.cert), stamp(&files.key)]
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: meta.ino(),
        device: meta.dev(),
        size: meta.size(),
        modified: meta.modified().ok(),
    })
}

/// Re-reads the files into `resolver` whenever their stamps change, until `shutdown`.
pub(crate) async fn watch(
    resolver: Arc<ReloadingCertificate>,
    files: CertificateFiles,
    shutdown: CancellationToken,
) {
    let mut seen = stamps(&files);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        let now = stamps(&files);
        if now == seen {
            continue;
        }
        // Remembered even when the load fails: a broken pair is reported once, and tried
        // again when either file changes next.
        seen = now;
        match load(&files) {
            Ok(next) => {
                resolver.replace(next);
                tracing::info!(
                    cert = %files.cert.display(),
                    "the API certificate files changed: new handshakes get the new certificate"
                );
            }
            Err(e) => tracing::warn!(
                error = %e,
                "the API certificate files changed but cannot be used; the API keeps \
                 presenting the previous certificate until they are fixed"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
