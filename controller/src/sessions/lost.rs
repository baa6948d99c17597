//! When a worker counts as lost, and what a lost worker leaves behind.
//!
//! A worker is lost when no controller has heard from it for `workers.lost_after`. The store
//! keeps the last time any controller heard it, but only while the store can be written: a
//! controller that has just started, or has just reached its store again after losing it,
//! reads times that stopped moving while nobody could write them (every controller down, or
//! the database away). So the count starts at the later of the worker's last-seen time and
//! the moment this controller's store became reachable ([`StoreWatch`]): every live worker
//! gets a full `lost_after` to link again before its sessions end as `worker_lost`, and
//! `worker_lost` means the worker was lost, not the control plane. [`is_lost`] is that
//! decision, pure.
//!
//! A worker that dies leaves connection rows open (their close never came). They are closed
//! when the worker is lost, or when it links again without their sessions (it restarted), in
//! state `lost` with reason `worker_lost` and the last byte counts the store has: flagged as
//! such, since the worker never reported the real ones. A real close that comes later (the
//! worker's spool survived a restart) replaces them ([`close_left_open`]).

use std::sync::Mutex;

use portcullis_proto::link::EndReason;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::connections as connection_rows;
use crate::store::workers::{self, WorkerRecord};
use crate::store::StoreError;

/// Whether a worker last heard at `last_seen` (unix seconds; `None`: never linked) is lost at
/// `now`, for a controller whose store has been reachable since `store_up_since` (`None`: not
/// reachable now): silent for longer than `lost_after` seconds, and the store reachable for
/// longer than that too, and at least [`RELINK_GRACE_SECS`].
pub(crate) fn is_lost(
    last_seen: Option<i64>,
    store_up_since: Option<i64>,
    now: i64,
    lost_after: i64,
) -> bool {
    match (last_seen, store_up_since) {
        (Some(seen), Some(up)) => {
            seen.saturating_add(lost_after) < now
                && up.saturating_add(lost_after.max(RELINK_GRACE_SECS)) < now
        }
        _ => false,
    }
}

/// The least time a worker gets to link again once this controller's store is reachable
/// (after a start, or an outage of the store), whatever `lost_after` says: two of a worker's
/// longest waits between dialling rounds (5 s, `worker/src/link/redial.rs`). A shorter
/// `lost_after` would end the sessions of a healthy worker that happened to be waiting out
/// its back-off when the controller came up.
pub(crate) const RELINK_GRACE_SECS: i64 = 10;

/// The earliest last-heard time (unix seconds) of a worker that may be given a new session at
/// `now`: heard within three heartbeats plus 2 s, and never one that `workers list` already
/// calls lost (`lost_after` may be shorter than that window). Sessions placed on a silent
/// worker would fail at the client's first connection.
pub(crate) fn placeable_since(now: i64, heartbeat_interval_secs: u64, lost_after: i64) -> i64 {
    let window = clock::to_i64(heartbeat_interval_secs.max(1).saturating_mul(3)).saturating_add(2);
    now.saturating_sub(window.min(lost_after))
}

/// What `workers list` says of a worker at `now`: `deleted`; `stopped` once it said it
/// drained and exited; `lost` when not heard for `lost_after` seconds (or never linked, once
/// enrolled that long); `draining` while it drains; else `active`.
pub(crate) fn listed_state(worker: &WorkerRecord, now: i64, lost_after: i64) -> &'static str {
    if worker.state != workers::ACTIVE {
        return "deleted";
    }
    if worker.stopped_at.is_some() {
        return "stopped";
    }
    let heard = worker.last_seen_at.unwrap_or(worker.created_at);
    if heard.saturating_add(lost_after) < now {
        return "lost";
    }
    if worker.draining_since.is_some() {
        return "draining";
    }
    "active"
}

/// Since when this controller's store has been reachable without a break it noticed: from
/// the controller's start, and again from the first success after a failure.
#[derive(Debug)]
pub(crate) struct StoreWatch {
    up_since: Mutex<Option<i64>>,
}

impl StoreWatch {
    /// A watch for a controller that reached its store at `now` (it started).
    pub(crate) fn new(now: i64) -> StoreWatch {
        StoreWatch {
            up_since: Mutex::new(Some(now)),
        }
    }

    /// The store answered at `now`.
    pub(crate) fn reached(&self, now: i64) {
        let mut up = self.slot();
        if up.is_none() {
            *up = Some(now);
        }
    }

    /// The store could not be reached (only [`StoreError::Unavailable`] counts: a failing
    /// query says nothing about the times the store keeps).
    pub(crate) fn failed(&self, error: &StoreError) {
        if matches!(error, StoreError::Unavailable(_)) {
            *self.slot() = None;
        }
    }

    /// Since when the store has been reachable; `None` while it is not.
    pub(crate) fn up_since(&self) -> Option<i64> {
        *self.slot()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.up_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Closes the connections `worker_id` left open outside the sessions it still holds (`keep`):
/// state `lost`, reason `worker_lost`, the last byte counts known, each with its
/// `connection_closed` event, in one transaction. Returns how many it closed.
pub(crate) async fn close_left_open(
    state: &AppState,
    worker_id: &str,
    keep: &[String],
) -> Result<usize, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    let closed = connection_rows::close_lost(tx.write(), worker_id, keep, now).await?;
    if closed.is_empty() {
        return Ok(0);
    }
    for (connection, target_id) in &closed {
        let audited = Event::ConnectionClosed {
            reason: EndReason::WorkerLost.to_string(),
            details: event::ConnectionClosed {
                connection_id: connection.id.clone(),
                bytes_up: clock::to_u64(connection.bytes_up),
                bytes_down: clock::to_u64(connection.bytes_down),
            },
        };
        tx.record(
            AuditEvent::new(Actor::system(), audited)
                .session(&connection.session_id)
                .target(target_id),
        );
    }
    tx.commit_recorded().await?;
    tracing::info!(worker.id = %portcullis_proto::text::escaped(worker_id), connections = closed.len(), "closed the connections a lost worker left open, with the last byte counts known");
    Ok(closed.len())
}

#[cfg(test)]
mod tests;
