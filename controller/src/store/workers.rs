//! Workers enrolled with the controller.

use portcullis_proto::link::WorkerPhase;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Result;
use super::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkerRecord {
    pub id: String,
    pub name: String,
    pub proxy_addr: String,
    pub key_fingerprint: String,
    pub state: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    pub cert_expires_at: i64,
    /// Since when the worker has been draining (it said so on its link).
    pub draining_since: Option<i64>,
    /// When the worker said it stopped (drained, about to exit).
    pub stopped_at: Option<i64>,
}

pub(crate) const ACTIVE: &str = "active";

const COLUMNS: &str =
    "id, name, proxy_addr, key_fingerprint, state, created_at, last_seen_at, cert_expires_at, \
     draining_since, stopped_at";

fn from_row(row: &AnyRow) -> Result<WorkerRecord> {
    Ok(WorkerRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        proxy_addr: row.try_get("proxy_addr")?,
        key_fingerprint: row.try_get("key_fingerprint")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        cert_expires_at: row.try_get("cert_expires_at")?,
        draining_since: row.try_get("draining_since")?,
        stopped_at: row.try_get("stopped_at")?,
    })
}

pub(crate) async fn insert(write: Write<'_>, w: &WorkerRecord) -> Result<()> {
    let conn = write.conn();
    sqlx::query(&format!(
        "INSERT INTO workers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&w.id)
    .bind(&w.name)
    .bind(&w.proxy_addr)
    .bind(&w.key_fingerprint)
    .bind(&w.state)
    .bind(w.created_at)
    .bind(w.last_seen_at)
    .bind(w.cert_expires_at)
    .bind(w.draining_since)
    .bind(w.stopped_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn find(
    conn: &mut AnyConnection,
    id_or_name: &str,
) -> Result<Option<WorkerRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM workers WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1"
    ))
    .bind(id_or_name)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(crate) async fn list(conn: &mut AnyConnection) -> Result<Vec<WorkerRecord>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM workers ORDER BY name"))
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Workers that may carry new sessions: active, heard from since `seen_after`, and neither
/// draining nor stopped.
pub(crate) async fn live(conn: &mut AnyConnection, seen_after: i64) -> Result<Vec<WorkerRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM workers WHERE state = 'active' AND last_seen_at >= $1 \
         AND draining_since IS NULL AND stopped_at IS NULL ORDER BY last_seen_at DESC"
    ))
    .bind(seen_after)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// A worker was heard at `now`, saying what it is doing (`phase`).
pub(crate) async fn touch(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
    proxy_addr: &str,
    phase: WorkerPhase,
) -> Result<()> {
    let (draining, stopped) = match phase {
        WorkerPhase::Serving => (None, None),
        WorkerPhase::Draining => (Some(now), None),
        WorkerPhase::Stopped => (Some(now), Some(now)),
    };
    sqlx::query(
        "UPDATE workers SET last_seen_at = $2, proxy_addr = $3, \
         draining_since = CASE WHEN $4 IS NULL THEN NULL ELSE COALESCE(draining_since, $4) END, \
         stopped_at = $5 WHERE id = $1 AND state = 'active'",
    )
    .bind(id)
    .bind(now)
    .bind(proxy_addr)
    .bind(draining)
    .bind(stopped)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_cert_expiry(w: Write<'_>, id: &str, expires_at: i64) -> Result<()> {
    let conn = w.conn();
    sqlx::query("UPDATE workers SET cert_expires_at = $2 WHERE id = $1")
        .bind(id)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a worker deleted (its certificate is no longer accepted); true if it was active.
pub(crate) async fn mark_deleted(w: Write<'_>, id: &str) -> Result<bool> {
    let conn = w.conn();
    let done =
        sqlx::query("UPDATE workers SET state = 'deleted' WHERE id = $1 AND state = 'active'")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}
