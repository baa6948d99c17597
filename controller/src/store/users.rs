//! Users: an identity (issuer plus subject) with the attributes of its latest login.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::Write;
use super::{from_json_list, to_json_list, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, issuer, subject, username, email, name, groups, amr, acr, auth_time, updated_at";

pub(crate) fn from_row(row: &AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        groups: from_json_list(&row.try_get::<String, _>("groups")?, "users.groups")?,
        amr: from_json_list(&row.try_get::<String, _>("amr")?, "users.amr")?,
        acr: row.try_get("acr")?,
        auth_time: row.try_get("auth_time")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Creates the user or refreshes its attributes from a new login; returns the stored user
/// (whose id is the existing one when the identity was known).
pub(crate) async fn upsert(w: Write<'_>, u: &UserRecord) -> Result<UserRecord> {
    let conn = w.conn();
    sqlx::query(&format!(
        "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (issuer, subject) DO UPDATE SET username = $4, email = $5, name = $6, \
         groups = $7, amr = $8, acr = $9, auth_time = $10, updated_at = $11"
    ))
    .bind(&u.id)
    .bind(&u.issuer)
    .bind(&u.subject)
    .bind(&u.username)
    .bind(&u.email)
    .bind(&u.name)
    .bind(to_json_list(&u.groups))
    .bind(to_json_list(&u.amr))
    .bind(&u.acr)
    .bind(u.auth_time)
    .bind(u.updated_at)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users WHERE issuer = $1 AND subject = $2"
    ))
    .bind(&u.issuer)
    .bind(&u.subject)
    .fetch_one(conn)
    .await?;
    from_row(&row)
}

/// Whether any user exists, from any issuer (`controller init` refuses then).
pub(crate) async fn any(conn: &mut AnyConnection) -> Result<bool> {
    let row = sqlx::query("SELECT id FROM users LIMIT 1")
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

pub(crate) async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<UserRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every user, by user name (at most `limit`): the users a policy dry run checks.
pub(crate) async fn list(conn: &mut AnyConnection, limit: i64) -> Result<Vec<UserRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY username, issuer LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every user with this subject (one per issuer), or only the one of `issuer`.
pub(crate) async fn by_subject(
    conn: &mut AnyConnection,
    subject: &str,
    issuer: Option<&str>,
) -> Result<Vec<UserRecord>> {
    let rows = match issuer {
        Some(issuer) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM users WHERE subject = $1 AND issuer = $2"
            ))
            .bind(subject)
            .bind(issuer)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM users WHERE subject = $1 ORDER BY issuer"
            ))
            .bind(subject)
            .fetch_all(conn)
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Every user with this user name (one per issuer at most, usually one), by issuer.
pub(crate) async fn by_username(
    conn: &mut AnyConnection,
    username: &str,
) -> Result<Vec<UserRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users WHERE username = $1 ORDER BY issuer LIMIT 10"
    ))
    .bind(username)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}
