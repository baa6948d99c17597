//! The workers that may carry a new session, read from the store at most every 250 ms: under
//! load, authorize-session would otherwise read the same list for every request. A worker is
//! called live when it was heard from within three heartbeats (plus 2 s), so a quarter of a
//! second of staleness changes nothing; deleting a worker on this controller clears the list.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::workers::{self as rows, WorkerRecord};
use crate::store::{Store, StoreError};

const FRESH_FOR: Duration = Duration::from_millis(250);

/// The list and when it was read.
type Snapshot = Option<(Instant, Arc<Vec<WorkerRecord>>)>;

#[derive(Clone, Default)]
pub(crate) struct LiveWorkers {
    cached: Arc<Mutex<Snapshot>>,
}

impl LiveWorkers {
    /// Workers heard from at or after `heard_after` (unix seconds), newest first.
    pub(crate) async fn get(
        &self,
        store: &Store,
        heard_after: i64,
    ) -> Result<Arc<Vec<WorkerRecord>>, StoreError> {
        if let Some((at, list)) = self.slot().as_ref() {
            if at.elapsed() < FRESH_FOR {
                return Ok(list.clone());
            }
        }
        let list = {
            let mut conn = store.conn().await?;
            Arc::new(rows::live(&mut conn, heard_after).await?)
        };
        *self.slot() = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// Forgets the list (a worker was deleted).
    pub(crate) fn clear(&self) {
        *self.slot() = None;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
