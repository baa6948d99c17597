//! Sealing recording heads into the audit chain: `recording_finished` once the final chunk is
//! stored, `recording_checkpoint` while a recording grows (every
//! `recordings.checkpoint_chunks` chunks or `recordings.checkpoint_interval` after the last
//! seal, whichever comes first) and, with `complete: false`, for the stored head of a
//! recording whose session ended without its final chunk (a killed worker): that recording
//! then verifies "up to chunk N, incomplete" against the audit log.
//!
//! A seal commits its event through the audited path first, then notes in the recordings
//! store which head it sealed. Should that note fail, the head is sealed again later: a
//! repeated seal of the same head is harmless, a missing one is not.

use std::time::Duration;

use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::recordings::RecordingRow;
use crate::store::StoreError;

/// Which seal a recording's head is due for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// The final chunk is stored.
    Finished,
    /// A checkpoint of a recording that may still grow (or never will: its session ended).
    Checkpoint,
}

/// When to seal a growing recording (`[recordings]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cadence {
    pub chunks: u64,
    pub interval: Duration,
}

/// The seal `row`'s head is due for at `now`, if any: none while its newest head is sealed;
/// `Finished` once its final chunk is stored; a checkpoint when `session_ended`, or when
/// `cadence.chunks` chunks or `cadence.interval` have passed since the last seal (since the
/// first chunk before any).
pub(crate) fn due(
    row: &RecordingRow,
    session_ended: bool,
    now: i64,
    cadence: Cadence,
) -> Option<Due> {
    if row.chunks == 0 || row.sealed_chunks >= row.chunks {
        return None;
    }
    if row.finished {
        return Some(Due::Finished);
    }
    let since = now.saturating_sub(row.sealed_at.unwrap_or(row.first_at));
    let interval = clock::to_i64(cadence.interval.as_secs());
    (session_ended || row.chunks - row.sealed_chunks >= cadence.chunks || since >= interval)
        .then_some(Due::Checkpoint)
}

/// The event that seals `row`'s head.
pub(crate) fn event(row: &RecordingRow, due: Due) -> AuditEvent {
    let details = event::RecordingSealed {
        recording_id: row.id.clone(),
        connection_id: row.connection_id.clone(),
        chunks: row.chunks,
        head_hash: row.head_hash.clone(),
        bytes: row.bytes,
        complete: due == Due::Finished,
    };
    let sealed = match due {
        Due::Finished => Event::RecordingFinished { details },
        Due::Checkpoint => Event::RecordingCheckpoint { details },
    };
    AuditEvent::new(Actor::system(), sealed).session(&row.session_id)
}

fn cadence(state: &AppState) -> Cadence {
    Cadence {
        chunks: state.config.recordings.checkpoint_chunks,
        interval: state.config.recordings.checkpoint_interval,
    }
}

/// Seals `row`'s head if it is due (after chunks were stored).
pub(crate) async fn if_due(
    state: &AppState,
    row: &RecordingRow,
    session_ended: bool,
) -> Result<bool, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let Some(due) = due(row, session_ended, now, cadence(state)) else {
        return Ok(false);
    };
    state.audit_alone(event(row, due)).await?;
    state
        .recordings
        .mark_sealed(&row.id, row.chunks, now)
        .await?;
    Ok(true)
}

/// In the transaction that ends `session_id`: a `recording_checkpoint` (`complete: false`)
/// for each of its recordings with unsealed chunks and no final chunk. Returns the heads
/// sealed, to note after the commit ([`noted`]). The recordings store is read outside the
/// transaction; when it cannot be, the session still ends and the sweeper seals later.
pub(crate) async fn at_session_end(
    tx: &mut AuditedTx,
    state: &AppState,
    session_id: &str,
) -> Vec<(String, u64)> {
    let rows = match state.recordings.of_session(session_id).await {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!(error = %err, session.id = session_id, "cannot read the session's recordings to seal them at its end; the sweeper will");
            return Vec::new();
        }
    };
    let now = clock::to_i64(state.clock.unix_secs());
    let mut sealed = Vec::new();
    for row in rows {
        if let Some(due) = due(&row, true, now, cadence(state)) {
            tx.record(event(&row, due));
            sealed.push((row.id, row.chunks));
        }
    }
    sealed
}

/// Notes the heads a committed transaction sealed (see [`at_session_end`]).
pub(crate) async fn noted(state: &AppState, sealed: &[(String, u64)]) {
    let now = clock::to_i64(state.clock.unix_secs());
    for (id, chunks) in sealed {
        if let Err(err) = state.recordings.mark_sealed(id, *chunks, now).await {
            tracing::warn!(error = %err, recording.id = %id, "could not note a sealed recording head; it will be sealed again");
        }
    }
}

/// The sweeper's backstop: seals every head that is due (its session ended, its interval
/// passed, or a seal after ingest failed).
pub(crate) async fn sweep(state: &AppState) -> Result<usize, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut sealed = 0;
    for row in state.recordings.unsealed(500).await? {
        let ended = {
            let mut conn = state.store.conn().await?;
            crate::store::sessions::get(&mut conn, &row.session_id)
                .await?
                .is_none_or(|s| !s.state.is_live())
        };
        if let Some(due) = due(&row, ended, now, cadence(state)) {
            state.audit_alone(event(&row, due)).await?;
            state
                .recordings
                .mark_sealed(&row.id, row.chunks, now)
                .await?;
            sealed += 1;
        }
    }
    Ok(sealed)
}
