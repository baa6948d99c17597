//! `portcullis controller restore`: everything checked first, then written under temporary
//! names and linked into place, so that a restore either completes or leaves nothing.

use std::path::{Path, PathBuf};

use portcullis_audit::verify::Head;
use sqlx::Connection as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::files;
use super::manifest::{self, Manifest, StoreKind};
use super::sealed::{self, SealError};
use super::verify;
use super::{BackupError, Passphrase};
use crate::config::{Config, MasterKeySource};
use crate::keys::MasterKey;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::{Dialect, Store};

/// What a restore put in place.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: Manifest,
    /// The SQLite file written, or none for a PostgreSQL store (restored by `pg_restore`).
    pub store_file: Option<PathBuf>,
    /// The recordings' SQLite file written, if the backup has one.
    pub recordings_file: Option<PathBuf>,
    /// The master key file written; none when the new config takes the key from
    /// `PORTCULLIS_MASTER_KEY` (found to be the backup's key).
    pub master_key_file: Option<PathBuf>,
    /// The sealed private keys the master key opened.
    pub keys: usize,
    /// The audit events verified, and where the chain ends.
    pub audit_events: u64,
    pub audit_head: Option<Head>,
}

/// Restores the backup in `from` into the store and master key file that `config` (the new
/// controller's) names, refusing to replace either.
pub async fn restore(
    config: &Config,
    from: &Path,
    passphrase: &Passphrase,
) -> Result<Restored, BackupError> {
    let manifest_path = from.join(manifest::FILE);
    let text = files::read_small(&manifest_path, manifest::MAX_FILE_BYTES)?;
    let manifest = Manifest::parse(&text).map_err(|message| BackupError::Malformed {
        path: manifest_path.display().to_string(),
        message,
    })?;
    for f in &manifest.files {
        let (sha256, size) = files::hash_file(&from.join(&f.name))?;
        if sha256 != f.sha256 || size != f.size {
            return Err(BackupError::Tampered(format!(
                "{} has SHA-256 {sha256} ({size} bytes) but the manifest says {} ({} bytes)",
                f.name, f.sha256, f.size
            )));
        }
    }
    let dialect = match manifest.store {
        StoreKind::Sqlite => Dialect::Sqlite,
        StoreKind::Postgres => Dialect::Postgres,
    };
    verify::schema_known(manifest.schema_version, dialect)?;
    let url = config.store_url.expose_secret();
    let new_kind = if url.starts_with("sqlite:") {
        StoreKind::Sqlite
    } else {
        StoreKind::Postgres
    };
    if new_kind != manifest.store {
        return Err(BackupError::Refused(format!(
            "the backup holds a {} store but store.url of the new config is {}: restore into \
             the same kind of store",
            manifest.store.as_str(),
            new_kind.as_str()
        )));
    }

    let (master, key_text) = unseal(&from.join(sealed::FILE), passphrase)?;
    let key_file = match &config.master_key {
        MasterKeySource::File(path) => {
            if path.symlink_metadata().is_ok() {
                return Err(BackupError::Refused(format!(
                    "{} exists: a restore writes the backup's master key there and never \
                     replaces a key; point keys.master_key_file of the new config at a new \
                     path. Nothing was written",
                    path.display()
                )));
            }
            Some(path.clone())
        }
        MasterKeySource::Env(hex) => {
            let same: bool = hex
                .expose_secret()
                .trim()
                .to_ascii_lowercase()
                .as_bytes()
                .ct_eq(key_text.as_bytes())
                .into();
            if !same {
                return Err(BackupError::Refused(
                    "PORTCULLIS_MASTER_KEY is set but is not the backup's master key: unset \
                     it, so that the restore writes keys.master_key_file. Nothing was written"
                        .into(),
                ));
            }
            None
        }
    };

    match manifest.store {
        StoreKind::Sqlite => {
            restore_sqlite(config, from, manifest, &master, &key_text, key_file).await
        }
        StoreKind::Postgres => {
            restore_postgres(config, manifest, &master, &key_text, key_file).await
        }
    }
}

/// The master key from `master-key.sealed`, and its hex.
fn unseal(
    path: &Path,
    passphrase: &Passphrase,
) -> Result<(MasterKey, Zeroizing<String>), BackupError> {
    let text = files::read_small(path, sealed::MAX_FILE_BYTES)?;
    let shown = || path.display().to_string();
    let bytes = sealed::open(&text, passphrase).map_err(|e| match e {
        SealError::WrongPassphrase => BackupError::WrongPassphrase { path: shown() },
        SealError::Malformed(message) => BackupError::Malformed {
            path: shown(),
            message,
        },
        SealError::Crypto(message) => BackupError::Refused(message),
    })?;
    let hex = Zeroizing::new(hex::encode(bytes.as_slice()));
    let master = MasterKey::from_hex(&SecretString::from(hex.to_string()))?;
    Ok((master, hex))
}

async fn restore_sqlite(
    config: &Config,
    from: &Path,
    manifest: Manifest,
    master: &MasterKey,
    key_text: &str,
    key_file: Option<PathBuf>,
) -> Result<Restored, BackupError> {
    let store_dest = files::sqlite_path(config.store_url.expose_secret())?;
    refuse_existing_store(&store_dest)?;
    let recordings_dest = match manifest.file(manifest::RECORDINGS_FILE) {
        None => None,
        Some(_) => {
            let url = match &config.recordings.store_url {
                Some(url) if url.expose_secret().starts_with("sqlite:") => {
                    url.expose_secret().to_owned()
                }
                Some(_) => {
                    return Err(BackupError::Refused(
                        "the backup holds a SQLite recordings store but recordings.store_url \
                         of the new config is not SQLite: leave it out or point it at a new \
                         SQLite file"
                            .into(),
                    ))
                }
                None => crate::store::recordings::url_beside(config.store_url.expose_secret()),
            };
            let path = files::sqlite_path(&url)?;
            refuse_existing_store(&path)?;
            Some(path)
        }
    };

    // Proven on the backup's own snapshot, opened immutable (nothing is written beside
    // it); the copies below are checked against the same hashes.
    let snapshot = from.join(manifest::STORE_FILE);
    let mut conn = verify::open_snapshot(&snapshot).await?;
    let (schema, _) = verify::state(&mut conn).await?;
    if schema != manifest.schema_version {
        return Err(BackupError::Tampered(format!(
            "the snapshot's schema is {schema} but the manifest says {}",
            manifest.schema_version
        )));
    }
    verify::schema_known(schema, Dialect::Sqlite)?;
    let keys = verify::master_opens_keys(&mut conn, master).await?;
    let summary = verify::chain(&mut conn, &manifest.audit_head, true).await?;
    conn.close().await?;

    let mut placing = Placing::default();
    let mut copies = vec![(manifest::STORE_FILE, store_dest.clone())];
    if let Some(dest) = &recordings_dest {
        copies.push((manifest::RECORDINGS_FILE, dest.clone()));
    }
    let mut staged = Vec::new();
    for (name, dest) in &copies {
        let temp = temp_beside(dest)?;
        placing.temps.push(temp.clone());
        let (sha256, _) = files::copy_private(&from.join(name), &temp)?;
        if manifest.file(name).map(|f| f.sha256.as_str()) != Some(sha256.as_str()) {
            return Err(BackupError::Tampered(format!(
                "{name} changed while it was copied"
            )));
        }
        staged.push((temp, dest.clone()));
    }
    write_key_file(key_file.as_deref(), key_text, &mut placing)?;
    for (temp, dest) in &staged {
        // A link fails if something appeared at `dest` meanwhile: nothing is replaced.
        std::fs::hard_link(temp, dest).map_err(files::io("put in place", dest))?;
        placing.placed.push(dest.clone());
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::sync_dir(dir)?;
        }
    }
    placing.done();
    Ok(Restored {
        manifest,
        store_file: Some(store_dest),
        recordings_file: recordings_dest,
        master_key_file: key_file,
        keys,
        audit_events: summary.events,
        audit_head: summary.head,
    })
}

async fn restore_postgres(
    config: &Config,
    manifest: Manifest,
    master: &MasterKey,
    key_text: &str,
    key_file: Option<PathBuf>,
) -> Result<Restored, BackupError> {
    let store = Store::connect(&config.store_url, 2).await?;
    let checked = async {
        let mut conn = store.conn().await?;
        let (schema, _) = verify::state(&mut conn).await.map_err(|e| {
            BackupError::Refused(format!(
                "the database of store.url holds no Portcullis store ({e}): restore the dump \
                 into it first ({})",
                manifest
                    .postgres
                    .as_ref()
                    .map_or("pg_restore", |p| p.restore.as_str())
            ))
        })?;
        verify::schema_known(schema, Dialect::Postgres)?;
        let keys = verify::master_opens_keys(&mut conn, master).await?;
        let summary = verify::chain(&mut conn, &manifest.audit_head, false).await?;
        Ok::<_, BackupError>((keys, summary))
    }
    .await;
    store.close().await;
    let (keys, summary) = checked?;
    let mut placing = Placing::default();
    write_key_file(key_file.as_deref(), key_text, &mut placing)?;
    placing.done();
    Ok(Restored {
        manifest,
        store_file: None,
        recordings_file: None,
        master_key_file: key_file,
        keys,
        audit_events: summary.events,
        audit_head: summary.head,
    })
}

/// Refuses a store file (or its WAL) already at `path`.
fn refuse_existing_store(path: &Path) -> Result<(), BackupError> {
    let mut names = vec![path.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        names.push(PathBuf::from(name));
    }
    if let Some(found) = names.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(BackupError::Refused(format!(
            "{} exists: a restore never replaces a store; point store.url of the new config \
             at a new file (or move the old one away). Nothing was written",
            found.display()
        )));
    }
    Ok(())
}

/// A new temporary name in `dest`'s directory.
fn temp_beside(dest: &Path) -> Result<PathBuf, BackupError> {
    let tag = portcullis_crypto::random::bytes::<6>()
        .map_err(|e| BackupError::Refused(format!("no system randomness: {e}")))?;
    let mut name = dest.as_os_str().to_owned();
    name.push(format!(".restoring-{}", hex::encode(tag)));
    Ok(PathBuf::from(name))
}

fn write_key_file(
    path: Option<&Path>,
    key_text: &str,
    placing: &mut Placing,
) -> Result<(), BackupError> {
    let Some(path) = path else { return Ok(()) };
    let text = Zeroizing::new(format!("{key_text}\n"));
    portcullis_files::create_private_atomic(path, text.as_bytes())
        .map_err(|e| BackupError::Refused(format!("cannot write the master key file: {e}")))?;
    placing.placed.push(path.to_owned());
    Ok(())
}

/// What a restore wrote so far: removed when dropped, unless [`Placing::done`].
#[derive(Default)]
struct Placing {
    temps: Vec<PathBuf>,
    placed: Vec<PathBuf>,
}

impl Placing {
    /// The restore completed: the files stay; only the temporary names go.
    fn done(mut self) {
        self.placed.clear();
    }
}

impl Drop for Placing {
    fn drop(&mut self) {
        for path in self.temps.iter().chain(&self.placed) {
            let _ = std::fs::remove_file(path);
        }
    }
}
