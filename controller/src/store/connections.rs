//! Connections of sessions, as workers report them: the first admitted online
//! ([`admit_first`], which checks the session and makes it active), later ones the worker
//! opened by itself, and closes with their byte counts. Opening a connection counts it on its
//! session in the same transaction. Admissions, opens and closes are idempotent: a worker
//! resends events until they are acknowledged, and asks again for an admission whose answer
//! its link lost.

use portcullis_proto::link::EndReason;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{closed_set, Result, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionRecord {
    pub id: String,
    pub session_id: String,
    pub worker_id: String,
    pub client_addr: String,
    pub state: String,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub close_reason: Option<EndReason>,
}

pub(super) const COLUMNS: &str = "id, session_id, worker_id, client_addr, state, bytes_up, \
    bytes_down, opened_at, closed_at, close_reason";

fn from_row(row: &AnyRow) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        worker_id: row.try_get("worker_id")?,
        client_addr: row.try_get("client_addr")?,
        state: row.try_get("state")?,
        bytes_up: row.try_get("bytes_up")?,
        bytes_down: row.try_get("bytes_down")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
        close_reason: closed_set(row, "connections", "close_reason")?,
    })
}

/// What [`admit_first`] made of a first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstAdmission {
    /// Admitted now: counted on its session and recorded.
    Admitted,
    /// The same connection was admitted before, for the same session and worker (the worker
    /// asked again after its link dropped, or a controller that hung answers a copy later):
    /// nothing changed. `live` tells whether the session may still take it.
    Repeated { live: bool },
    /// Refused: the id names a connection of another session or worker. Nothing changed.
    IdInUse,
    /// Refused: the session is not live on that worker, or at its limit. Nothing changed.
    Refused,
}

/// Admits a session's first connection on its worker: the session must be live, on that
/// worker, unexpired and under its connection limit. Records the connection and counts it.
///
/// Idempotent per connection id: a connection already recorded for this session and worker
/// is [`FirstAdmission::Repeated`] and counted once only; an id recorded for another session
/// or worker is [`FirstAdmission::IdInUse`]. The session's row is locked first, so two copies of one request
/// (through two controllers) cannot both count it.
pub(crate) async fn admit_first(
    w: Write<'_>,
    session_id: &str,
    worker_id: &str,
    connection_id: &str,
    client_addr: &str,
    now: i64,
) -> Result<FirstAdmission> {
    let conn = w.conn();
    // A no-op update takes the session's row lock on PostgreSQL until the transaction ends
    // (SQLite's transaction holds the only connection).
    sqlx::query("UPDATE sessions SET connections_count = connections_count WHERE id = $1")
        .bind(session_id)
        .execute(&mut *conn)
        .await?;
    let earlier = sqlx::query("SELECT session_id, worker_id FROM connections WHERE id = $1")
        .bind(connection_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = earlier {
        let session: String = row.try_get("session_id")?;
        let worker: String = row.try_get("worker_id")?;
        if session != session_id || worker != worker_id {
            return Ok(FirstAdmission::IdInUse);
        }
        let live = sqlx::query(
            "SELECT 1 AS live FROM sessions WHERE id = $1 AND worker_id = $2 \
             AND state IN ('pending', 'active') AND expires_at > $3",
        )
        .bind(session_id)
        .bind(worker_id)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
        return Ok(FirstAdmission::Repeated { live });
    }
    let done = sqlx::query(
        "UPDATE sessions SET state = 'active', activated_at = COALESCE(activated_at, $3), \
         connections_count = connections_count + 1 \
         WHERE id = $1 AND worker_id = $2 AND state IN ('pending', 'active') AND expires_at > $3 \
         AND (connection_limit = 0 OR connections_count < connection_limit)",
    )
    .bind(session_id)
    .bind(worker_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(FirstAdmission::Refused);
    }
    insert_connection(conn, session_id, worker_id, connection_id, client_addr, now).await?;
    Ok(FirstAdmission::Admitted)
}

async fn insert_connection(
    conn: &mut AnyConnection,
    session_id: &str,
    worker_id: &str,
    connection_id: &str,
    client_addr: &str,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO connections ({COLUMNS}) VALUES ($1, $2, $3, $4, 'open', 0, 0, $5, NULL, NULL) \
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(connection_id)
    .bind(session_id)
    .bind(worker_id)
    .bind(client_addr)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a connection the worker admitted by itself; idempotent. True if it was new.
pub(crate) async fn connection_opened(
    w: Write<'_>,
    session_id: &str,
    worker_id: &str,
    connection_id: &str,
    client_addr: &str,
    at: i64,
) -> Result<bool> {
    opened(
        w.conn(),
        session_id,
        worker_id,
        connection_id,
        client_addr,
        at,
    )
    .await
}

async fn opened(
    conn: &mut AnyConnection,
    session_id: &str,
    worker_id: &str,
    connection_id: &str,
    client_addr: &str,
    at: i64,
) -> Result<bool> {
    let new =
        insert_connection(conn, session_id, worker_id, connection_id, client_addr, at).await?;
    if new {
        sqlx::query(
            "UPDATE sessions SET connections_count = connections_count + 1, \
             state = CASE WHEN state = 'pending' THEN 'active' ELSE state END, \
             activated_at = COALESCE(activated_at, $2) WHERE id = $1",
        )
        .bind(session_id)
        .bind(at)
        .execute(conn)
        .await?;
    }
    Ok(new)
}

/// Records a connection's close with its byte counts; idempotent. True if it was open, or
/// closed as lost (the real counts replace the last known ones).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn connection_closed(
    w: Write<'_>,
    session_id: &str,
    worker_id: &str,
    connection_id: &str,
    bytes_up: i64,
    bytes_down: i64,
    reason: EndReason,
    at: i64,
) -> Result<bool> {
    let conn = w.conn();
    // A close whose open was never recorded still leaves a row behind.
    opened(conn, session_id, worker_id, connection_id, "", at).await?;
    let done = sqlx::query(
        "UPDATE connections SET state = 'closed', bytes_up = $2, bytes_down = $3, closed_at = $4, \
         close_reason = $5 WHERE id = $1 AND state IN ('open', 'lost')",
    )
    .bind(connection_id)
    .bind(bytes_up)
    .bind(bytes_down)
    .bind(at)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Closes the connections `worker_id` left open in sessions other than `keep`: state `lost`,
/// reason `worker_lost`, closed at `now`, byte counts as they are (the last the store has).
/// Returns each closed connection with its session's target.
pub(crate) async fn close_lost(
    w: Write<'_>,
    worker_id: &str,
    keep: &[String],
    now: i64,
) -> Result<Vec<(ConnectionRecord, String)>> {
    let conn = w.conn();
    let rows = sqlx::query(&format!(
        "SELECT {cols}, s.target_id AS target_id FROM connections c JOIN sessions s ON s.id = c.session_id \
         WHERE c.worker_id = $1 AND c.state = 'open' ORDER BY c.opened_at, c.id",
        cols = COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(worker_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut closed = Vec::new();
    for row in &rows {
        let mut record = from_row(row)?;
        if keep.contains(&record.session_id) {
            continue;
        }
        let done = sqlx::query(
            "UPDATE connections SET state = 'lost', closed_at = $2, close_reason = $3 \
             WHERE id = $1 AND state = 'open'",
        )
        .bind(&record.id)
        .bind(now)
        .bind(EndReason::WorkerLost.as_str())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            record.state = "lost".into();
            record.closed_at = Some(now);
            record.close_reason = Some(EndReason::WorkerLost);
            closed.push((record, row.try_get("target_id")?));
        }
    }
    Ok(closed)
}

pub(crate) async fn connections(
    conn: &mut AnyConnection,
    session_id: &str,
) -> Result<Vec<ConnectionRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM connections WHERE session_id = $1 ORDER BY opened_at, id"
    ))
    .bind(session_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// How many connections a session has had (open or closed).
pub(crate) async fn count(conn: &mut AnyConnection, session_id: &str) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM connections WHERE session_id = $1")
        .bind(session_id)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get("n")?)
}

pub(crate) async fn open_connections(conn: &mut AnyConnection, session_id: &str) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM connections WHERE session_id = $1 AND state = 'open'",
    )
    .bind(session_id)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("n")?)
}
