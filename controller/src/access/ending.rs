//! Ending a request (revoked, expired, its run finished or lost): the request closed with
//! its run and events in one audited transaction, then every live session under it ended the
//! way a cancel ends one.

use portcullis_proto::access::RequestState;
use portcullis_proto::link::EndReason;

use super::error::AccessError;
use super::notify;
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock::to_i64;
use crate::state::AppState;
use crate::store::access_requests::{self as rows, AccessRecord};
use crate::store::StoreError;

/// What ending a run with its request records.
pub(crate) struct RunEnd {
    pub outcome: &'static str,
    pub exit_status: Option<i32>,
    pub signal: Option<i32>,
}

/// Ends open request `record` as `to` (revoked or expired), with its run when one is
/// running (`run`, or `revoked`/`expired` when none is given), commits that with its events,
/// then ends every live session under it. `None` when the request had changed meanwhile.
pub(crate) async fn close(
    state: &AppState,
    record: &AccessRecord,
    to: RequestState,
    actor: Actor,
    decided_by: Option<&str>,
    reason: Option<String>,
    run: Option<RunEnd>,
) -> Result<Option<Vec<String>>, AccessError> {
    let now = to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    let open = [RequestState::Pending, RequestState::Approved];
    let closed = rows::close(
        tx.write(),
        &record.id,
        &open,
        to,
        decided_by,
        reason.as_deref(),
    )
    .await?;
    if !closed {
        return Ok(None);
    }
    let live = rows::live_sessions(tx.read(), &record.id).await?;
    let running = record
        .run
        .as_ref()
        .is_some_and(|r| r.started_at.is_some() && r.finished_at.is_none());
    if running {
        let run = run.unwrap_or(RunEnd {
            outcome: match to {
                RequestState::Expired => "expired",
                _ => "revoked",
            },
            exit_status: None,
            signal: None,
        });
        let status = run.exit_status.map(i64::from);
        if rows::finish_run(tx.write(), &record.id, status, run.outcome, now).await? {
            let sessions = rows::sessions(tx.read(), &record.id).await?;
            tx.record(AuditEvent::new(
                actor.clone(),
                Event::RunFinished {
                    details: event::RunFinished {
                        request_id: record.id.clone(),
                        outcome: run.outcome.to_owned(),
                        exit_status: run.exit_status,
                        signal: run.signal,
                        sessions,
                    },
                },
            ));
        }
    }
    let details = event::AccessEnded {
        request_id: record.id.clone(),
        role: record.role.clone(),
        requester: record.user_id.clone(),
        was: record.state.as_str().to_owned(),
        sessions_ended: live.clone(),
    };
    let event = match to {
        RequestState::Expired => Event::AccessExpired { details },
        _ => Event::AccessRevoked { reason, details },
    };
    let event = AuditEvent::new(actor.clone(), event);
    tx.commit(event.clone()).await?;
    notify::send(state, &event);
    let end_reason = match to {
        RequestState::Expired => EndReason::Expired,
        _ => EndReason::Canceled,
    };
    end_sessions(state, &live, end_reason, actor).await?;
    Ok(Some(live))
}

/// Ends `sessions` (those of a request that ended) the way a cancel does: each committed
/// with its `session_terminated`, then its worker told and its credentials revoked.
pub(crate) async fn end_sessions(
    state: &AppState,
    sessions: &[String],
    reason: EndReason,
    actor: Actor,
) -> Result<(), StoreError> {
    for session in sessions {
        crate::sessions::lifecycle::end_session(state, session, reason, actor.clone()).await?;
    }
    Ok(())
}
