//! Step-up challenges (`crate::step_up`): issued by authorize-session, answered by a fresh
//! login, spent once by the session request they were made for. Every step is a conditional
//! update, so a proof is handed out once and spent once even when controllers race.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{Result, StoreError, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepUpRecord {
    pub id: String,
    pub user_id: String,
    pub target_id: String,
    pub target_name: String,
    /// SHA-256 of the challenged request's `client_public_key` text.
    pub client_key_hash: Vec<u8>,
    pub role: String,
    pub amr: Vec<String>,
    pub acr: Vec<String>,
    pub nonce: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub login_id: Option<String>,
    pub failed_attempts: i64,
    pub proof_hash: Option<Vec<u8>>,
    pub proven: Option<Proven>,
    pub used_at: Option<i64>,
    pub session_id: Option<String>,
}

/// What the step-up login showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proven {
    pub at: i64,
    /// `oidc` or `totp`.
    pub method: String,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: i64,
}

const COLUMNS: &str = "id, user_id, target_id, target_name, client_key_hash, role, amr, acr, \
    nonce, created_at, expires_at, login_id, failed_attempts, proof_hash, proven_at, \
    proven_method, proven_amr, proven_acr, proven_auth_time, used_at, session_id";

fn json_list(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("a step-up challenge's list: {e}")))
}

fn from_row(row: &AnyRow) -> Result<StepUpRecord> {
    let proven_at: Option<i64> = row.try_get("proven_at")?;
    let proven = match proven_at {
        Some(at) => {
            let amr: Option<String> = row.try_get("proven_amr")?;
            Some(Proven {
                at,
                method: row
                    .try_get::<Option<String>, _>("proven_method")?
                    .unwrap_or_default(),
                amr: json_list(amr.as_deref().unwrap_or("[]"))?,
                acr: row.try_get("proven_acr")?,
                auth_time: row
                    .try_get::<Option<i64>, _>("proven_auth_time")?
                    .unwrap_or_default(),
            })
        }
        None => None,
    };
    Ok(StepUpRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        target_id: row.try_get("target_id")?,
        target_name: row.try_get("target_name")?,
        client_key_hash: row.try_get("client_key_hash")?,
        role: row.try_get("role")?,
        amr: json_list(&row.try_get::<String, _>("amr")?)?,
        acr: json_list(&row.try_get::<String, _>("acr")?)?,
        nonce: row.try_get("nonce")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        login_id: row.try_get("login_id")?,
        failed_attempts: row.try_get("failed_attempts")?,
        proof_hash: row.try_get("proof_hash")?,
        proven,
        used_at: row.try_get("used_at")?,
        session_id: row.try_get("session_id")?,
    })
}

fn to_json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

pub(crate) async fn insert(w: Write<'_>, r: &StepUpRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO step_up_challenges (id, user_id, target_id, target_name, \
         client_key_hash, role, amr, acr, nonce, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&r.id)
    .bind(&r.user_id)
    .bind(&r.target_id)
    .bind(&r.target_name)
    .bind(&r.client_key_hash)
    .bind(&r.role)
    .bind(to_json(&r.amr))
    .bind(to_json(&r.acr))
    .bind(&r.nonce)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(w.conn())
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<StepUpRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM step_up_challenges WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The challenge an OIDC step-up login answers.
pub(crate) async fn by_login(
    conn: &mut AnyConnection,
    login_id: &str,
) -> Result<Option<StepUpRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM step_up_challenges WHERE login_id = $1"
    ))
    .bind(login_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Links the OIDC login that answers a challenge to it (the login's start is audited as
/// `login_started`), once: the start needs no token, so a second start (by whoever learnt
/// the challenge's id) must not take the challenge from the first. False when another login
/// answers it already, or it is answered, spent or expired.
pub(crate) async fn attach_login(
    conn: &mut AnyConnection,
    id: &str,
    login_id: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE step_up_challenges SET login_id = $2 \
         WHERE id = $1 AND login_id IS NULL AND proof_hash IS NULL AND used_at IS NULL \
         AND expires_at > $3",
    )
    .bind(id)
    .bind(login_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a wrong answer (each is audited as `step_up_failed`); returns the count.
pub(crate) async fn count_failure(conn: &mut AnyConnection, id: &str) -> Result<i64> {
    sqlx::query(
        "UPDATE step_up_challenges SET failed_attempts = failed_attempts + 1 WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT failed_attempts FROM step_up_challenges WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => row.try_get("failed_attempts")?,
        None => 0,
    })
}

/// Records the answer and the hash of the proof handed out, once: false when the challenge
/// was answered already, is spent or has expired.
pub(crate) async fn prove(
    w: Write<'_>,
    id: &str,
    proof_hash: &[u8],
    proven: &Proven,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE step_up_challenges SET proof_hash = $2, proven_at = $3, proven_method = $4, \
         proven_amr = $5, proven_acr = $6, proven_auth_time = $7 \
         WHERE id = $1 AND proof_hash IS NULL AND used_at IS NULL AND expires_at > $3",
    )
    .bind(id)
    .bind(proof_hash)
    .bind(proven.at)
    .bind(&proven.method)
    .bind(to_json(&proven.amr))
    .bind(&proven.acr)
    .bind(proven.auth_time)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Spends the proof for `session_id`, once: false when it was spent already or expired.
pub(crate) async fn spend(w: Write<'_>, id: &str, session_id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE step_up_challenges SET used_at = $3, session_id = $2 \
         WHERE id = $1 AND proof_hash IS NOT NULL AND used_at IS NULL AND expires_at > $3",
    )
    .bind(id)
    .bind(session_id)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes challenges that expired more than a day ago (kept that long for `audit` readers
/// who look a challenge up by id).
pub(crate) async fn prune(conn: &mut AnyConnection, now: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM step_up_challenges WHERE expires_at < $1")
        .bind(now - 86_400)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
