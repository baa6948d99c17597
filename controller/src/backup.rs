//! `portcullis controller backup` and `restore`: a consistent copy of the controller's state
//! that is useless without the operator's passphrase, and a restore that proves the copy
//! whole before it writes anything.
//!
//! A backup is a directory (mode 0700, every file in it 0600):
//! - `store.db`, and `recordings.db` when the recordings live in a SQLite file of their own:
//!   SQLite's `VACUUM INTO`, which copies inside one read transaction, so the snapshot is
//!   consistent with itself while a controller keeps writing. A PostgreSQL store is copied
//!   by the operator with the `pg_dump` line the backup prints and records: the database is
//!   its administrator's to dump, and the backup does not pretend to.
//! - `master-key.sealed` ([`sealed`]): the master key under a key derived from the
//!   passphrase (argon2id), sealed with AES-256-GCM. The plain key is never written there.
//! - `manifest.json` ([`manifest`]): versions, the store's kind, each file's SHA-256 and
//!   size, and the audit chain's head in the snapshot.
//!
//! The backup is recorded as `backup_created` (with the manifest's hash) in the live store's
//! chain once its files are written; a backup whose event cannot be committed is removed.
//!
//! A restore checks the manifest and every hash, refuses a schema newer than the binary,
//! unseals the key (a wrong passphrase writes nothing), checks that the key opens every
//! sealed private key of the snapshot and walks the audit chain to the manifest's head, all
//! before it writes. Then it copies under temporary names and renames into place, so a
//! failed restore leaves no store behind.

mod create;
mod files;
mod manifest;
mod restore;
mod sealed;
#[cfg(test)]
mod tests;
mod verify;

use crate::keys::KeyError;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::StoreError;

pub use create::{create, Created};
pub use manifest::{FileEntry, Manifest, PostgresSteps, StoreKind};
pub use restore::{restore, Restored};

/// The shortest passphrase accepted (characters).
pub(crate) const MIN_PASSPHRASE_CHARS: usize = 12;
/// The longest passphrase accepted (bytes).
const MAX_PASSPHRASE_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the passphrase {0}")]
    Passphrase(String),
    #[error(
        "the passphrase does not open {path}: it is the wrong passphrase, or the file was \
         changed. Nothing was written"
    )]
    WrongPassphrase { path: String },
    #[error("{path} is not a backup this version can read: {message}. Nothing was written")]
    Malformed { path: String, message: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("the backup was changed or is incomplete: {0}. Nothing was written")]
    Tampered(String),
    #[error("the backup's audit chain does not verify: {0}. Nothing was written")]
    Chain(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

impl From<crate::ControllerError> for BackupError {
    fn from(err: crate::ControllerError) -> Self {
        match err {
            crate::ControllerError::Store(e) => BackupError::Store(e),
            crate::ControllerError::Keys(e) => BackupError::Keys(e),
            other => BackupError::Refused(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for BackupError {
    fn from(err: sqlx::Error) -> Self {
        BackupError::Store(err.into())
    }
}

/// The operator's passphrase: what seals the master key in a backup. Never logged, never
/// an argument (a file only its owner reads, or typed on a terminal).
pub struct Passphrase(SecretString);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<secret>)")
    }
}

impl Passphrase {
    /// A passphrase of at least [`MIN_PASSPHRASE_CHARS`] characters.
    pub fn new(text: SecretString) -> Result<Passphrase, BackupError> {
        let found = text.expose_secret().chars().count();
        if found < MIN_PASSPHRASE_CHARS {
            return Err(BackupError::Passphrase(format!(
                "has {found} characters; a backup's needs at least {MIN_PASSPHRASE_CHARS} \
                 (several words are easiest to remember)"
            )));
        }
        if text.expose_secret().len() > MAX_PASSPHRASE_BYTES {
            return Err(BackupError::Passphrase(format!(
                "is longer than {MAX_PASSPHRASE_BYTES} bytes: choose a shorter one"
            )));
        }
        Ok(Passphrase(text))
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}
