//! Local users' credentials (issue 21): for a `users` row of issuer `local:`, its argon2id
//! password hash, its TOTP secret (stored only sealed, AES-256-GCM under the master key), the
//! last TOTP step accepted, whether it is disabled, and its single-use recovery codes (only
//! their digests). The user's name and groups stay in `users`, written by `users::upsert`.
//!
//! Values arrive here already hashed or sealed: this module never sees a password, a TOTP
//! secret in clear or a recovery code.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::users::{self, UserRecord};
use super::Write;
use super::{Result, StoreError};

/// A local user's credentials. `Debug` shows neither the hash nor the sealed secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LocalUserRecord {
    /// `users.id`.
    pub user_id: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// The password was set by an administrator and is to be replaced at the first login.
    pub must_change_password: bool,
    /// Unix seconds after which the password is refused (the bootstrap credential);
    /// `None`: it does not expire. Any change of the password clears it.
    pub password_expires_at: Option<i64>,
    /// The TOTP secret, sealed; `None`: not enrolled.
    pub totp_secret: Option<Vec<u8>>,
    /// The last time step whose code was accepted.
    pub totp_last_step: Option<i64>,
    /// Unix seconds.
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for LocalUserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUserRecord")
            .field("user_id", &self.user_id)
            .field("must_change_password", &self.must_change_password)
            .field("password_expires_at", &self.password_expires_at)
            .field("totp_enrolled", &self.totp_secret.is_some())
            .field("totp_last_step", &self.totp_last_step)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// A local user: its `users` row and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalUser {
    pub user: UserRecord,
    pub local: LocalUserRecord,
}

/// One stored recovery code: its digest (hex) and when it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecoveryCodeRow {
    pub code_hash: String,
    pub used_at: Option<i64>,
}

const COLUMNS: &str = "l.user_id, l.password_hash, l.must_change_password, \
    l.password_expires_at, l.totp_secret, l.totp_last_step, l.disabled_at, l.created_at, \
    l.updated_at";

const USER_COLUMNS: &str = "u.id, u.issuer, u.subject, u.username, u.email, u.name, u.groups, \
    u.amr, u.acr, u.auth_time, u.updated_at";

fn from_row(row: &AnyRow) -> Result<LocalUserRecord> {
    let must_change: i64 = row.try_get("must_change_password")?;
    Ok(LocalUserRecord {
        user_id: row.try_get("user_id")?,
        password_hash: row.try_get("password_hash")?,
        must_change_password: match must_change {
            0 => false,
            1 => true,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "local_users.must_change_password: {other} is neither 0 nor 1"
                )))
            }
        },
        password_expires_at: row.try_get("password_expires_at")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        disabled_at: row.try_get("disabled_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn local_user_from_row(row: &AnyRow) -> Result<LocalUser> {
    Ok(LocalUser {
        user: users::from_row(row)?,
        local: from_row(row)?,
    })
}

/// Creates the credentials of a user already stored with `users::upsert` (same transaction).
/// Fails (a unique violation) if the user already has credentials.
pub(crate) async fn insert(w: Write<'_>, l: &LocalUserRecord) -> Result<()> {
    let conn = w.conn();
    sqlx::query(
        "INSERT INTO local_users (user_id, password_hash, must_change_password, \
         password_expires_at, totp_secret, totp_last_step, disabled_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&l.user_id)
    .bind(&l.password_hash)
    .bind(i64::from(l.must_change_password))
    .bind(l.password_expires_at)
    .bind(&l.totp_secret)
    .bind(l.totp_last_step)
    .bind(l.disabled_at)
    .bind(l.created_at)
    .bind(l.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The local user named `username` of `issuer`, with its credentials.
pub(crate) async fn by_name(
    conn: &mut AnyConnection,
    issuer: &str,
    username: &str,
) -> Result<Option<LocalUser>> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, {COLUMNS} FROM users u JOIN local_users l ON l.user_id = u.id \
         WHERE u.issuer = $1 AND u.subject = $2"
    ))
    .bind(issuer)
    .bind(username)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(local_user_from_row).transpose()
}

/// Every local user, by name.
pub(crate) async fn list(conn: &mut AnyConnection) -> Result<Vec<LocalUser>> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, {COLUMNS} FROM users u JOIN local_users l ON l.user_id = u.id \
         ORDER BY u.username, u.issuer"
    ))
    .fetch_all(conn)
    .await?;
    rows.iter().map(local_user_from_row).collect()
}

/// Sets a new password hash (and whether it must be replaced at the next login); the
/// password no longer expires.
pub(crate) async fn set_password(
    w: Write<'_>,
    user_id: &str,
    password_hash: &str,
    must_change_password: bool,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE local_users SET password_hash = $2, must_change_password = $3, \
         password_expires_at = NULL, updated_at = $4 WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(password_hash)
    .bind(i64::from(must_change_password))
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Enrols TOTP: stores the sealed secret and the step of the code that confirmed it (which
/// is then used), and replaces the recovery codes with `code_hashes`. False (nothing
/// written) when the user has no credentials or is enrolled already: of two logins racing
/// to enrol, only the first one's secret is kept (`reset` clears it for a new enrolment).
pub(crate) async fn enrol_totp(
    w: Write<'_>,
    user_id: &str,
    sealed_secret: &[u8],
    confirmed_step: i64,
    code_hashes: &[String],
    now: i64,
) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE local_users SET totp_secret = $2, totp_last_step = $3, updated_at = $4 \
         WHERE user_id = $1 AND totp_secret IS NULL",
    )
    .bind(user_id)
    .bind(sealed_secret)
    .bind(confirmed_step)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for hash in code_hashes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
        )
        .bind(user_id)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Accepts a TOTP code of `step` once: true if no code of this step or a later one was
/// accepted before (compared and set in one statement, so two logins racing with the same
/// code cannot both pass).
pub(crate) async fn accept_totp_step(
    w: Write<'_>,
    user_id: &str,
    step: i64,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE local_users SET totp_last_step = $2, updated_at = $3 \
         WHERE user_id = $1 AND totp_secret IS NOT NULL \
         AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(user_id)
    .bind(step)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Resets a user (`controller users reset`): a new password hash, TOTP and recovery codes
/// cleared (to be enrolled again at the next login). False if the user has no credentials.
pub(crate) async fn reset(
    w: Write<'_>,
    user_id: &str,
    password_hash: &str,
    must_change_password: bool,
    now: i64,
) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE local_users SET password_hash = $2, must_change_password = $3, \
         password_expires_at = NULL, totp_secret = NULL, totp_last_step = NULL, \
         updated_at = $4 WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(password_hash)
    .bind(i64::from(must_change_password))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Disables a user (`Some(now)`) or enables it again (`None`).
pub(crate) async fn set_disabled(
    w: Write<'_>,
    user_id: &str,
    disabled_at: Option<i64>,
    now: i64,
) -> Result<bool> {
    let done =
        sqlx::query("UPDATE local_users SET disabled_at = $2, updated_at = $3 WHERE user_id = $1")
            .bind(user_id)
            .bind(disabled_at)
            .bind(now)
            .execute(w.conn())
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A user's recovery codes (digests), used or not.
pub(crate) async fn recovery_codes(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<RecoveryCodeRow>> {
    let rows = sqlx::query(
        "SELECT code_hash, used_at FROM recovery_codes WHERE user_id = $1 ORDER BY code_hash",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RecoveryCodeRow {
                code_hash: row.try_get("code_hash")?,
                used_at: row.try_get("used_at")?,
            })
        })
        .collect()
}

/// Uses a recovery code once: true if it was there and unused.
pub(crate) async fn use_recovery_code(
    w: Write<'_>,
    user_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE recovery_codes SET used_at = $3 \
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(code_hash)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}
