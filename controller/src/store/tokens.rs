//! API tokens: only the SHA-256 of each bearer secret is stored.

use sqlx::{AnyConnection, Row as _};

use super::users::UserRecord;
use super::Result;

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub user_id: String,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert(conn: &mut AnyConnection, t: &TokenRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.id)
    .bind(&t.user_id)
    .bind(&t.token_hash)
    .bind(t.created_at)
    .bind(t.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user and token expiry behind a token hash, if the token is valid at `now`.
///
/// The lookup is by the hash (an index probe, not a comparison of secrets); the caller holds
/// only the hash of what the client sent.
pub async fn authenticate(
    conn: &mut AnyConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<(UserRecord, String, i64)>> {
    let row = sqlx::query(
        "SELECT t.id AS token_id, t.expires_at AS token_expires_at, u.id, u.issuer, u.subject, \
         u.username, u.email, u.name, u.groups, u.amr, u.acr, u.auth_time, u.updated_at \
         FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let user = super::users::from_row(&row)?;
            Ok(Some((
                user,
                row.try_get("token_id")?,
                row.try_get("token_expires_at")?,
            )))
        }
    }
}

/// Revokes one token; returns whether it was live.
pub async fn revoke(conn: &mut AnyConnection, token_id: &str, now: i64) -> Result<bool> {
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(token_id)
            .bind(now)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}
