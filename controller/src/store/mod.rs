//! The controller's store: every piece of state (keys, users, tokens, targets, workers,
//! sessions, connections, rate-limit counters, audit events) lives here, never only in a
//! process's memory, so that any controller on the same database can take over.
//!
//! One interface, two backends on sqlx: SQLite (the embedded default) and PostgreSQL.
//! Queries are runtime queries in the SQL both dialects accept (`$1` placeholders, integer
//! unix times, JSON text for lists); the few differences live in [`Dialect`]. Every query
//! function takes a `&mut AnyConnection` so it composes into the caller's transaction.

pub(crate) mod access_requests;
#[cfg(test)]
mod access_requests_suite_tests;
pub(crate) mod audit;
pub(crate) mod audit_verified;
pub(crate) mod catalog;
#[cfg(test)]
mod catalog_suite_tests;
mod checkpoint;
pub(crate) mod connections;
pub(crate) mod console_sessions;
#[cfg(test)]
mod console_sessions_suite_tests;
pub(crate) mod join_tokens;
pub(crate) mod keys;
#[cfg(test)]
mod keys_suite_tests;
pub(crate) mod local_users;
#[cfg(test)]
mod local_users_suite_tests;
pub(crate) mod oidc_logins;
#[cfg(test)]
mod oidc_logins_suite_tests;
pub(crate) mod pve_tokens;
#[cfg(test)]
mod pve_tokens_suite_tests;
pub(crate) mod rate_limits;
pub(crate) mod recordings;
#[cfg(test)]
mod recordings_tests;
pub(crate) mod service_accounts;
#[cfg(test)]
mod service_accounts_suite_tests;
pub(crate) mod session_list;
#[cfg(test)]
mod session_list_suite_tests;
pub(crate) mod session_secrets;
pub(crate) mod sessions;
#[cfg(test)]
mod sessions_suite_tests;
pub(crate) mod ssh_certificates;
pub(crate) mod step_ups;
#[cfg(test)]
mod step_ups_suite_tests;
#[cfg(test)]
mod suite_tests;
pub(crate) mod targets;
pub(crate) mod tokens;
pub(crate) mod users;
pub(crate) mod vault_credentials;
#[cfg(test)]
mod vault_credentials_suite_tests;
pub(crate) mod workers;
#[cfg(test)]
mod writes_tests;

use std::borrow::Cow;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyConnection, AnyPool, ConnectOptions as _, Transaction};

use crate::secret::{ExposeSecret as _, SecretString};

/// The SQL dialect of a backend, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot apply migrations: {0}")]
    Migrate(String),
    #[error(
        "the database's schema is newer than this binary: migration {applied} was applied by a \
         newer Portcullis, and this one knows migrations up to {known}. Run that newer version \
         (or a later one): migrations only go forward, and an older binary never writes to a \
         newer schema"
    )]
    SchemaNewer { applied: i64, known: i64 },
    #[error(
        "migration {0} in the database differs from this binary's: the database was migrated by \
         another build of the same version. Run the build that migrated it, or restore a backup"
    )]
    SchemaChanged(i64),
    #[error("bad store URL: {0}")]
    BadUrl(String),
}

/// Why migrating failed, in the words an operator acts on: a schema migrated by a newer
/// binary (or another build) is refused before anything is written. `known` is the newest
/// migration this binary has.
fn migrate_error(err: sqlx::migrate::MigrateError, known: i64) -> StoreError {
    use sqlx::migrate::MigrateError;
    match err {
        MigrateError::VersionMissing(applied) if applied > known => {
            StoreError::SchemaNewer { applied, known }
        }
        MigrateError::VersionMismatch(version) => StoreError::SchemaChanged(version),
        other => StoreError::Migrate(other.to_string()),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            _ => StoreError::Query(err.to_string()),
        }
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

/// Set on every pooled SQLite connection (the connection URL keeps none of them).
///
/// WAL with `synchronous = NORMAL`: a commit is not flushed to disk on its own (the WAL is, at
/// checkpoints), so a power loss can roll back the last commits, action and audit event
/// together; a crash of the process loses nothing. FULL would fsync every commit (~0.6 ms).
/// Checkpoints run beside the writer (`checkpoint.rs`), not in it.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA wal_autocheckpoint = 0",
    "PRAGMA synchronous = NORMAL",
];

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundations",
        include_str!("../../../migrations/sqlite/0001_foundations.sql"),
    ),
    (
        3,
        "audit_chain",
        include_str!("../../../migrations/sqlite/0003_audit_chain.sql"),
    ),
    (
        4,
        "ssh_host_keys",
        include_str!("../../../migrations/sqlite/0004_ssh_host_keys.sql"),
    ),
    (
        5,
        "ssh_certificates",
        include_str!("../../../migrations/sqlite/0005_ssh_certificates.sql"),
    ),
    (
        6,
        "oidc_logins",
        include_str!("../../../migrations/sqlite/0006_oidc_logins.sql"),
    ),
    (
        7,
        "vault_credentials",
        include_str!("../../../migrations/sqlite/0007_vault_credentials.sql"),
    ),
    (
        8,
        "worker_phase",
        include_str!("../../../migrations/sqlite/0008_worker_phase.sql"),
    ),
    (
        9,
        "session_client_seen",
        include_str!("../../../migrations/sqlite/0009_session_client_seen.sql"),
    ),
    (
        10,
        "gateway_sessions",
        include_str!("../../../migrations/sqlite/0010_gateway_sessions.sql"),
    ),
    (
        11,
        "catalog",
        include_str!("../../../migrations/sqlite/0011_catalog.sql"),
    ),
    (
        12,
        "pve_tokens",
        include_str!("../../../migrations/sqlite/0012_pve_tokens.sql"),
    ),
    (
        13,
        "local_users",
        include_str!("../../../migrations/sqlite/0013_local_users.sql"),
    ),
    (
        14,
        "password_expiry",
        include_str!("../../../migrations/sqlite/0014_password_expiry.sql"),
    ),
    (
        15,
        "service_accounts",
        include_str!("../../../migrations/sqlite/0015_service_accounts.sql"),
    ),
    (
        16,
        "session_secrets",
        include_str!("../../../migrations/sqlite/0016_session_secrets.sql"),
    ),
    (
        17,
        "console_sessions",
        include_str!("../../../migrations/sqlite/0017_console_sessions.sql"),
    ),
    (
        18,
        "audit_verified",
        include_str!("../../../migrations/sqlite/0018_audit_verified.sql"),
    ),
    (
        19,
        "session_decisions",
        include_str!("../../../migrations/sqlite/0019_session_decisions.sql"),
    ),
    (
        20,
        "access_requests",
        include_str!("../../../migrations/sqlite/0020_access_requests.sql"),
    ),
    (
        21,
        "step_up",
        include_str!("../../../migrations/sqlite/0021_step_up.sql"),
    ),
    (
        22,
        "session_indexes",
        include_str!("../../../migrations/sqlite/0022_session_indexes.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundations",
        include_str!("../../../migrations/postgres/0001_foundations.sql"),
    ),
    (
        3,
        "audit_chain",
        include_str!("../../../migrations/postgres/0003_audit_chain.sql"),
    ),
    (
        4,
        "ssh_host_keys",
        include_str!("../../../migrations/postgres/0004_ssh_host_keys.sql"),
    ),
    (
        5,
        "ssh_certificates",
        include_str!("../../../migrations/postgres/0005_ssh_certificates.sql"),
    ),
    (
        6,
        "oidc_logins",
        include_str!("../../../migrations/postgres/0006_oidc_logins.sql"),
    ),
    (
        7,
        "vault_credentials",
        include_str!("../../../migrations/postgres/0007_vault_credentials.sql"),
    ),
    (
        8,
        "worker_phase",
        include_str!("../../../migrations/postgres/0008_worker_phase.sql"),
    ),
    (
        9,
        "session_client_seen",
        include_str!("../../../migrations/postgres/0009_session_client_seen.sql"),
    ),
    (
        10,
        "gateway_sessions",
        include_str!("../../../migrations/postgres/0010_gateway_sessions.sql"),
    ),
    (
        11,
        "catalog",
        include_str!("../../../migrations/postgres/0011_catalog.sql"),
    ),
    (
        12,
        "pve_tokens",
        include_str!("../../../migrations/postgres/0012_pve_tokens.sql"),
    ),
    (
        13,
        "local_users",
        include_str!("../../../migrations/postgres/0013_local_users.sql"),
    ),
    (
        14,
        "password_expiry",
        include_str!("../../../migrations/postgres/0014_password_expiry.sql"),
    ),
    (
        15,
        "service_accounts",
        include_str!("../../../migrations/postgres/0015_service_accounts.sql"),
    ),
    (
        16,
        "session_secrets",
        include_str!("../../../migrations/postgres/0016_session_secrets.sql"),
    ),
    (
        17,
        "console_sessions",
        include_str!("../../../migrations/postgres/0017_console_sessions.sql"),
    ),
    (
        18,
        "audit_verified",
        include_str!("../../../migrations/postgres/0018_audit_verified.sql"),
    ),
    (
        19,
        "session_decisions",
        include_str!("../../../migrations/postgres/0019_session_decisions.sql"),
    ),
    (
        20,
        "access_requests",
        include_str!("../../../migrations/postgres/0020_access_requests.sql"),
    ),
    (
        21,
        "step_up",
        include_str!("../../../migrations/postgres/0021_step_up.sql"),
    ),
    (
        22,
        "session_indexes",
        include_str!("../../../migrations/postgres/0022_session_indexes.sql"),
    ),
    // The recordings store's tables: its own migrator applies them (`recordings.rs`), and a
    // shared database's migration table must know them here too.
    recordings::POSTGRES,
];

/// The newest migration of the main store this binary knows for `dialect` (the recordings
/// store's, numbered from 1001, are not counted): the schema version a backup records.
pub(crate) fn known_schema(dialect: Dialect) -> i64 {
    let list = match dialect {
        Dialect::Sqlite => SQLITE_MIGRATIONS,
        Dialect::Postgres => POSTGRES_MIGRATIONS,
    };
    list.iter()
        .map(|(version, _, _)| *version)
        .filter(|v| *v < recordings::SQLITE.0)
        .max()
        .unwrap_or(0)
}

/// The newest migration of the main store applied to the database on `conn` (0: none).
pub(crate) async fn applied_schema(conn: &mut AnyConnection) -> Result<i64> {
    let row = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE version < $1")
        .bind(recordings::SQLITE.0)
        .fetch_one(&mut *conn)
        .await?;
    let version: Option<i64> = sqlx::Row::try_get(&row, "v")?;
    Ok(version.unwrap_or(0))
}

/// Refuses `sqlite::memory:`: a private in-memory database is lost when the controller stops
/// (and sqlx cannot even describe one again). A named shared one
/// (`sqlite://NAME?mode=memory&cache=shared`) is left to tests that ask for it by name.
fn refuse_private_memory(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path == ":memory:" {
        return Err(StoreError::BadUrl(format!(
            "{url} is a private in-memory database, lost when the controller stops; \
             use sqlite://PATH for a file (e.g. sqlite:///var/lib/portcullis/portcullis.db)"
        )));
    }
    Ok(())
}

/// Creates the SQLite database file, if missing, readable by its owner only (0600) before
/// SQLite opens it: SQLite gives the `-wal` and `-shm` files it creates beside it the
/// database file's mode, so all three are 0600 (SQLite alone would create them 0644). A file
/// from an older version that others can read is reported with the `chmod` that fixes it.
fn private_database_file(opts: &sqlx::sqlite::SqliteConnectOptions) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let url = opts.to_url_lossy();
    if url.query_pairs().any(|(k, v)| k == "mode" && v == "memory") {
        return Ok(());
    }
    let path = opts.get_filename();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the SQLite store can be read by other users: stop the controller and run \
                     `chmod 600` on it and on its -wal and -shm files"
                );
            }
            Ok(())
        }
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create the SQLite store {}: {e}",
            path.display()
        ))),
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`). A SQLite file is created if
    /// missing. Migrations are not applied here: call [`Store::migrate`].
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let url = url.expose_secret();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        let pool = match dialect {
            Dialect::Sqlite => {
                refuse_private_memory(url)?;
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::BadUrl(format!("not a SQLite URL: {e}")))?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                private_database_file(&opts)?;
                // The URL keeps neither pragma below: each pooled connection sets them again.
                let url = opts.to_url_lossy();
                // SQLite has one writer; one connection serialises transactions instead of
                // letting them fail with SQLITE_BUSY on upgrade.
                let any = AnyConnectOptions::from_url(&url)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                // Creating the file and the WAL needs the typed options once.
                drop(opts.connect().await?);
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(any)
                    .await?;
                checkpoint::spawn(opts, pool.clone());
                pool
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect(url)
                    .await?
            }
        };
        Ok(Store { pool, dialect })
    }

    /// Applies pending migrations of this backend (safe to run from several controllers at
    /// once: sqlx takes a lock on PostgreSQL).
    pub async fn migrate(&self) -> Result<()> {
        let list = match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        let known = list
            .iter()
            .map(|(version, _, _)| *version)
            .max()
            .unwrap_or(0);
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| migrate_error(e, known))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin().await?)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock first: a
    /// transaction that reads first is pinned to that snapshot, and its later write fails
    /// at once with "database is locked" (the busy timeout does not apply) when another
    /// process (an offline `controller keys` or `backup` beside a running controller)
    /// committed in between. Taking the lock first waits out the busy timeout instead.
    pub async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>> {
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Sqlite {
            audit::take_sqlite_write_lock(&mut tx).await?;
        }
        Ok(tx)
    }

    /// A connection for reads outside a transaction.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    /// Serialises a critical section across controllers for the rest of the transaction
    /// (PostgreSQL advisory lock; SQLite transactions are already serialised).
    pub async fn lock(&self, tx: &mut AnyConnection, name: &str) -> Result<()> {
        if self.dialect == Dialect::Postgres {
            let digest = portcullis_crypto::digest::sha256(name.as_bytes());
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&digest[..8]);
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(i64::from_be_bytes(eight))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Takes the store-wide lease for a job that must run on one controller at a time
    /// (sweeps, retries, shippers). `Ok(None)`: another controller holds it; skip this round.
    /// The lease lasts as long as the returned guard. On SQLite (one controller) it is always
    /// granted without holding a connection.
    pub async fn try_lease(&self, job: &str) -> Result<Option<Lease>> {
        if self.dialect == Dialect::Sqlite {
            return Ok(Some(Lease { _tx: None }));
        }
        let mut tx = self.pool.begin().await?;
        let digest = portcullis_crypto::digest::sha256(job.as_bytes());
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&digest[..8]);
        let row = sqlx::query("SELECT pg_try_advisory_xact_lock($1) AS got")
            .bind(i64::from_be_bytes(eight))
            .fetch_one(&mut *tx)
            .await?;
        let got: bool = sqlx::Row::try_get(&row, "got")?;
        Ok(got.then_some(Lease { _tx: Some(tx) }))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The connection of an audited transaction: store functions that change state take one,
/// and only `audit::AuditedTx::write` makes one, so no state change can bypass the audit
/// (`writes_tests.rs` holds every writing function here to it).
pub(crate) struct Write<'c> {
    conn: &'c mut AnyConnection,
}

impl<'c> Write<'c> {
    /// Only for `audit::tx`: the transaction that will commit the change with its event.
    pub(crate) fn audited(conn: &'c mut AnyConnection) -> Write<'c> {
        Write { conn }
    }

    /// The connection underneath, inside a store function.
    pub(crate) fn conn(self) -> &'c mut AnyConnection {
        self.conn
    }
}

/// A held job lease; released when dropped.
pub struct Lease {
    _tx: Option<Transaction<'static, sqlx::Any>>,
}

/// Rows that stay valid until they expire or are revoked (API tokens, SSH certificates):
/// which table, which column names their owner, which holds their expiry, and which names
/// each row in what a revocation returns.
pub(crate) struct Revocable {
    pub table: &'static str,
    pub owner: &'static str,
    pub expires: &'static str,
    pub returning: &'static str,
}

/// Revokes at `now` every row of `owner_id` that is neither revoked nor expired; returns
/// their `returning` column.
pub(crate) async fn revoke_live(
    w: Write<'_>,
    rows: &Revocable,
    owner_id: &str,
    now: i64,
) -> Result<Vec<String>> {
    let Revocable {
        table,
        owner,
        expires,
        returning,
    } = rows;
    let done = sqlx::query(&format!(
        "UPDATE {table} SET revoked_at = $2 WHERE {owner} = $1 AND revoked_at IS NULL \
         AND {expires} > $2 RETURNING {returning}"
    ))
    .bind(owner_id)
    .bind(now)
    .fetch_all(w.conn())
    .await?;
    done.iter()
        .map(|row| Ok(sqlx::Row::try_get::<String, _>(row, *returning)?))
        .collect()
}

/// Encodes a list as the JSON text the store keeps.
pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Decodes a JSON list column.
pub(crate) fn from_json_list(text: &str, column: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Reads a text column that holds one of a closed set (a state, a reason). A value this
/// version does not know is corruption, reported with the row and column.
fn closed_set<T>(row: &sqlx::any::AnyRow, table: &str, column: &str) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    use sqlx::Row as _;
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| {
        text.parse().map_err(|e| {
            let id: String = row.try_get("id").unwrap_or_default();
            StoreError::Corrupt(format!(
                "{table}.{column} of {id:?}: {e}; the row was written by another version or by \
                 hand: correct it, or run the version that wrote it"
            ))
        })
    })
    .transpose()
}

/// [`closed_set`] for a column that is never NULL.
fn required<T>(row: &sqlx::any::AnyRow, table: &str, column: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    closed_set(row, table, column)?
        .ok_or_else(|| StoreError::Corrupt(format!("{table}.{column} is NULL")))
}
