//! The keyset table: every key the controllers use, its private half sealed under the
//! master key.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Result;
use super::Write;

#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub purpose: String,
    pub algorithm: String,
    pub state: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub certificate: Option<String>,
}

const COLUMNS: &str =
    "id, purpose, algorithm, state, created_at, retired_at, public_key, sealed_private, certificate";

fn from_row(row: &AnyRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.try_get("id")?,
        purpose: row.try_get("purpose")?,
        algorithm: row.try_get("algorithm")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        retired_at: row.try_get("retired_at")?,
        public_key: row.try_get("public_key")?,
        sealed_private: row.try_get("sealed_private")?,
        certificate: row.try_get("certificate")?,
    })
}

pub(crate) async fn insert(w: Write<'_>, k: &KeyRecord) -> Result<()> {
    let conn = w.conn();
    sqlx::query(&format!(
        "INSERT INTO keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&k.id)
    .bind(&k.purpose)
    .bind(&k.algorithm)
    .bind(&k.state)
    .bind(k.created_at)
    .bind(k.retired_at)
    .bind(&k.public_key)
    .bind(&k.sealed_private)
    .bind(&k.certificate)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keys of a purpose that are not retired, newest first.
pub(crate) async fn usable(conn: &mut AnyConnection, purpose: &str) -> Result<Vec<KeyRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM keys WHERE purpose = $1 AND state <> 'retired' ORDER BY created_at DESC, id"
    ))
    .bind(purpose)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

pub(crate) async fn list(conn: &mut AnyConnection) -> Result<Vec<KeyRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM keys ORDER BY purpose, created_at DESC"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Demotes the active key(s) of a purpose to `previous`.
pub(crate) async fn demote_active(w: Write<'_>, purpose: &str) -> Result<()> {
    let conn = w.conn();
    sqlx::query("UPDATE keys SET state = 'previous' WHERE purpose = $1 AND state = 'active'")
        .bind(purpose)
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes the `next` key `id` active.
pub(crate) async fn activate_next(w: Write<'_>, id: &str) -> Result<()> {
    let conn = w.conn();
    sqlx::query("UPDATE keys SET state = 'active' WHERE id = $1 AND state = 'next'")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Retires a previous key; true if it was `previous`.
pub(crate) async fn retire(w: Write<'_>, id: &str, now: i64) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE keys SET state = 'retired', retired_at = $2 WHERE id = $1 AND state = 'previous'",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
