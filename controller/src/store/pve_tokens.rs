//! Sessions' Proxmox API tokens (issue 20): the intent written with the session before
//! Proxmox is called, the sealed secret once the token is made, and the deletion that follows
//! the session's end until Proxmox confirms the token and its ACL entries gone. The secret is
//! only ever stored sealed (AES-256-GCM under the master key) and is wiped at the end.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Write;
use super::{from_json_list, to_json_list, Result, StoreError};

/// Where a session's token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenState {
    /// Committed with the session; Proxmox not asked yet (or the answer not recorded).
    Intent,
    /// Created, its ACLs granted, its secret sealed into the row.
    Live,
    /// The session ended: the token is to be deleted and its ACL entries checked gone.
    Revoking,
    /// Proxmox confirmed: no token, no ACL entry names it.
    Gone,
}

impl TokenState {
    fn parse(text: &str) -> Result<TokenState> {
        match text {
            "intent" => Ok(TokenState::Intent),
            "live" => Ok(TokenState::Live),
            "revoking" => Ok(TokenState::Revoking),
            "gone" => Ok(TokenState::Gone),
            other => Err(StoreError::Corrupt(format!(
                "pve_tokens.state: unknown state {other:?}"
            ))),
        }
    }
}

/// A session's token. `secret` is sealed; `Debug` shows only whether there is one.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenRecord {
    pub session_id: String,
    /// The `[[catalog.proxmox]]` name.
    pub cluster: String,
    /// `USER@REALM`.
    pub userid: String,
    /// The part after `!` (`portcullis_proto::pve::token_name_for`).
    pub token_name: String,
    pub state: TokenState,
    pub secret: Option<Vec<u8>>,
    pub roles: Vec<String>,
    pub paths: Vec<String>,
    /// Unix seconds: the token's `expire`.
    pub expires_at: i64,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TokenRecord {
    /// `USER@REALM!TOKENNAME`.
    pub(crate) fn token_id(&self) -> String {
        format!("{}!{}", self.userid, self.token_name)
    }
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("session_id", &self.session_id)
            .field("cluster", &self.cluster)
            .field("token_id", &self.token_id())
            .field("state", &self.state)
            .field("secret", &self.secret.as_ref().map(|_| "<sealed>"))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "session_id, cluster, userid, token_name, state, secret, roles, paths, \
    expires_at, attempts, next_attempt_at, last_error, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        session_id: row.try_get("session_id")?,
        cluster: row.try_get("cluster")?,
        userid: row.try_get("userid")?,
        token_name: row.try_get("token_name")?,
        state: TokenState::parse(&row.try_get::<String, _>("state")?)?,
        secret: row.try_get("secret")?,
        roles: from_json_list(&row.try_get::<String, _>("roles")?, "pve_tokens.roles")?,
        paths: from_json_list(&row.try_get::<String, _>("paths")?, "pve_tokens.paths")?,
        expires_at: row.try_get("expires_at")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Records a session's token intent (state `intent`, no secret), before Proxmox is called.
pub(crate) async fn insert_intent(w: Write<'_>, t: &TokenRecord) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "INSERT INTO pve_tokens (session_id, cluster, userid, token_name, state, secret, roles, \
         paths, expires_at, attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'intent', NULL, $5, $6, $7, 0, $8, $8)",
    )
    .bind(&t.session_id)
    .bind(&t.cluster)
    .bind(&t.userid)
    .bind(&t.token_name)
    .bind(to_json_list(&t.roles))
    .bind(to_json_list(&t.paths))
    .bind(t.expires_at)
    .bind(t.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut AnyConnection, session_id: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM pve_tokens WHERE session_id = $1"
    ))
    .bind(session_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores the sealed secret of a token made and granted: `intent` → `live`. False if the
/// row is no longer `intent` (the session ended meanwhile; its deletion is queued).
pub(crate) async fn set_live(
    w: Write<'_>,
    session_id: &str,
    sealed: &[u8],
    now: i64,
) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE pve_tokens SET state = 'live', secret = $2, updated_at = $3 \
         WHERE session_id = $1 AND state = 'intent'",
    )
    .bind(session_id)
    .bind(sealed)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Queues the deletion of a session's token and wipes its secret (in the transaction that
/// ends the session); the job attempts it from `first_attempt_at` (the ender attempts it at
/// once). Returns the row queued, if the session had a token not yet queued.
pub(crate) async fn request_revocation(
    conn: &mut AnyConnection,
    session_id: &str,
    now: i64,
    first_attempt_at: i64,
) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(&format!(
        "UPDATE pve_tokens SET state = 'revoking', secret = NULL, next_attempt_at = $3, updated_at = $2 \
         WHERE session_id = $1 AND state IN ('intent', 'live') RETURNING {COLUMNS}"
    ))
    .bind(session_id)
    .bind(now)
    .bind(first_attempt_at)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deletions due for an attempt.
pub(crate) async fn due_revocations(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM pve_tokens WHERE state = 'revoking' \
         AND (next_attempt_at IS NULL OR next_attempt_at <= $1) ORDER BY next_attempt_at, session_id"
    ))
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Intents written before `before` and never finished (their controller died or hung).
pub(crate) async fn abandoned_intents(
    conn: &mut AnyConnection,
    before: i64,
) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM pve_tokens WHERE state = 'intent' AND created_at < $1 \
         ORDER BY created_at, session_id"
    ))
    .bind(before)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Marks a deletion confirmed; false if another controller did so first.
pub(crate) async fn set_gone(w: Write<'_>, session_id: &str, now: i64) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE pve_tokens SET state = 'gone', secret = NULL, last_error = NULL, updated_at = $2 \
         WHERE session_id = $1 AND state = 'revoking'",
    )
    .bind(session_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a failed deletion attempt and when to try again.
pub(crate) async fn set_attempt_failed(
    conn: &mut AnyConnection,
    session_id: &str,
    error: &str,
    next_attempt_at: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE pve_tokens SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, \
         updated_at = $4 WHERE session_id = $1 AND state = 'revoking'",
    )
    .bind(session_id)
    .bind(error)
    .bind(next_attempt_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues a deletion again after a token was made for a session that had already ended (its
/// first deletion may have run before the token existed).
pub(crate) async fn requeue(conn: &mut AnyConnection, session_id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE pve_tokens SET state = 'revoking', secret = NULL, next_attempt_at = $2, updated_at = $2 \
         WHERE session_id = $1 AND state IN ('revoking', 'gone')",
    )
    .bind(session_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
