//! Worker join tokens: single use, expiring, stored hashed.

use super::Write;

use super::Result;

#[derive(Debug, Clone)]
pub(crate) struct JoinTokenRecord {
    pub id: String,
    pub token_hash: Vec<u8>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub(crate) async fn insert(w: Write<'_>, t: &JoinTokenRecord) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "INSERT INTO join_tokens (id, token_hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.id)
    .bind(&t.token_hash)
    .bind(&t.created_by)
    .bind(t.created_at)
    .bind(t.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the token with this hash used by `worker_id`, if it is unused and unexpired.
/// Returns false when it is unknown, used or expired: a token works exactly once.
pub(crate) async fn consume(
    w: Write<'_>,
    token_hash: &[u8],
    worker_id: &str,
    now: i64,
) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE join_tokens SET used_at = $2, worker_id = $3 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .bind(worker_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
