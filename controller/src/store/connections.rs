//! Connections of sessions, as workers report them: the first admitted online
//! ([`admit_first`], which checks the session and makes it active), later ones the worker
//! opened by itself, and closes with their byte counts. Opening a connection counts it on its
//! session in the same transaction. Opens and closes are idempotent: a worker resends events
//! until they are acknowledged.

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

/// Admits a session's first connection on its worker: the session must be live, on that
/// worker, unexpired and under its connection limit. Records the connection. True if admitted.
pub(crate) async fn admit_first(
    w: Write<'_>,
    session_id: &str,
    worker_id: &str,
    connection_id: &str,
    client_addr: &str,
    now: i64,
) -> Result<bool> {
    let conn = w.conn();
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
        return Ok(false);
    }
    insert_connection(conn, session_id, worker_id, connection_id, client_addr, now).await?;
    Ok(true)
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

/// Records a connection's close with its byte counts; idempotent. True if it was open.
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
         close_reason = $5 WHERE id = $1 AND state = 'open'",
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
