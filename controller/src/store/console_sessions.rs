//! Web console sessions (issue 24; docs/console.md): the hash of the browser's cookie, the
//! API token its login issued (never sent to the browser) and the CSRF token of its forms.
//! Lookups go through the token, so revoking it (logout, `users revoke`) ends the session.

use sqlx::{AnyConnection, Row as _};

use super::users::UserRecord;
use super::{Result, Write};

/// A new console session's row.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct NewConsoleSession {
    pub id_hash: Vec<u8>,
    pub token_id: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub idle_timeout: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for NewConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewConsoleSession")
            .field("token_id", &self.token_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A live console session: its user (with the login's attributes), token and CSRF token.
#[derive(Clone)]
pub(crate) struct LiveConsoleSession {
    pub user: UserRecord,
    pub token_id: String,
    pub token_expires_at: i64,
    pub csrf_token: String,
}

/// Stores a console session (in the transaction that commits its login).
pub(crate) async fn insert(w: Write<'_>, row: &NewConsoleSession) -> Result<()> {
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, token_id, user_id, csrf_token, created_at, \
         last_seen_at, idle_timeout, expires_at) VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
    )
    .bind(&row.id_hash)
    .bind(&row.token_id)
    .bind(&row.user_id)
    .bind(&row.csrf_token)
    .bind(row.created_at)
    .bind(row.idle_timeout)
    .bind(row.expires_at)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// The live session behind a cookie's hash at `now`: neither idle too long nor past its
/// absolute end, and its token neither revoked nor expired. Looked up by the hash (an index
/// probe, not a comparison of secrets).
pub(crate) async fn authenticate(
    conn: &mut AnyConnection,
    id_hash: &[u8],
    now: i64,
) -> Result<Option<LiveConsoleSession>> {
    let row = sqlx::query(
        "SELECT token_id, csrf_token FROM console_sessions WHERE id_hash = $1 \
         AND expires_at > $2 AND last_seen_at + idle_timeout > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let token_id: String = row.try_get("token_id")?;
    let csrf_token: String = row.try_get("csrf_token")?;
    let Some((user, token_id, token_expires_at)) =
        super::tokens::authenticate_id(conn, &token_id, now).await?
    else {
        return Ok(None);
    };
    Ok(Some(LiveConsoleSession {
        user,
        token_id,
        token_expires_at,
        csrf_token,
    }))
}

/// Notes a request of the session at `now` (what its idle timeout counts from).
pub(crate) async fn touch(conn: &mut AnyConnection, id_hash: &[u8], now: i64) -> Result<()> {
    sqlx::query("UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1")
        .bind(id_hash)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the sessions that are over at `now` (idle too long or past their end), in a
/// login's transaction: the table holds only sessions that may still be used.
pub(crate) async fn delete_over(w: Write<'_>, now: i64) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at + idle_timeout <= $1",
    )
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected())
}

/// Deletes the sessions that are over at `now`, for the periodic sweep (`sessions::sweeper`):
/// housekeeping, unaudited, since such a row can no longer be used ([`authenticate`] refuses
/// it) and its login and logout are audited.
pub(crate) async fn prune(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at + idle_timeout <= $1",
    )
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes the console session of a token (logout); returns whether there was one.
pub(crate) async fn delete_of_token(w: Write<'_>, token_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE token_id = $1")
        .bind(token_id)
        .execute(w.conn())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes every console session of a user (`users revoke`); returns how many there were.
pub(crate) async fn delete_of_user(w: Write<'_>, user_id: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(w.conn())
        .await?;
    Ok(done.rows_affected())
}
