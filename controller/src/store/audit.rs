//! The audit tables: `audit_events` (the chain), `audit_head` (its locked head row) and
//! `audit_sinks` (one shipping cursor per external sink).

use sqlx::{AnyConnection, Row as _};

use super::{Result, StoreError};
use crate::audit::chain::IndexColumns;

/// The newest event of the chain (sequence 0 and the genesis hash when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeadRow {
    pub sequence: u64,
    pub hash: String,
}

/// Reads the head and, on PostgreSQL, locks its row until the transaction ends, so that
/// concurrent writers on every controller take sequence numbers one after the other. SQLite
/// serialises writers already (one writer connection per controller).
pub(crate) async fn lock_head(conn: &mut AnyConnection) -> Result<HeadRow> {
    let sql = if conn.backend_name() == "PostgreSQL" {
        "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
    } else {
        // SQLite: take the write lock before reading the head (see `Store::begin_write`).
        take_sqlite_write_lock(conn).await?;
        "SELECT seq, hash FROM audit_head WHERE id = 1"
    };
    let row = sqlx::query(sql)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
    head_from(&row)
}

/// SQLite: takes the database's write lock for the rest of the transaction with a write
/// that changes nothing (a read first would pin the transaction to a snapshot; see
/// `Store::begin_write`).
pub(crate) async fn take_sqlite_write_lock(conn: &mut AnyConnection) -> Result<()> {
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Reads the head without locking.
pub(crate) async fn head(conn: &mut AnyConnection) -> Result<HeadRow> {
    let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
    head_from(&row)
}

fn head_from(row: &sqlx::any::AnyRow) -> Result<HeadRow> {
    let seq: i64 = row.try_get("seq")?;
    Ok(HeadRow {
        sequence: u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("audit_head.seq is {seq}")))?,
        hash: row.try_get("hash")?,
    })
}

/// One new event: its index columns (derived from the sealed body by
/// [`IndexColumns::of`], so they cannot disagree with it) and the body as JSON.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub columns: IndexColumns,
    pub body: String,
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const EVENT_COLUMNS: usize = 11;

/// Events per INSERT statement: 11 parameters each stays far below PostgreSQL's 65,535 and
/// SQLite's 32,766 bound parameters.
const EVENTS_PER_STATEMENT: usize = 500;

/// Inserts `events` with one statement per 500 (a group commit writes a batch's events at once).
pub(crate) async fn insert_many(conn: &mut AnyConnection, events: &[NewEvent]) -> Result<()> {
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        insert_chunk(conn, chunk).await?;
    }
    Ok(())
}

async fn insert_chunk(conn: &mut AnyConnection, events: &[NewEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO audit_events (seq, id, time, type, actor, username, session_id, target_id, \
         decision, hash, body) VALUES ",
    );
    for i in 0..events.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=EVENT_COLUMNS)
            .map(|c| format!("${}", i * EVENT_COLUMNS + c))
            .collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    let mut query = sqlx::query(&sql);
    for e in events {
        let c = &e.columns;
        query = query
            .bind(to_i64(c.seq))
            .bind(c.id.as_str())
            .bind(c.time)
            .bind(c.kind.as_str())
            .bind(c.actor.as_deref())
            .bind(c.username.as_deref())
            .bind(c.session_id.as_deref())
            .bind(c.target_id.as_deref())
            .bind(c.decision.as_deref())
            .bind(c.hash.as_deref())
            .bind(e.body.as_str());
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

pub(crate) async fn advance_head(
    conn: &mut AnyConnection,
    sequence: u64,
    hash: &str,
) -> Result<()> {
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(to_i64(sequence))
        .bind(hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Filters of `GET /v1/audit`; empty strings and `None` match everything.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    pub before: Option<u64>,
    pub session: Option<String>,
    /// A user id or user name.
    pub user: Option<String>,
    pub target: Option<String>,
    pub kind: Option<String>,
    pub decision: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Filter {
    /// Whether an event with these columns passes the filter: the store's query applies it
    /// to the stored columns, `GET /v1/audit` again to the columns of the signed body.
    pub(crate) fn matches(&self, c: &IndexColumns) -> bool {
        let is = |want: &Option<String>, have: Option<&str>| {
            want.as_deref()
                .is_none_or(|w| w.is_empty() || have == Some(w))
        };
        let user = self.user.as_deref().unwrap_or_default();
        self.before.is_none_or(|b| c.seq < b)
            && is(&self.session, c.session_id.as_deref())
            && (user.is_empty()
                || c.actor.as_deref() == Some(user)
                || c.username.as_deref() == Some(user))
            && is(&self.target, c.target_id.as_deref())
            && is(&self.kind, Some(c.kind.as_str()))
            && is(&self.decision, c.decision.as_deref())
            && self.since.is_none_or(|t| c.time >= t)
            && self.until.is_none_or(|t| c.time <= t)
    }
}

/// A stored event: the columns kept beside it and its body as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub columns: IndexColumns,
    pub body: String,
}

const STORED_COLUMNS: &str =
    "seq, id, time, type, actor, username, session_id, target_id, decision, hash, body";

fn stored(row: &sqlx::any::AnyRow) -> Result<StoredEvent> {
    let seq: i64 = row.try_get("seq")?;
    Ok(StoredEvent {
        columns: IndexColumns {
            seq: u64::try_from(seq).unwrap_or(0),
            id: row.try_get("id")?,
            time: row.try_get("time")?,
            kind: row.try_get("type")?,
            actor: row.try_get("actor")?,
            username: row.try_get("username")?,
            session_id: row.try_get("session_id")?,
            target_id: row.try_get("target_id")?,
            decision: row.try_get("decision")?,
            hash: row.try_get("hash")?,
        },
        body: row.try_get("body")?,
    })
}

/// Events whose stored columns match `filter`, newest first: a walk down the primary key
/// from `filter.before` (keyset paging), so a page costs the same at any depth of the log.
/// The time bounds are written `+time` so that no database answers them from the `time`
/// index and then sorts every event in the range by `seq` (SQLite did, for the unbounded
/// range of a page without `since`/`until`: 0.3 s with 100,000 events); events are stored in
/// time order, so the walk meets the range's newest first.
pub(crate) async fn list(
    conn: &mut AnyConnection,
    filter: &Filter,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let sql = list_sql();
    let rows = sqlx::query(&sql)
        .bind(filter.before.map_or(i64::MAX, to_i64))
        .bind(filter.session.clone().unwrap_or_default())
        .bind(filter.user.clone().unwrap_or_default())
        .bind(filter.target.clone().unwrap_or_default())
        .bind(filter.kind.clone().unwrap_or_default())
        .bind(filter.decision.clone().unwrap_or_default())
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(stored).collect()
}

fn list_sql() -> String {
    format!(
        "SELECT {STORED_COLUMNS} FROM audit_events WHERE seq < $1 \
         AND ($2 = '' OR session_id = $2) \
         AND ($3 = '' OR actor = $3 OR username = $3) \
         AND ($4 = '' OR target_id = $4) \
         AND ($5 = '' OR type = $5) \
         AND ($6 = '' OR decision = $6) \
         AND +time >= $7 AND +time <= $8 \
         ORDER BY seq DESC LIMIT $9"
    )
}

/// Events after `after`, oldest first, with their columns: the export, which `audit verify`
/// reads to check the columns too.
pub(crate) async fn after_stored(
    conn: &mut AnyConnection,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let sql =
        format!("SELECT {STORED_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(to_i64(after))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(stored).collect()
}

/// Events after `after`, oldest first: the sinks read the chain with this.
pub(crate) async fn after(
    conn: &mut AnyConnection,
    after: u64,
    limit: u32,
) -> Result<Vec<(u64, String)>> {
    let rows =
        sqlx::query("SELECT seq, body FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(to_i64(after))
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(seq_body).collect()
}

fn seq_body(row: &sqlx::any::AnyRow) -> Result<(u64, String)> {
    let seq: i64 = row.try_get("seq")?;
    let body: String = row.try_get("body")?;
    Ok((u64::try_from(seq).unwrap_or(0), body))
}

/// A sink's shipping state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SinkCursor {
    /// The last event delivered.
    pub cursor: u64,
    /// The sequence of the last checkpoint sent, and when (unix seconds).
    pub checkpoint_seq: u64,
    pub checkpoint_at: i64,
}

/// The cursor of `sink`, created at 0 (ship everything) the first time.
pub(crate) async fn sink_cursor(
    conn: &mut AnyConnection,
    sink: &str,
    now: i64,
) -> Result<SinkCursor> {
    sqlx::query(
        "INSERT INTO audit_sinks (name, cursor, checkpoint_seq, checkpoint_at, updated_at) \
         VALUES ($1, 0, 0, $2, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(sink)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT cursor, checkpoint_seq, checkpoint_at FROM audit_sinks WHERE name = $1",
    )
    .bind(sink)
    .fetch_one(&mut *conn)
    .await?;
    let cursor: i64 = row.try_get("cursor")?;
    let checkpoint_seq: i64 = row.try_get("checkpoint_seq")?;
    Ok(SinkCursor {
        cursor: u64::try_from(cursor).unwrap_or(0),
        checkpoint_seq: u64::try_from(checkpoint_seq).unwrap_or(0),
        checkpoint_at: row.try_get("checkpoint_at")?,
    })
}

/// Commits a sink's progress after the sink accepted the events (and checkpoint).
pub(crate) async fn save_sink_cursor(
    conn: &mut AnyConnection,
    sink: &str,
    state: &SinkCursor,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE audit_sinks SET cursor = $2, checkpoint_seq = $3, checkpoint_at = $4, \
         updated_at = $5 WHERE name = $1",
    )
    .bind(sink)
    .bind(to_i64(state.cursor))
    .bind(to_i64(state.checkpoint_seq))
    .bind(state.checkpoint_at)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The hash of event `seq`, if it is chained.
pub(crate) async fn hash_of(conn: &mut AnyConnection, seq: u64) -> Result<Option<String>> {
    let row = sqlx::query("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(to_i64(seq))
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(row) => row.try_get("hash")?,
        None => None,
    })
}

/// How many events each sink's cursor is behind the newest event, for `/metrics`.
pub(crate) async fn sink_lags(store: &super::Store) -> Result<Vec<(String, i64)>> {
    let mut conn = store.conn().await?;
    let rows = sqlx::query(
        "SELECT name, (SELECT COALESCE(MAX(seq), 0) FROM audit_events) - cursor AS lag \
         FROM audit_sinks",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>("name")?,
                row.try_get::<i64, _>("lag")?,
            ))
        })
        .collect()
}

/// Test-only: replaces the stored body of event `seq` with `body`, as someone with write
/// access to the database would, to show that the check finds it.
#[cfg(test)]
pub(crate) async fn tamper(conn: &mut AnyConnection, seq: u64, body: &str) -> Result<()> {
    let done = sqlx::query("UPDATE audit_events SET body = $2 WHERE seq = $1")
        .bind(to_i64(seq))
        .bind(body)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Corrupt(format!(
            "no audit event {seq} to tamper with"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Row as _;

    #[tokio::test]
    async fn a_search_page_walks_the_primary_key_and_sorts_nothing() {
        let backends = super::super::suite_tests::backends().await;
        let sqlite = backends.iter().find(|b| b.name == "sqlite").unwrap();
        let mut conn = sqlite.store.conn().await.unwrap();
        let plan = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", super::list_sql()))
            .bind(i64::MAX)
            .bind("")
            .bind("")
            .bind("")
            .bind("")
            .bind("")
            .bind(i64::MIN)
            .bind(i64::MAX)
            .bind(51i64)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let steps: Vec<String> = plan.iter().map(|r| r.try_get("detail").unwrap()).collect();
        assert!(
            steps.iter().any(|s| s.contains("INTEGER PRIMARY KEY")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{steps:?}"
        );
    }
}
