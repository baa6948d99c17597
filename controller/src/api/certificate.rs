//! The API's own certificate (`api.tls_cert_file`, `api.tls_key_file`): read from the admin's
//! files at start, then re-read whenever they change, without a restart.
//!
//! [`ReloadingCertificate`] is the rustls resolver the API's TLS configuration holds: every
//! handshake takes the pair it holds at that moment. [`watch`] has a [`Watcher`] look at the
//! files every few seconds (their inode, size, modification and change times, so a rewrite in
//! place, a rename over them and a `chmod` all count) and swaps in the new pair only when it loads whole: a broken new
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
    #[error("cannot read the API certificate's key file {path} (api.tls_key_file): {message}")]
    Key { path: String, message: String },
    #[error(
        "the API certificate's key file {path} (api.tls_key_file) has mode {mode:o}: other users can read it; \
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
    PrivateKeyDer::from_pem_reader(std::io::BufReader::new(file))
        .map_err(|e| failed(format!("no PEM private key (PKCS#8, RSA or EC) in it: {e}")))
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
/// the file was rewritten, replaced or had its mode changed (a key made private after a
/// refusal is tried again).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    device: u64,
    size: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: meta.ino(),
        device: meta.dev(),
        size: meta.size(),
        modified: meta.modified().ok(),
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// What one look at the files did.
#[derive(Debug)]
pub(crate) enum Check {
    /// The files are as last seen.
    Unchanged,
    /// They changed and the new pair is served from now on.
    Replaced,
    /// They changed but the new pair cannot be used; the previous one is still served.
    Kept(CertificateError),
}

/// The files, the resolver they feed, and their stamps as last seen; `None` for a file that
/// could not be looked at (being replaced): a change like any other.
pub(crate) struct Watcher {
    resolver: Arc<ReloadingCertificate>,
    files: CertificateFiles,
    seen: [Option<FileStamp>; 2],
}

impl Watcher {
    /// Watches `files`, whose current contents `resolver` holds.
    pub(crate) fn new(resolver: Arc<ReloadingCertificate>, files: CertificateFiles) -> Watcher {
        let seen = [stamp(&files.cert), stamp(&files.key)];
        Watcher {
            resolver,
            files,
            seen,
        }
    }

    /// Looks at the files once, and loads them when they changed.
    pub(crate) fn check(&mut self) -> Check {
        let now = [stamp(&self.files.cert), stamp(&self.files.key)];
        if now == self.seen {
            return Check::Unchanged;
        }
        // Remembered even when the load fails: a broken pair is reported once, and tried
        // again when either file changes next.
        self.seen = now;
        match load(&self.files) {
            Ok(next) => {
                self.resolver.replace(next);
                Check::Replaced
            }
            Err(e) => Check::Kept(e),
        }
    }
}

/// Looks at the files every [`CHECK_INTERVAL`] until `shutdown`, logging each change.
pub(crate) async fn watch(mut watcher: Watcher, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        match watcher.check() {
            Check::Unchanged => {}
            Check::Replaced => tracing::info!(
                cert = %watcher.files.cert.display(),
                "the API certificate files changed: new handshakes get the new certificate"
            ),
            Check::Kept(e) => tracing::warn!(
                error = %e,
                "the API certificate files changed but cannot be used; the API keeps \
                 presenting the previous certificate until they are fixed"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
