//! OIDC logins between their start and their redemption. Every step is a conditional update,
//! so a state, a callback or a redemption code works once even when several controllers race.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Result;
use super::Write;

pub(crate) const LOOPBACK: &str = "loopback";
pub(crate) const CODE: &str = "code";
pub(crate) const DEVICE: &str = "device";
/// A login of the web console: finished by the callback in the browser that started it
/// (bound by a cookie, `console::oidc`), never redeemed by a CLI.
pub(crate) const CONSOLE: &str = "console";

/// Wrong redemption codes a login tolerates before it is burnt.
pub(crate) const MAX_FAILED_ATTEMPTS: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingLogin {
    pub id: String,
    pub mode: String,
    pub state_hash: Option<Vec<u8>>,
    /// Sealed under the master key: the nonce and PKCE verifier, or the device code.
    pub sealed: Vec<u8>,
    pub cli_secret_hash: Vec<u8>,
    pub redirect_port: Option<i64>,
    pub source: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub callback_at: Option<i64>,
    pub identity: Option<String>,
    pub code_hash: Option<Vec<u8>>,
    pub failed_attempts: i64,
    pub error: Option<String>,
    pub redeemed_at: Option<i64>,
}

const COLUMNS: &str = "id, mode, state_hash, sealed, cli_secret_hash, redirect_port, source, \
    created_at, expires_at, callback_at, identity, code_hash, failed_attempts, error, redeemed_at";

fn from_row(row: &AnyRow) -> Result<PendingLogin> {
    Ok(PendingLogin {
        id: row.try_get("id")?,
        mode: row.try_get("mode")?,
        state_hash: row.try_get("state_hash")?,
        sealed: row.try_get("sealed")?,
        cli_secret_hash: row.try_get("cli_secret_hash")?,
        redirect_port: row.try_get("redirect_port")?,
        source: row.try_get("source")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        callback_at: row.try_get("callback_at")?,
        identity: row.try_get("identity")?,
        code_hash: row.try_get("code_hash")?,
        failed_attempts: row.try_get("failed_attempts")?,
        error: row.try_get("error")?,
        redeemed_at: row.try_get("redeemed_at")?,
    })
}

pub(crate) async fn insert(w: Write<'_>, l: &PendingLogin) -> Result<()> {
    let conn = w.conn();
    sqlx::query(&format!(
        "INSERT INTO oidc_logins ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&l.id)
    .bind(&l.mode)
    .bind(&l.state_hash)
    .bind(&l.sealed)
    .bind(&l.cli_secret_hash)
    .bind(l.redirect_port)
    .bind(&l.source)
    .bind(l.created_at)
    .bind(l.expires_at)
    .bind(l.callback_at)
    .bind(&l.identity)
    .bind(&l.code_hash)
    .bind(l.failed_attempts)
    .bind(&l.error)
    .bind(l.redeemed_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<PendingLogin>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM oidc_logins WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(crate) async fn by_state(
    conn: &mut AnyConnection,
    state_hash: &[u8],
) -> Result<Option<PendingLogin>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM oidc_logins WHERE state_hash = $1"
    ))
    .bind(state_hash)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Marks the login's state as used; false if it was already used or has expired.
pub(crate) async fn use_state(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE oidc_logins SET callback_at = $2 \
         WHERE id = $1 AND callback_at IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the verified identity and the hash of the one-time code that redeems it.
pub(crate) async fn complete(
    conn: &mut AnyConnection,
    id: &str,
    identity: &str,
    code_hash: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE oidc_logins SET identity = $2, code_hash = $3 \
         WHERE id = $1 AND identity IS NULL AND error IS NULL",
    )
    .bind(id)
    .bind(identity)
    .bind(code_hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a login with an error the CLI is shown; it can no longer be redeemed.
pub(crate) async fn fail(w: Write<'_>, id: &str, error: &str) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "UPDATE oidc_logins SET error = $2, identity = NULL WHERE id = $1 AND error IS NULL",
    )
    .bind(id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts a wrong code or secret; returns the new count.
pub(crate) async fn count_failure(conn: &mut AnyConnection, id: &str) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE oidc_logins SET failed_attempts = failed_attempts + 1 WHERE id = $1 \
         RETURNING failed_attempts",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    match row {
        Some(row) => Ok(row.try_get("failed_attempts")?),
        None => Ok(0),
    }
}

/// Marks the login redeemed; false if it already was (or is failed or expired).
pub(crate) async fn redeem(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE oidc_logins SET redeemed_at = $2, identity = NULL \
         WHERE id = $1 AND redeemed_at IS NULL AND error IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets logins that expired more than an hour ago.
pub(crate) async fn prune(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM oidc_logins WHERE expires_at < $1")
        .bind(now - 3600)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
