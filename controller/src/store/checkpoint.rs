//! SQLite's WAL is copied back into the database file by a background task on a connection
//! of its own, not by whichever commit crosses SQLite's auto-checkpoint threshold: that commit
//! would wait for the copy and its flushes to disk (a stall of several milliseconds every few
//! dozen sessions, the whole tail of the new-session latency).
//!
//! A PASSIVE checkpoint never blocks the writer or readers; it copies what no reader still
//! needs, and the next write transaction starts the WAL over from the beginning once all of it
//! is copied. If this task cannot run, the WAL grows until it can; nothing is lost.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AnyPool, ConnectOptions as _, Connection as _, Row as _};

/// How often the WAL is copied back. At the authorize rate of one controller (under 1,000
/// sessions per second, a few pages each) the WAL stays within a few tens of megabytes.
const INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `pool` is closed.
pub(super) fn spawn(options: SqliteConnectOptions, pool: AnyPool) {
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if pool.is_closed() {
                if let Some(conn) = conn.take() {
                    let _ = conn.close().await;
                }
                return;
            }
            if conn.is_none() {
                match options.connect().await {
                    Ok(c) => conn = Some(c),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot open the SQLite checkpoint connection; the WAL grows until it can");
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut *c)
                .await
            {
                Ok(row) => {
                    let frames: i64 = row.try_get(1).unwrap_or(-1);
                    let copied: i64 = row.try_get(2).unwrap_or(-1);
                    tracing::trace!(frames, copied, "WAL checkpoint");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "SQLite WAL checkpoint failed; retrying");
                    conn = None;
                }
            }
        }
    });
}
