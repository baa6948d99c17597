//! Credentials minted from Vault per session: the intent written before Vault is called, the
//! token accessor and lease ids once minted, and the revocation that follows the session's
//! end until Vault confirms it. Identifiers only: never a token or a secret.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Write;
use super::{from_json_list, to_json_list, Result};

pub(crate) const MINTING: &str = "minting";
pub(crate) const REVOKING: &str = "revoking";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialRecord {
    pub id: String,
    pub session_id: String,
    pub state: String,
    pub token_accessor: Option<String>,
    pub lease_ids: Vec<String>,
    pub created_at: i64,
    pub revoke_requested_at: Option<i64>,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub revoked_at: Option<i64>,
    pub outcome: Option<String>,
}

const COLUMNS: &str = "id, session_id, state, token_accessor, lease_ids, created_at, \
    revoke_requested_at, attempts, next_attempt_at, last_error, revoked_at, outcome";

fn from_row(row: &AnyRow) -> Result<CredentialRecord> {
    Ok(CredentialRecord {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        state: row.try_get("state")?,
        token_accessor: row.try_get("token_accessor")?,
        lease_ids: from_json_list(
            &row.try_get::<String, _>("lease_ids")?,
            "vault_credentials.lease_ids",
        )?,
        created_at: row.try_get("created_at")?,
        revoke_requested_at: row.try_get("revoke_requested_at")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        revoked_at: row.try_get("revoked_at")?,
        outcome: row.try_get("outcome")?,
    })
}

/// Records the intent to mint for a session (state `minting`), before Vault is called.
pub(crate) async fn insert_intent(
    w: Write<'_>,
    id: &str,
    session_id: &str,
    now: i64,
) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "INSERT INTO vault_credentials (id, session_id, state, token_accessor, lease_ids, created_at, attempts) \
         VALUES ($1, $2, 'minting', NULL, '[]', $3, 0)",
    )
    .bind(id)
    .bind(session_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<CredentialRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM vault_credentials WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores the token's accessor as soon as Vault returned it. Returns the row's state after
/// the update (`revoking` when the session ended meanwhile: revoke at once).
pub(crate) async fn set_accessor(
    conn: &mut AnyConnection,
    id: &str,
    accessor: &str,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "UPDATE vault_credentials SET token_accessor = $2 WHERE id = $1 RETURNING state",
    )
    .bind(id)
    .bind(accessor)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get::<String, _>("state").map_err(Into::into))
        .transpose()
}

/// Marks a mint finished with its lease ids; false if the row is no longer `minting`.
pub(crate) async fn set_minted(w: Write<'_>, id: &str, lease_ids: &[String]) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE vault_credentials SET state = 'minted', lease_ids = $2 WHERE id = $1 AND state = 'minting'",
    )
    .bind(id)
    .bind(to_json_list(lease_ids))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records lease ids read so far (so that they are named in the revocation's audit event).
pub(crate) async fn set_leases(
    conn: &mut AnyConnection,
    id: &str,
    lease_ids: &[String],
) -> Result<()> {
    sqlx::query("UPDATE vault_credentials SET lease_ids = $2 WHERE id = $1")
        .bind(id)
        .bind(to_json_list(lease_ids))
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues the revocation of a session's credentials (in the transaction that ends it).
/// Returns the ids queued.
pub(crate) async fn request_revocation(
    conn: &mut AnyConnection,
    session_id: &str,
    now: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "UPDATE vault_credentials SET state = 'revoking', revoke_requested_at = $2, next_attempt_at = $2 \
         WHERE session_id = $1 AND state IN ('minting', 'minted') RETURNING id",
    )
    .bind(session_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(Into::into))
        .collect()
}

/// Revocations due for an attempt.
pub(crate) async fn due_revocations(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Vec<CredentialRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM vault_credentials WHERE state = 'revoking' \
         AND (next_attempt_at IS NULL OR next_attempt_at <= $1) ORDER BY next_attempt_at, id"
    ))
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Mints started before `before` and never finished (their controller died or hung).
pub(crate) async fn abandoned_mints(
    conn: &mut AnyConnection,
    before: i64,
) -> Result<Vec<CredentialRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM vault_credentials WHERE state = 'minting' AND created_at < $1 ORDER BY created_at, id"
    ))
    .bind(before)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Marks a revocation confirmed; false if another controller did so first.
pub(crate) async fn set_revoked(w: Write<'_>, id: &str, outcome: &str, now: i64) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE vault_credentials SET state = 'revoked', revoked_at = $2, outcome = $3, last_error = NULL \
         WHERE id = $1 AND state = 'revoking'",
    )
    .bind(id)
    .bind(now)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed attempt and when to try again.
pub(crate) async fn set_attempt_failed(
    conn: &mut AnyConnection,
    id: &str,
    error: &str,
    next_attempt_at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE vault_credentials SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 \
         WHERE id = $1 AND state = 'revoking'",
    )
    .bind(id)
    .bind(error)
    .bind(next_attempt_at)
    .execute(conn)
    .await?;
    Ok(())
}
