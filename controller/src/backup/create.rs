//! `portcullis controller backup`: the snapshot, the sealed key, the manifest, and the
//! `backup_created` event, beside a running controller.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::{ConnectOptions as _, Connection as _};
use zeroize::Zeroizing;

use super::files::{self, io};
use super::manifest::{self, FileEntry, Manifest, PostgresSteps, StoreKind};
use super::sealed;
use super::verify;
use super::{BackupError, Passphrase};
use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::config::{Config, MasterKeySource};
use crate::keys::Keyset;
use crate::secret::ExposeSecret as _;
use crate::store::{Dialect, Store, StoreError};
use crate::tokens::Operator;

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Created {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 (hex) of `manifest.json`, as recorded in `backup_created`.
    pub manifest_sha256: String,
}

/// Writes a backup of the controller `config` describes into `out` (a new or empty
/// directory), the master key sealed under `passphrase`, and records `backup_created` with
/// `operator` as the actor. On any error the files written are removed.
pub async fn create(
    config: &Config,
    out: &Path,
    passphrase: &Passphrase,
    operator: &Operator,
) -> Result<Created, BackupError> {
    let master = master_key_bytes(&config.master_key)?;
    // The store as it is, never migrated: a newer binary would otherwise migrate the store
    // under a running older controller. The master key must open the keyset before
    // anything is written.
    let store = Store::connect(&config.store_url, config.store_max_connections).await?;
    same_schema(&store).await?;
    let keys = Keyset::new(
        store.clone(),
        crate::keys::MasterKey::from_source(&config.master_key)?,
    );
    keys.ensure().await?;
    let created_dir = files::prepare_dir(out)?;
    let mut partial = Partial {
        dir: out.to_owned(),
        created_dir,
        written: Vec::new(),
    };
    let result = async {
        let taken = snapshot(config, &store, &mut partial).await?;
        let (manifest, manifest_sha256) =
            describe(&master, passphrase, taken, keys.clock().now(), &mut partial)?;
        record(&store, &keys, operator, &manifest, &manifest_sha256).await?;
        Ok(Created {
            dir: out.to_owned(),
            manifest,
            manifest_sha256,
        })
    }
    .await;
    store.close().await;
    if result.is_ok() {
        partial.written.clear();
        partial.created_dir = false;
    }
    result
}

/// What the snapshot step found.
struct Snapshot {
    kind: StoreKind,
    schema: i64,
    head: portcullis_audit::verify::Head,
    postgres: Option<PostgresSteps>,
}

/// SQLite: `store.db` (and `recordings.db`), the schema and head read from the snapshot
/// itself. PostgreSQL: the schema and head now, and the commands for the operator.
async fn snapshot(
    config: &Config,
    store: &crate::Store,
    partial: &mut Partial,
) -> Result<Snapshot, BackupError> {
    let out = partial.dir.clone();
    let url = config.store_url.expose_secret();
    Ok(match store.dialect() {
        Dialect::Sqlite => {
            let snapshot = out.join(manifest::STORE_FILE);
            partial.written.push(snapshot.clone());
            vacuum_into(url, &snapshot).await?;
            if let Some(recordings) = recordings_file(config)? {
                let copy = out.join(manifest::RECORDINGS_FILE);
                partial.written.push(copy.clone());
                let url = format!("sqlite://{}", recordings.display());
                vacuum_into(&url, &copy).await?;
            }
            let mut conn = verify::open_snapshot(&snapshot).await?;
            let (schema, head) = verify::state(&mut conn).await?;
            conn.close().await?;
            Snapshot {
                kind: StoreKind::Sqlite,
                schema,
                head,
                postgres: None,
            }
        }
        Dialect::Postgres => {
            let mut conn = store.conn().await?;
            let (schema, head) = verify::state(&mut conn).await?;
            drop(conn);
            Snapshot {
                kind: StoreKind::Postgres,
                schema,
                head,
                postgres: Some(pg_steps(url, &out)?),
            }
        }
    })
}

/// Writes `master-key.sealed` and `manifest.json`; returns the manifest and its hash.
fn describe(
    master: &[u8],
    passphrase: &Passphrase,
    taken: Snapshot,
    now: std::time::SystemTime,
    partial: &mut Partial,
) -> Result<(Manifest, String), BackupError> {
    let out = partial.dir.clone();
    let sealed_path = out.join(sealed::FILE);
    partial.written.push(sealed_path.clone());
    let text = sealed::seal(master, passphrase, sealed::COST)
        .map_err(|e| BackupError::Refused(format!("cannot seal the master key: {e}")))?;
    portcullis_files::create_private_atomic(&sealed_path, text.as_bytes())
        .map_err(|e| BackupError::Refused(e.to_string()))?;

    let mut entries = Vec::new();
    for name in [
        manifest::STORE_FILE,
        manifest::RECORDINGS_FILE,
        sealed::FILE,
    ] {
        let path = out.join(name);
        if path.exists() {
            let (sha256, size) = files::hash_file(&path)?;
            entries.push(FileEntry {
                name: name.to_owned(),
                sha256,
                size,
            });
        }
    }
    let created_at = humantime::format_rfc3339_seconds(now).to_string();
    let manifest = Manifest::new(
        taken.schema,
        created_at,
        taken.kind,
        entries,
        taken.head,
        taken.postgres,
    );
    let text = manifest
        .to_text()
        .map_err(|e| BackupError::Refused(format!("cannot write the manifest: {e}")))?;
    let manifest_path = out.join(manifest::FILE);
    partial.written.push(manifest_path.clone());
    portcullis_files::create_private_atomic(&manifest_path, text.as_bytes())
        .map_err(|e| BackupError::Refused(e.to_string()))?;
    files::sync_dir(&out)?;
    Ok((
        manifest,
        portcullis_crypto::digest::sha256_hex(text.as_bytes()),
    ))
}

/// `backup_created` in the live chain, through the audited transaction.
async fn record(
    store: &crate::Store,
    keys: &crate::Keyset,
    operator: &Operator,
    manifest: &Manifest,
    manifest_sha256: &str,
) -> Result<(), BackupError> {
    let tx = AuditedTx::begin(store, keys).await?;
    tx.commit(AuditEvent::new(
        Actor::local(&operator.account),
        Event::BackupCreated {
            details: event::BackupCreated {
                store: manifest.store.as_str().into(),
                schema_version: manifest.schema_version,
                audit_sequence: manifest.audit_head.sequence,
                manifest_sha256: manifest_sha256.to_owned(),
            },
        },
    ))
    .await?;
    Ok(())
}

/// The files of a backup that failed, removed when it is dropped (the directory too, if the
/// backup created it).
struct Partial {
    dir: PathBuf,
    created_dir: bool,
    written: Vec<PathBuf>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        for path in &self.written {
            let _ = std::fs::remove_file(path);
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// The master key's 32 bytes, from where the config says it is.
fn master_key_bytes(source: &MasterKeySource) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let text = match source {
        MasterKeySource::File(path) => {
            Zeroizing::new(portcullis_files::read_owner_only(path).map_err(|e| {
                BackupError::Refused(format!("cannot read the master key file: {e}"))
            })?)
        }
        MasterKeySource::Env(hex) => Zeroizing::new(hex.expose_secret().to_owned()),
    };
    let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| {
        BackupError::Refused("the master key must be 64 hex characters (32 bytes)".into())
    })?);
    if bytes.len() != 32 {
        return Err(BackupError::Refused(format!(
            "the master key must be 32 bytes, found {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The recordings store's SQLite file, when it is a file of its own that exists.
fn recordings_file(config: &Config) -> Result<Option<PathBuf>, BackupError> {
    let url = match &config.recordings.store_url {
        Some(url) if url.expose_secret().starts_with("sqlite:") => url.expose_secret().to_owned(),
        Some(_) => return Ok(None),
        None => crate::store::recordings::url_beside(config.store_url.expose_secret()),
    };
    let path = files::sqlite_path(&url)?;
    Ok(path.exists().then_some(path))
}

/// `VACUUM INTO`: a copy of the database at `url` made inside one read transaction, so
/// consistent while a controller writes (its commits go on in the WAL meanwhile).
async fn vacuum_into(url: &str, out: &Path) -> Result<(), BackupError> {
    let path = files::sqlite_path(url)?;
    if !path.exists() {
        return Err(BackupError::Refused(format!(
            "the SQLite store {} does not exist: check store.url",
            path.display()
        )));
    }
    let target = out
        .to_str()
        .ok_or_else(|| BackupError::Refused(format!("{} is not a UTF-8 path", out.display())))?;
    files::create_empty_private(out)?;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| BackupError::Refused(format!("store.url is not a SQLite URL: {e}")))?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(io("flush", out))
}

/// The `pg_dump` and `pg_restore` lines for the database at `url` (its password left out:
/// `pg_dump` reads it from PGPASSWORD or ~/.pgpass, never from a command line).
fn pg_steps(url: &str, out: &Path) -> Result<PostgresSteps, BackupError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| BackupError::Refused(format!("store.url is not a URL: {e}")))?;
    let _ = parsed.set_password(None);
    let dump = out.join(manifest::PGDUMP_FILE);
    let dump = files::shell_quote(&dump.display().to_string());
    Ok(PostgresSteps {
        dump: format!(
            "pg_dump --format=custom --file {dump} {}",
            files::shell_quote(parsed.as_str())
        ),
        restore: format!("pg_restore --exit-on-error --no-owner --dbname NEW_DATABASE_URL {dump}"),
    })
}

/// The store's schema is this binary's: an older one is refused (this binary would have to
/// migrate it), a newer one too (this binary does not know its tables).
async fn same_schema(store: &Store) -> Result<(), BackupError> {
    let known = crate::store::known_schema(store.dialect());
    let applied = {
        let mut conn = store.conn().await?;
        crate::store::applied_schema(&mut conn).await?
    };
    if applied > known {
        return Err(StoreError::SchemaNewer { applied, known }.into());
    }
    if applied < known {
        return Err(BackupError::Refused(format!(
            "the store's schema is at migration {applied}, this binary's at {known}: a backup \
             never migrates. Back up with the binary the controller runs (`portcullis \
             --version`), or start this version's controller first (it migrates the store)"
        )));
    }
    Ok(())
}
