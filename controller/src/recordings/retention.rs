//! The retention, the only thing that deletes recordings: whole recordings of ended
//! sessions, oldest first, when they are older than `recordings.retention` (reason `age`) or
//! while all recordings hold more than `recordings.max_total_bytes` body bytes (reason
//! `size`). Recordings of live sessions are never deleted, whatever their size. Each
//! deletion commits its `recording_deleted` event first, then deletes the rows (in the
//! recordings store, another database): a deletion is never unaudited; one that fails after
//! its event is retried, and audited again, at the next sweep.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::recordings::RecordingRow;
use crate::store::StoreError;

/// Why the retention deletes a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Age,
    Size,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Age => "age",
            Reason::Size => "size",
        }
    }
}

/// The retention's limits (`[recordings]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_age: Option<Duration>,
    pub max_total_bytes: Option<u64>,
}

/// Which of `oldest_first` (oldest first, with whether its session has ended) to delete at
/// `now`, given the body bytes all recordings hold: past their age first, then the oldest
/// until the total fits. Pure.
pub(crate) fn doomed(
    oldest_first: &[(RecordingRow, bool)],
    total_bytes: u64,
    now: i64,
    limits: Limits,
) -> Vec<(&RecordingRow, Reason)> {
    let mut out = Vec::new();
    let mut total = total_bytes;
    let cutoff = limits
        .max_age
        .map(|age| now.saturating_sub(clock::to_i64(age.as_secs())));
    for (row, ended) in oldest_first {
        if !ended {
            continue;
        }
        let reason = if cutoff.is_some_and(|cutoff| row.last_at < cutoff) {
            Reason::Age
        } else if limits.max_total_bytes.is_some_and(|max| total > max) {
            Reason::Size
        } else {
            continue;
        };
        total = total.saturating_sub(row.bytes);
        out.push((row, reason));
    }
    out
}

/// Runs the retention and the backstop seal every `recordings.sweep_interval` until
/// `shutdown`, on one controller at a time.
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.recordings.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = sweep_once(&state).await {
            tracing::warn!(error = %err, "recordings sweep failed; retrying at the next tick");
        }
    }
}

/// One sweep: seals the heads that are due, then deletes what the retention says. Returns
/// how many recordings it deleted.
pub(crate) async fn sweep_once(state: &AppState) -> Result<usize, StoreError> {
    let Some(_lease) = state.store.try_lease("recordings").await? else {
        return Ok(0);
    };
    super::seal::sweep(state).await?;
    let limits = Limits {
        max_age: state.config.recordings.retention,
        max_total_bytes: state.config.recordings.max_total_bytes,
    };
    if limits.max_age.is_none() && limits.max_total_bytes.is_none() {
        return Ok(0);
    }
    let now = clock::to_i64(state.clock.unix_secs());
    let total = state.recordings.total_bytes().await?;
    let rows = state.recordings.oldest_first(10_000).await?;
    let mut candidates = Vec::with_capacity(rows.len());
    {
        let mut conn = state.store.conn().await?;
        for row in rows {
            let ended = crate::store::sessions::get(&mut conn, &row.session_id)
                .await?
                .is_none_or(|s| !s.state.is_live());
            candidates.push((row, ended));
        }
    }
    let mut deleted = 0;
    for (row, reason) in doomed(&candidates, total, now, limits) {
        let event = Event::RecordingDeleted {
            reason: reason.as_str().to_owned(),
            details: event::RecordingDeleted {
                recording_id: row.id.clone(),
                chunks: row.chunks,
                bytes: row.bytes,
            },
        };
        state
            .audit_alone(AuditEvent::new(Actor::system(), event).session(&row.session_id))
            .await?;
        if state.recordings.delete(&row.id).await? {
            deleted += 1;
        }
    }
    if deleted > 0 {
        tracing::info!(recordings = deleted, "retention deleted recordings");
    }
    Ok(deleted)
}
