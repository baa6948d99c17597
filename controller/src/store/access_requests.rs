//! Just-in-time access requests (issue 25), their approvals and their runs. State changes are
//! conditional updates (`WHERE state = ...`), so when two approvers or a revoke and the sweeper
//! race on one request exactly one of them wins; each returns whether it won.

use portcullis_proto::access::RequestState;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{from_json_list, required, to_json_list, Result, StoreError, Write};

/// One row of `access_requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessRecord {
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub targets: Vec<String>,
    pub zone: Option<String>,
    pub state: RequestState,
    pub reason: Option<String>,
    pub break_glass: bool,
    pub duration_secs: i64,
    pub created_at: i64,
    pub approved_at: Option<i64>,
    /// Pending: the deadline for approvals; approved: the end of the window.
    pub expires_at: i64,
    pub approvals_needed: i64,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub run: Option<RunRecord>,
}

/// The run columns of a request `portcullis run` made (`run_command` set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RunRecord {
    pub command: Vec<String>,
    /// The run key, base64url DER SubjectPublicKeyInfo (public only).
    pub public_key: Option<String>,
    pub keepalive_secs: Option<i64>,
    pub started_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_status: Option<i64>,
    pub outcome: Option<String>,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApprovalRecord {
    pub request_id: String,
    pub user_id: String,
    pub at: i64,
    pub reason: Option<String>,
}

const COLUMNS: &str = "id, user_id, role, targets, zone, state, reason, break_glass, \
    duration_secs, created_at, approved_at, expires_at, approvals_needed, decided_by, \
    decision_reason, run_command, run_public_key, run_keepalive_secs, run_started_at, \
    run_last_seen_at, run_finished_at, run_exit_status, run_outcome";

fn from_row(row: &AnyRow) -> Result<AccessRecord> {
    let command: Option<String> = row.try_get("run_command")?;
    let run = match command {
        None => None,
        Some(text) => Some(RunRecord {
            command: from_json_list(&text, "access_requests.run_command")?,
            public_key: row.try_get("run_public_key")?,
            keepalive_secs: row.try_get("run_keepalive_secs")?,
            started_at: row.try_get("run_started_at")?,
            last_seen_at: row.try_get("run_last_seen_at")?,
            finished_at: row.try_get("run_finished_at")?,
            exit_status: row.try_get("run_exit_status")?,
            outcome: row.try_get("run_outcome")?,
        }),
    };
    Ok(AccessRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        role: row.try_get("role")?,
        targets: from_json_list(
            &row.try_get::<String, _>("targets")?,
            "access_requests.targets",
        )?,
        zone: row.try_get("zone")?,
        state: required(row, "access_requests", "state")?,
        reason: row.try_get("reason")?,
        break_glass: row.try_get::<i64, _>("break_glass")? != 0,
        duration_secs: row.try_get("duration_secs")?,
        created_at: row.try_get("created_at")?,
        approved_at: row.try_get("approved_at")?,
        expires_at: row.try_get("expires_at")?,
        approvals_needed: row.try_get("approvals_needed")?,
        decided_by: row.try_get("decided_by")?,
        decision_reason: row.try_get("decision_reason")?,
        run,
    })
}

/// Stores a new request (pending, or approved at creation).
pub(crate) async fn insert(w: Write<'_>, r: &AccessRecord) -> Result<()> {
    let command = r.run.as_ref().map(|run| to_json_list(&run.command));
    sqlx::query(&format!(
        "INSERT INTO access_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13, $14, $15, $16, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ))
    .bind(&r.id)
    .bind(&r.user_id)
    .bind(&r.role)
    .bind(to_json_list(&r.targets))
    .bind(&r.zone)
    .bind(r.state.as_str())
    .bind(&r.reason)
    .bind(i64::from(r.break_glass))
    .bind(r.duration_secs)
    .bind(r.created_at)
    .bind(r.approved_at)
    .bind(r.expires_at)
    .bind(r.approvals_needed)
    .bind(&r.decided_by)
    .bind(&r.decision_reason)
    .bind(command)
    .execute(w.conn())
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<AccessRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_requests WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Which requests a listing asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter<'a> {
    pub state: Option<RequestState>,
    /// Only this user's requests.
    pub user_id: Option<&'a str>,
    /// Only requests for these roles (the caller's own requests are added by `or_user`).
    pub roles: Option<&'a [String]>,
    /// With `roles`: the requests of this user too, whatever their role.
    pub or_user: Option<&'a str>,
    pub limit: i64,
}

/// Requests newest first, as `filter` says.
pub(crate) async fn list(
    conn: &mut AnyConnection,
    filter: &ListFilter<'_>,
) -> Result<Vec<AccessRecord>> {
    let mut sql = format!("SELECT {COLUMNS} FROM access_requests WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let next = |value: &str, binds: &mut Vec<String>| {
        binds.push(value.to_owned());
        format!("${}", binds.len())
    };
    if let Some(state) = filter.state {
        sql.push_str(&format!(
            " AND state = {}",
            next(state.as_str(), &mut binds)
        ));
    }
    if let Some(user) = filter.user_id {
        sql.push_str(&format!(" AND user_id = {}", next(user, &mut binds)));
    }
    if let Some(roles) = filter.roles {
        let mut alternatives: Vec<String> = roles
            .iter()
            .map(|role| format!("role = {}", next(role, &mut binds)))
            .collect();
        if let Some(user) = filter.or_user {
            alternatives.push(format!("user_id = {}", next(user, &mut binds)));
        }
        if alternatives.is_empty() {
            alternatives.push("1 = 0".into());
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT {}",
        filter.limit.clamp(1, 1000)
    ));
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(value);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// The requests of `user_id` approved and unexpired at `now`, oldest first: those that may
/// open a session.
pub(crate) async fn approved_of_user(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<Vec<AccessRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_requests WHERE user_id = $1 AND state = 'approved' \
         AND expires_at > $2 ORDER BY created_at, id"
    ))
    .bind(user_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Open requests (pending or approved) whose `expires_at` has come.
pub(crate) async fn due(conn: &mut AnyConnection, now: i64) -> Result<Vec<AccessRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_requests WHERE state IN ('pending', 'approved') \
         AND expires_at <= $1 ORDER BY expires_at, id"
    ))
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Approved requests with a started, unfinished run whose last keepalive (or start) is
/// older than three of its keepalive intervals at `now`.
pub(crate) async fn lost_runs(conn: &mut AnyConnection, now: i64) -> Result<Vec<AccessRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM access_requests WHERE state = 'approved' \
         AND run_started_at IS NOT NULL AND run_finished_at IS NULL \
         AND run_last_seen_at + 3 * run_keepalive_secs < $1 ORDER BY id"
    ))
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Records `user_id`'s approval; a second approval by the same user is a
/// [`StoreError::Conflict`].
pub(crate) async fn add_approval(w: Write<'_>, a: &ApprovalRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_approvals (request_id, user_id, at, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(&a.request_id)
    .bind(&a.user_id)
    .bind(a.at)
    .bind(&a.reason)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// The request's approvals, oldest first.
pub(crate) async fn approvals(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Vec<ApprovalRecord>> {
    let rows = sqlx::query(
        "SELECT request_id, user_id, at, reason FROM access_approvals WHERE request_id = $1 \
         ORDER BY at, user_id",
    )
    .bind(request_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ApprovalRecord {
                request_id: row.try_get("request_id")?,
                user_id: row.try_get("user_id")?,
                at: row.try_get("at")?,
                reason: row.try_get("reason")?,
            })
        })
        .collect()
}

/// A pending request's count of missing approvals, lowered to `needed` (still pending);
/// whether it was pending.
pub(crate) async fn set_needed(w: Write<'_>, id: &str, needed: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_requests SET approvals_needed = $2 WHERE id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(needed)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A pending request approved at `now`, its window ending at `expires_at`; whether it was
/// pending.
pub(crate) async fn approve(w: Write<'_>, id: &str, now: i64, expires_at: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_requests SET state = 'approved', approvals_needed = 0, approved_at = $2, \
         expires_at = $3 WHERE id = $1 AND state = 'pending'",
    )
    .bind(id)
    .bind(now)
    .bind(expires_at)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends an open request in `to` (denied, revoked, expired), naming who and why; whether it
/// was in one of `from`.
pub(crate) async fn close(
    w: Write<'_>,
    id: &str,
    from: &[RequestState],
    to: RequestState,
    decided_by: Option<&str>,
    reason: Option<&str>,
) -> Result<bool> {
    if to.is_open() || from.is_empty() {
        return Err(StoreError::Query(format!(
            "a request cannot be closed as {to} (from {from:?})"
        )));
    }
    let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
    let done = sqlx::query(&format!(
        "UPDATE access_requests SET state = $2, decided_by = $3, decision_reason = $4 \
         WHERE id = $1 AND state IN ({})",
        states.join(", ")
    ))
    .bind(id)
    .bind(to.as_str())
    .bind(decided_by)
    .bind(reason)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Starts the run of an approved request whose run has not started; whether it started.
pub(crate) async fn start_run(
    w: Write<'_>,
    id: &str,
    public_key: &str,
    keepalive_secs: i64,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_requests SET run_public_key = $2, run_keepalive_secs = $3, \
         run_started_at = $4, run_last_seen_at = $4 WHERE id = $1 AND state = 'approved' \
         AND run_command IS NOT NULL AND run_started_at IS NULL",
    )
    .bind(id)
    .bind(public_key)
    .bind(keepalive_secs)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A run's keepalive; whether the run was live (started, not finished, request approved).
/// Bookkeeping: the run's start and end are audited.
pub(crate) async fn keepalive(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_requests SET run_last_seen_at = $2 WHERE id = $1 AND state = 'approved' \
         AND run_started_at IS NOT NULL AND run_finished_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a started, unfinished run with `outcome`; whether it was running.
pub(crate) async fn finish_run(
    w: Write<'_>,
    id: &str,
    exit_status: Option<i64>,
    outcome: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_requests SET run_finished_at = $2, run_exit_status = $3, run_outcome = $4 \
         WHERE id = $1 AND run_started_at IS NOT NULL AND run_finished_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(exit_status)
    .bind(outcome)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks session `session_id` as opened under request `request_id`, in the transaction that
/// commits the session, if the request is still approved and unexpired at `now`; whether it
/// was (when not, the caller rolls the session back: a revoke won the race).
pub(crate) async fn attach_session(
    w: Write<'_>,
    session_id: &str,
    request_id: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET access_request_id = $2 WHERE id = $1 AND EXISTS (SELECT 1 FROM \
         access_requests WHERE id = $2 AND state = 'approved' AND expires_at > $3)",
    )
    .bind(session_id)
    .bind(request_id)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The ids of the sessions opened under the request, oldest first.
pub(crate) async fn sessions(conn: &mut AnyConnection, request_id: &str) -> Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT id FROM sessions WHERE access_request_id = $1 ORDER BY created_at, id")
            .bind(request_id)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect()
}

/// The ids of the live sessions opened under the request.
pub(crate) async fn live_sessions(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT id FROM sessions WHERE access_request_id = $1 AND state <> 'terminated' \
         ORDER BY created_at, id",
    )
    .bind(request_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect()
}

/// The role a live session was granted by its access request: the request it was opened
/// under, if that request is still approved and unexpired at `now`.
pub(crate) async fn granted_role_of_session(
    conn: &mut AnyConnection,
    session_id: &str,
    now: i64,
) -> Result<Option<String>> {
    let row = sqlx::query(
        "SELECT r.role AS role FROM sessions s JOIN access_requests r \
         ON r.id = s.access_request_id WHERE s.id = $1 AND r.state = 'approved' \
         AND r.expires_at > $2",
    )
    .bind(session_id)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("role")?),
        None => None,
    })
}

/// Live sessions whose access request no longer grants anything at `now` (ended, or past its
/// window): what an end that failed after its request's commit left behind.
pub(crate) async fn stranded_sessions(conn: &mut AnyConnection, now: i64) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT s.id AS id FROM sessions s JOIN access_requests r ON r.id = s.access_request_id \
         WHERE s.state <> 'terminated' AND (r.state <> 'approved' OR r.expires_at <= $1) \
         ORDER BY s.id",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>("id")?))
        .collect()
}
