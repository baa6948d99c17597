//! Service accounts (issue 21): for a `users` row of issuer `service:`, its Ed25519 public key
//! and whether the key is revoked; the replay store of accepted assertions (their `jti`); and
//! which key obtained each of the account's tokens, so that revoking the key revokes exactly
//! them (`tokens::authenticate` also refuses a token whose key is revoked).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::users::{self, UserRecord};
use super::Result;
use super::Write;

/// A service account's key. The public key is not secret; the row holds nothing that is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceAccountRecord {
    /// `users.id`.
    pub user_id: String,
    /// The OpenSSH one-line public key as registered.
    pub public_key: String,
    /// `portcullis_proto::keys::ed25519_fingerprint` of the key.
    pub key_fingerprint: String,
    /// Unix seconds; `None`: the key is valid.
    pub key_revoked_at: Option<i64>,
    pub created_at: i64,
}

/// A service account: its `users` row and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceAccount {
    pub user: UserRecord,
    pub account: ServiceAccountRecord,
}

const COLUMNS: &str = "a.user_id, a.public_key, a.key_fingerprint, a.key_revoked_at, \
    a.created_at";

const USER_COLUMNS: &str = "u.id, u.issuer, u.subject, u.username, u.email, u.name, u.groups, \
    u.amr, u.acr, u.auth_time, u.updated_at";

fn from_row(row: &AnyRow) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        user: users::from_row(row)?,
        account: ServiceAccountRecord {
            user_id: row.try_get("user_id")?,
            public_key: row.try_get("public_key")?,
            key_fingerprint: row.try_get("key_fingerprint")?,
            key_revoked_at: row.try_get("key_revoked_at")?,
            created_at: row.try_get("created_at")?,
        },
    })
}

/// Creates the key row of a user already stored with `users::upsert` (same transaction).
/// Fails (a unique violation) if the user already has one or the key belongs to another
/// account.
pub(crate) async fn insert(w: Write<'_>, a: &ServiceAccountRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_accounts (user_id, public_key, key_fingerprint, key_revoked_at, \
         created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&a.user_id)
    .bind(&a.public_key)
    .bind(&a.key_fingerprint)
    .bind(a.key_revoked_at)
    .bind(a.created_at)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// The service account of `issuer` (`service:`) named `name`.
pub(crate) async fn by_name(
    conn: &mut AnyConnection,
    issuer: &str,
    name: &str,
) -> Result<Option<ServiceAccount>> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, {COLUMNS} FROM users u \
         JOIN service_accounts a ON a.user_id = u.id WHERE u.issuer = $1 AND u.subject = $2"
    ))
    .bind(issuer)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every service account, by name.
pub(crate) async fn list(conn: &mut AnyConnection) -> Result<Vec<ServiceAccount>> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, {COLUMNS} FROM users u \
         JOIN service_accounts a ON a.user_id = u.id ORDER BY u.subject, u.issuer"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Remembers the `jti` of an assertion of `account` until `expires_at`; false if it is
/// already remembered (a replay). One statement, so two concurrent uses of one assertion
/// cannot both succeed. Forgets every `jti` whose assertion expired before `now` first.
pub(crate) async fn remember_assertion(
    w: Write<'_>,
    jti: &str,
    account: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool> {
    let conn = w.conn();
    sqlx::query("DELETE FROM service_assertions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query(
        "INSERT INTO service_assertions (jti, account, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(account)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that `token_id` (a token of `account`) was obtained with the key `key_fingerprint`.
pub(crate) async fn bind_token(
    w: Write<'_>,
    token_id: &str,
    account: &str,
    key_fingerprint: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO service_tokens (token_id, account, key_fingerprint) VALUES ($1, $2, $3)",
    )
    .bind(token_id)
    .bind(account)
    .bind(key_fingerprint)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Revokes the key of `account` at `now` and every live token it obtained; returns the ids of
/// those tokens, or `None` if the key was revoked already.
pub(crate) async fn revoke_key(
    w: Write<'_>,
    account: &str,
    now: i64,
) -> Result<Option<Vec<String>>> {
    let conn = w.conn();
    let row = sqlx::query(
        "UPDATE service_accounts SET key_revoked_at = $2 \
         WHERE user_id = $1 AND key_revoked_at IS NULL RETURNING key_fingerprint",
    )
    .bind(account)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let fingerprint: String = row.try_get("key_fingerprint")?;
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $3 WHERE revoked_at IS NULL AND expires_at > $3 \
         AND id IN (SELECT token_id FROM service_tokens WHERE account = $1 \
         AND key_fingerprint = $2) RETURNING id",
    )
    .bind(account)
    .bind(&fingerprint)
    .bind(now)
    .fetch_all(conn)
    .await?;
    let mut ids = revoked
        .iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect::<Result<Vec<String>>>()?;
    ids.sort();
    Ok(Some(ids))
}
