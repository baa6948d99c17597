//! API tokens: only the SHA-256 of each bearer secret is stored.

use sqlx::{AnyConnection, Row as _};

use super::users::UserRecord;
use super::Write;
use super::{from_json_list, revoke_live, to_json_list, Result, Revocable};

#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub id: String,
    pub user_id: String,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    /// The identity attributes of the login that issued the token: every decision made with
    /// the token uses these, not those of the user's latest login elsewhere.
    pub login: Option<LoginAttributes>,
}

/// Groups, amr, acr and auth_time as one login asserted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginAttributes {
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
}

impl LoginAttributes {
    pub(crate) fn of(user: &UserRecord) -> LoginAttributes {
        LoginAttributes {
            groups: user.groups.clone(),
            amr: user.amr.clone(),
            acr: user.acr.clone(),
            auth_time: user.auth_time,
        }
    }
}

pub(crate) async fn insert(w: Write<'_>, t: &TokenRecord) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, token_hash, created_at, expires_at, groups, amr, \
         acr, auth_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&t.id)
    .bind(&t.user_id)
    .bind(&t.token_hash)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.login.as_ref().map(|l| to_json_list(&l.groups)))
    .bind(t.login.as_ref().map(|l| to_json_list(&l.amr)))
    .bind(t.login.as_ref().and_then(|l| l.acr.clone()))
    .bind(t.login.as_ref().and_then(|l| l.auth_time))
    .execute(conn)
    .await?;
    Ok(())
}

/// The user and token expiry behind a token hash, if the token is valid at `now`. The user's
/// groups, amr, acr and auth_time are those of the login that issued the token. A service
/// account's token is valid only while the key that obtained it is (`service_accounts.rs`),
/// even if its revocation missed the token's row.
///
/// The lookup is by the hash (an index probe, not a comparison of secrets); the caller holds
/// only the hash of what the client sent.
pub(crate) async fn authenticate(
    conn: &mut AnyConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<(UserRecord, String, i64)>> {
    let row = sqlx::query(&format!("{VALID_TOKEN} AND t.token_hash = $1"))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(token_user).transpose()
}

/// As [`authenticate`], by the token's id (a console session's token: `console_sessions`).
pub(crate) async fn authenticate_id(
    conn: &mut AnyConnection,
    token_id: &str,
    now: i64,
) -> Result<Option<(UserRecord, String, i64)>> {
    let row = sqlx::query(&format!("{VALID_TOKEN} AND t.id = $1"))
        .bind(token_id)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(token_user).transpose()
}

/// The tokens valid at `$2`, with their user; the caller adds which one (`$1`).
const VALID_TOKEN: &str = "SELECT t.id AS token_id, t.expires_at AS token_expires_at, u.id, \
     u.issuer, u.subject, u.username, u.email, u.name, u.groups, u.amr, u.acr, u.auth_time, \
     u.updated_at, t.groups AS t_groups, t.amr AS t_amr, t.acr AS t_acr, \
     t.auth_time AS t_auth_time \
     FROM api_tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.revoked_at IS NULL AND t.expires_at > $2 \
     AND NOT EXISTS (SELECT 1 FROM service_tokens s \
     JOIN service_accounts a ON a.user_id = s.account WHERE s.token_id = t.id \
     AND (a.key_revoked_at IS NOT NULL OR a.key_fingerprint <> s.key_fingerprint))";

fn token_user(row: &sqlx::any::AnyRow) -> Result<(UserRecord, String, i64)> {
    let mut user = super::users::from_row(row)?;
    if let Some(groups) = row.try_get::<Option<String>, _>("t_groups")? {
        user.groups = from_json_list(&groups, "api_tokens.groups")?;
        user.amr = from_json_list(
            &row.try_get::<Option<String>, _>("t_amr")?
                .unwrap_or_default(),
            "api_tokens.amr",
        )?;
        user.acr = row.try_get("t_acr")?;
        user.auth_time = row.try_get("t_auth_time")?;
    }
    Ok((
        user,
        row.try_get("token_id")?,
        row.try_get("token_expires_at")?,
    ))
}

/// Revokes one token; returns whether it was live.
pub(crate) async fn revoke(w: Write<'_>, token_id: &str, now: i64) -> Result<bool> {
    let conn = w.conn();
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(token_id)
            .bind(now)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live token of a user; returns their ids.
pub(crate) async fn revoke_user(w: Write<'_>, user_id: &str, now: i64) -> Result<Vec<String>> {
    let tokens = Revocable {
        table: "api_tokens",
        owner: "user_id",
        expires: "expires_at",
        returning: "id",
    };
    revoke_live(w, &tokens, user_id, now).await
}
