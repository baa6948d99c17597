//! The workers that may carry a new session and their live-session counts, read from the
//! store at most every 250 ms: under load, authorize-session would otherwise read the same
//! list for every request. A worker is called live when it was heard from within three
//! heartbeats (plus 2 s), so a quarter of a second of staleness changes nothing; deleting a
//! worker on this controller clears the list. Each session this controller gives a worker
//! counts at once ([`LiveWorkers::assigned`]), so a burst within those 250 ms spreads over the
//! workers instead of following the count read before it (`plan::choose_worker`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::sessions as session_rows;
use crate::store::workers::{self as rows, WorkerRecord};
use crate::store::{Store, StoreError};

const FRESH_FOR: Duration = Duration::from_millis(250);

/// The list, the live sessions per worker id, and when they were read.
struct Snapshot {
    at: Instant,
    workers: Arc<Vec<WorkerRecord>>,
    live_sessions: HashMap<String, i64>,
}

#[derive(Clone, Default)]
pub(crate) struct LiveWorkers {
    cached: Arc<Mutex<Option<Snapshot>>>,
}

impl LiveWorkers {
    /// Workers heard from at or after `heard_after` (unix seconds), newest first, each with
    /// its live sessions (not expired at `now`, unix seconds).
    pub(crate) async fn get(
        &self,
        store: &Store,
        heard_after: i64,
        now: i64,
    ) -> Result<Vec<(WorkerRecord, i64)>, StoreError> {
        if let Some(snapshot) = self.slot().as_ref() {
            if snapshot.at.elapsed() < FRESH_FOR {
                return Ok(snapshot.with_counts());
            }
        }
        let snapshot = {
            let mut conn = store.conn().await?;
            let workers = Arc::new(rows::live(&mut conn, heard_after).await?);
            let live_sessions = session_rows::live_per_worker(&mut conn, now)
                .await?
                .into_iter()
                .collect();
            Snapshot {
                at: Instant::now(),
                workers,
                live_sessions,
            }
        };
        let listed = snapshot.with_counts();
        *self.slot() = Some(snapshot);
        Ok(listed)
    }

    /// Counts a session just given to `worker_id` until the next read of the store.
    pub(crate) fn assigned(&self, worker_id: &str) {
        if let Some(snapshot) = self.slot().as_mut() {
            *snapshot
                .live_sessions
                .entry(worker_id.to_owned())
                .or_default() += 1;
        }
    }

    /// Forgets the list (a worker was deleted).
    pub(crate) fn clear(&self) {
        *self.slot() = None;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Snapshot {
    fn with_counts(&self) -> Vec<(WorkerRecord, i64)> {
        self.workers
            .iter()
            .map(|w| {
                let live = self.live_sessions.get(&w.id).copied().unwrap_or(0);
                (w.clone(), live)
            })
            .collect()
    }
}
