//! Sessions (their connections are in [`super::connections`]). State changes are conditional
//! updates, so when several controllers race on one session exactly one of them wins.

use portcullis_policy::SshMode;
use portcullis_proto::link::EndReason;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{closed_set, required, Result, Write};

/// A session's state, stored as text in `sessions.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SessionState {
    /// Committed, with credentials being minted from Vault; not usable yet.
    Minting,
    /// Authorised; no connection admitted yet.
    Pending,
    /// At least one connection admitted.
    Active,
    /// Ended, with an [`EndReason`]; never leaves this state.
    Terminated,
}

impl SessionState {
    pub(crate) const ALL: &'static [SessionState] = &[
        SessionState::Minting,
        SessionState::Pending,
        SessionState::Active,
        SessionState::Terminated,
    ];

    /// The text stored in `sessions.state` (and shown by the API).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionState::Minting => "minting",
            SessionState::Pending => "pending",
            SessionState::Active => "active",
            SessionState::Terminated => "terminated",
        }
    }

    pub(crate) fn is_live(self) -> bool {
        self != SessionState::Terminated
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`SessionState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a session state (minting, pending, active or terminated)")]
pub(crate) struct UnknownSessionState(pub String);

impl std::str::FromStr for SessionState {
    type Err = UnknownSessionState;

    fn from_str(text: &str) -> std::result::Result<SessionState, UnknownSessionState> {
        SessionState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownSessionState(text.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub target_id: String,
    pub worker_id: String,
    pub state: SessionState,
    pub termination_reason: Option<EndReason>,
    pub client_addr: String,
    pub client_key_hash: String,
    pub endpoint: String,
    pub connection_limit: i64,
    pub connections_count: i64,
    pub policy_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub activated_at: Option<i64>,
    pub terminated_at: Option<i64>,
    /// How the session's SSH runs (certificate mode for sessions without SSH).
    pub ssh_mode: SshMode,
    /// For a forward a gateway session asked for: that session (it ends with it).
    pub parent_session_id: Option<String>,
}

pub(super) const COLUMNS: &str =
    "id, user_id, target_id, worker_id, state, termination_reason, client_addr, \
    client_key_hash, endpoint, connection_limit, connections_count, policy_hash, created_at, \
    expires_at, activated_at, terminated_at, ssh_mode, parent_session_id";

/// `sessions.ssh_mode`: NULL is certificate mode (the only one before the gateway).
fn ssh_mode(row: &AnyRow) -> Result<SshMode> {
    let text: Option<String> = row.try_get("ssh_mode")?;
    match text.as_deref() {
        None | Some("certificate") => Ok(SshMode::Certificate),
        Some("gateway") => Ok(SshMode::Gateway),
        Some(other) => {
            let id: String = row.try_get("id").unwrap_or_default();
            Err(super::StoreError::Corrupt(format!(
                "sessions.ssh_mode of {id:?}: {other:?} is neither certificate nor gateway; the \
                 row was written by another version or by hand: correct it, or run the version \
                 that wrote it"
            )))
        }
    }
}

fn ssh_mode_column(mode: SshMode) -> Option<&'static str> {
    match mode {
        SshMode::Certificate => None,
        SshMode::Gateway => Some(mode.as_str()),
    }
}

pub(super) fn from_row(row: &AnyRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        target_id: row.try_get("target_id")?,
        worker_id: row.try_get("worker_id")?,
        state: required(row, "sessions", "state")?,
        termination_reason: closed_set(row, "sessions", "termination_reason")?,
        client_addr: row.try_get("client_addr")?,
        client_key_hash: row.try_get("client_key_hash")?,
        endpoint: row.try_get("endpoint")?,
        connection_limit: row.try_get("connection_limit")?,
        connections_count: row.try_get("connections_count")?,
        policy_hash: row.try_get("policy_hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        activated_at: row.try_get("activated_at")?,
        terminated_at: row.try_get("terminated_at")?,
        ssh_mode: ssh_mode(row)?,
        parent_session_id: row.try_get("parent_session_id")?,
    })
}

/// Inserts a session; `token_id` is the API token it was authorised with (logout ends the
/// token's sessions).
/// Inserts a session with the decision that allowed it (`decided`: its zones and roles, for
/// the console's filters) in one statement.
pub(crate) async fn insert(
    w: Write<'_>,
    s: &SessionRecord,
    token_id: Option<&str>,
    decided: &super::session_list::Decided,
) -> Result<()> {
    let conn = w.conn();
    sqlx::query(&format!(
        "INSERT INTO sessions ({COLUMNS}, token_id, source_zone, target_zone, roles) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
    ))
    .bind(&s.id)
    .bind(&s.user_id)
    .bind(&s.target_id)
    .bind(&s.worker_id)
    .bind(s.state.as_str())
    .bind(s.termination_reason.map(EndReason::as_str))
    .bind(&s.client_addr)
    .bind(&s.client_key_hash)
    .bind(&s.endpoint)
    .bind(s.connection_limit)
    .bind(s.connections_count)
    .bind(&s.policy_hash)
    .bind(s.created_at)
    .bind(s.expires_at)
    .bind(s.activated_at)
    .bind(s.terminated_at)
    .bind(ssh_mode_column(s.ssh_mode))
    .bind(&s.parent_session_id)
    .bind(token_id)
    .bind(&decided.source_zone)
    .bind(&decided.target_zone)
    .bind(super::to_json_list(&decided.roles))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<SessionRecord>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Reads a session and, on PostgreSQL, locks its row until the transaction ends (SQLite
/// serialises writers already), so that what the transaction adds under the session (a
/// certificate, a forward) and the session's end are ordered: an end that comes first is
/// seen here, and an end that comes later waits for this commit and then sees what it added.
pub(crate) async fn get_locked(w: Write<'_>, id: &str) -> Result<Option<SessionRecord>> {
    let conn = w.conn();
    let lock = if conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Sessions, newest first; only `user_id`'s when given.
pub(crate) async fn list(
    conn: &mut AnyConnection,
    user_id: Option<&str>,
    limit: i64,
) -> Result<Vec<SessionRecord>> {
    let rows = match user_id {
        Some(user) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2"
            ))
            .bind(user)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {COLUMNS} FROM sessions ORDER BY created_at DESC, id LIMIT $1"))
                .bind(limit)
                .fetch_all(conn)
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Which sessions a page of the list holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageQuery<'a> {
    /// Only this user's sessions.
    pub user_id: Option<&'a str>,
    /// Only sessions that have not ended.
    pub live_only: bool,
    /// Only sessions of a user with this user name (the console's filter).
    pub username: Option<&'a str>,
    /// Only sessions to the target with this name or id (the console's filter).
    pub target: Option<&'a str>,
    /// Only sessions in this state (the console's filter).
    pub state: Option<SessionState>,
    /// Only sessions after this one in the list's order (newest first): its
    /// `(created_at, id)`.
    pub after: Option<(i64, &'a str)>,
    pub limit: i64,
}

/// A page of sessions, newest first (`created_at` descending, then `id`).
pub(crate) async fn page(
    conn: &mut AnyConnection,
    q: &PageQuery<'_>,
) -> Result<Vec<SessionRecord>> {
    let mut sql = format!("SELECT {COLUMNS} FROM sessions WHERE 1 = 1");
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if q.user_id.is_some() {
        sql.push_str(&format!(" AND user_id = {}", param()));
    }
    if q.live_only {
        sql.push_str(" AND state <> 'terminated'");
    }
    if q.username.is_some() {
        sql.push_str(&format!(
            " AND user_id IN (SELECT id FROM users WHERE username = {})",
            param()
        ));
    }
    if q.target.is_some() {
        let (name, id) = (param(), param());
        sql.push_str(&format!(
            " AND target_id IN (SELECT id FROM targets WHERE name = {name} OR id = {id})"
        ));
    }
    if q.state.is_some() {
        sql.push_str(&format!(" AND state = {}", param()));
    }
    if q.after.is_some() {
        let (before, same, id) = (param(), param(), param());
        sql.push_str(&format!(
            " AND (created_at < {before} OR (created_at = {same} AND id > {id}))"
        ));
    }
    sql.push_str(&format!(" ORDER BY created_at DESC, id LIMIT {}", param()));
    let mut query = sqlx::query(&sql);
    if let Some(user) = q.user_id {
        query = query.bind(user);
    }
    if let Some(username) = q.username {
        query = query.bind(username);
    }
    if let Some(target) = q.target {
        query = query.bind(target).bind(target);
    }
    if let Some(state) = q.state {
        query = query.bind(state.as_str());
    }
    if let Some((created_at, id)) = q.after {
        query = query.bind(created_at).bind(created_at).bind(id);
    }
    let rows = query.bind(q.limit).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// Ends a session unless it has already ended; true if this call ended it.
pub(crate) async fn terminate(w: Write<'_>, id: &str, reason: EndReason, now: i64) -> Result<bool> {
    let conn = w.conn();
    let done = sqlx::query(
        "UPDATE sessions SET state = 'terminated', termination_reason = $2, terminated_at = $3 \
         WHERE id = $1 AND state <> 'terminated'",
    )
    .bind(id)
    .bind(reason.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a session from `minting` to `pending` once its credentials are minted; false if it
/// ended meanwhile.
pub(crate) async fn finish_minting(w: Write<'_>, id: &str) -> Result<bool> {
    let conn = w.conn();
    let done =
        sqlx::query("UPDATE sessions SET state = 'pending' WHERE id = $1 AND state = 'minting'")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Live sessions that must end now: past their expiry, or pending since before
/// `pending_before`.
pub(crate) async fn due(
    conn: &mut AnyConnection,
    now: i64,
    pending_before: i64,
) -> Result<Vec<SessionRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE state <> 'terminated' \
         AND (expires_at <= $1 OR (state = 'pending' AND created_at < $2))"
    ))
    .bind(now)
    .bind(pending_before)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Live sessions carried by a worker.
pub(crate) async fn live_on_worker(
    conn: &mut AnyConnection,
    worker_id: &str,
) -> Result<Vec<SessionRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE worker_id = $1 AND state <> 'terminated'"
    ))
    .bind(worker_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// How many live sessions (not terminated, not yet expired) each worker carries; workers
/// with none are absent.
pub(crate) async fn live_per_worker(
    conn: &mut AnyConnection,
    now: i64,
) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT worker_id, COUNT(*) AS n FROM sessions WHERE state <> 'terminated' \
         AND expires_at > $1 GROUP BY worker_id",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("worker_id")?, row.try_get("n")?)))
        .collect()
}

/// What tells an idle session from a used one: a live session's own times and its
/// connections' ([`crate::sessions::idle`] decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Activity {
    pub session_id: String,
    pub created_at: i64,
    /// When its own user last asked about it ([`client_seen`]).
    pub client_seen_at: Option<i64>,
    pub open_connections: i64,
    pub last_opened_at: Option<i64>,
    pub last_closed_at: Option<i64>,
}

/// The activity of the pending and active sessions created, and last asked about by their
/// client, before `quiet_since`: the only ones that can be idle since then.
pub(crate) async fn quiet_since(
    conn: &mut AnyConnection,
    quiet_since: i64,
) -> Result<Vec<Activity>> {
    let rows = sqlx::query(
        "SELECT s.id, s.created_at, s.client_seen_at, \
         COUNT(CASE WHEN c.state = 'open' THEN 1 END) AS open_connections, \
         MAX(c.opened_at) AS last_opened_at, MAX(c.closed_at) AS last_closed_at \
         FROM sessions s LEFT JOIN connections c ON c.session_id = s.id \
         WHERE s.state IN ('pending', 'active') AND s.created_at < $1 \
         AND (s.client_seen_at IS NULL OR s.client_seen_at < $1) \
         GROUP BY s.id, s.created_at, s.client_seen_at",
    )
    .bind(quiet_since)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Activity {
                session_id: row.try_get("id")?,
                created_at: row.try_get("created_at")?,
                client_seen_at: row.try_get("client_seen_at")?,
                open_connections: row.try_get("open_connections")?,
                last_opened_at: row.try_get("last_opened_at")?,
                last_closed_at: row.try_get("last_closed_at")?,
            })
        })
        .collect()
}

/// Records that a live session's client asked about it at `now`, unless it already did at or
/// after `unless_since` (so a client polling every second writes once in a while).
pub(crate) async fn client_seen(
    conn: &mut AnyConnection,
    id: &str,
    now: i64,
    unless_since: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE sessions SET client_seen_at = $2 WHERE id = $1 \
         AND state IN ('pending', 'active') \
         AND (client_seen_at IS NULL OR client_seen_at < $3)",
    )
    .bind(id)
    .bind(now)
    .bind(unless_since)
    .execute(conn)
    .await?;
    Ok(())
}

/// The state and termination reason of each id that exists.
pub(crate) async fn states(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<(String, SessionState, Option<EndReason>)>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = sqlx::query("SELECT id, state, termination_reason FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            out.push((
                id.clone(),
                required(&row, "sessions", "state")?,
                closed_set(&row, "sessions", "termination_reason")?,
            ));
        }
    }
    Ok(out)
}

/// Ids of the live sessions authorised with one of `token_ids`.
pub(crate) async fn live_of_tokens(
    conn: &mut AnyConnection,
    token_ids: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for token_id in token_ids {
        let rows = sqlx::query(
            "SELECT id FROM sessions WHERE token_id = $1 AND state <> 'terminated' ORDER BY id",
        )
        .bind(token_id)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            out.push(row.try_get("id")?);
        }
    }
    Ok(out)
}

/// Ids of a user's live sessions.
pub(crate) async fn live_of_user(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT id FROM sessions WHERE user_id = $1 AND state <> 'terminated' ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}

/// How many live sessions (not terminated, not yet expired) a user holds.
pub(crate) async fn count_live_of_user(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = $1 AND state <> 'terminated' \
         AND expires_at > $2 AND parent_session_id IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("n")?)
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;

/// The live forwards a gateway session asked for ([`SessionRecord::parent_session_id`]).
pub(crate) async fn live_children(
    conn: &mut AnyConnection,
    parent_id: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT id FROM sessions WHERE parent_session_id = $1 AND state <> 'terminated' ORDER BY id",
    )
    .bind(parent_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(Into::into))
        .collect()
}

/// How many sessions are in each live state (minting, pending, active), for `/metrics`;
/// ended sessions are not counted (they only grow).
pub(crate) async fn count_live_by_state(store: &super::Store) -> Result<Vec<(String, i64)>> {
    let mut conn = store.conn().await?;
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM sessions \
         WHERE state IN ('minting', 'pending', 'active') GROUP BY state",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("state")?,
                row.try_get::<i64, _>("n")?,
            ))
        })
        .collect()
}
