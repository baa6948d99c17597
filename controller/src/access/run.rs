//! Runs (`portcullis run`): the run process starts its command under an approved request
//! with a key of its own, keeps the run alive, and finishes it; finishing ends the request
//! and its sessions. Only the requester's own token drives its run.

use portcullis_proto::access::{FinishRun, RequestState, StartRun};

use super::ending::{self, RunEnd};
use super::error::AccessError;
use super::requests;
use crate::api::extract::Principal;
use crate::audit::{event, AuditEvent, Event};
use crate::clock::to_i64;
use crate::state::AppState;
use crate::store::access_requests::{self as rows, AccessRecord};

/// The longest keepalive interval a run may promise: a lost run is noticed within three.
pub(crate) const MAX_KEEPALIVE_SECS: u64 = 300;

/// The request `id` if `principal` is its requester and it carries a run.
async fn own_run(
    state: &AppState,
    principal: &Principal,
    id: &str,
    what: &'static str,
) -> Result<AccessRecord, AccessError> {
    let record = requests::get(state, id).await?;
    if record.user_id != principal.user.id {
        return Err(AccessError::NotAllowed {
            message: format!("only the requester's own `portcullis run` drives the run of {id}"),
            actor: Box::new(principal.actor()),
            permission: what,
        });
    }
    if record.run.is_none() {
        return Err(AccessError::Conflict(format!(
            "request {id} was not made by `portcullis run` (it has no command)"
        )));
    }
    Ok(record)
}

/// `POST /v1/requests/{id}/run/start`: once, on an approved request, with the run's key.
pub(crate) async fn start(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: &StartRun,
) -> Result<AccessRecord, AccessError> {
    let record = own_run(state, principal, id, "access:run").await?;
    let spki =
        portcullis_proto::keys::unb64(&body.run_public_key).map_err(|_| AccessError::Field {
            field: "run_public_key",
            message: "must be base64url DER SubjectPublicKeyInfo".into(),
        })?;
    portcullis_proto::keys::ed25519_from_spki(&spki).map_err(|e| AccessError::Field {
        field: "run_public_key",
        message: e.to_string(),
    })?;
    if body.keepalive_secs == 0 || body.keepalive_secs > MAX_KEEPALIVE_SECS {
        return Err(AccessError::Field {
            field: "keepalive_secs",
            message: format!("must be 1 to {MAX_KEEPALIVE_SECS}"),
        });
    }
    let now = to_i64(state.clock.unix_secs());
    if record.state != RequestState::Approved || record.expires_at <= now {
        return Err(AccessError::Conflict(format!(
            "request {id} is {}: a run starts only under an approved request",
            record.state
        )));
    }
    let mut tx = state.begin_audited().await?;
    let keepalive = to_i64(body.keepalive_secs);
    if !rows::start_run(tx.write(), id, &body.run_public_key, keepalive, now).await? {
        return Err(AccessError::Conflict(format!(
            "the run of request {id} has started already (a run starts once)"
        )));
    }
    let command = record
        .run
        .as_ref()
        .map(|r| r.command.clone())
        .unwrap_or_default();
    tx.commit(AuditEvent::new(
        principal.actor(),
        Event::RunStarted {
            details: event::RunStarted {
                request_id: id.to_owned(),
                command,
                targets: record.targets.clone(),
                run_key_fingerprint: portcullis_proto::keys::spki_fingerprint(&spki),
                keepalive_secs: body.keepalive_secs,
            },
        },
    ))
    .await?;
    requests::get(state, id).await
}

/// `POST /v1/requests/{id}/run/keepalive`.
pub(crate) async fn keepalive(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(), AccessError> {
    let record = own_run(state, principal, id, "access:run").await?;
    let now = to_i64(state.clock.unix_secs());
    let mut conn = state.store.conn().await?;
    if !rows::keepalive(&mut conn, id, now).await? {
        return Err(AccessError::Conflict(format!(
            "the run of request {id} is not running (the request is {}): stop the command",
            record.state
        )));
    }
    Ok(())
}

/// `POST /v1/requests/{id}/run/finish`: the command ended; the request ends (revoked) with
/// every session under it.
pub(crate) async fn finish(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: &FinishRun,
) -> Result<AccessRecord, AccessError> {
    let record = own_run(state, principal, id, "access:run").await?;
    let running = record
        .run
        .as_ref()
        .is_some_and(|r| r.started_at.is_some() && r.finished_at.is_none());
    if !running || record.state != RequestState::Approved {
        return Err(AccessError::Conflict(format!(
            "the run of request {id} is not running (the request is {})",
            record.state
        )));
    }
    let end = RunEnd {
        outcome: if body.exit_status.is_some() {
            "exited"
        } else {
            "signaled"
        },
        exit_status: body.exit_status,
        signal: body.signal,
    };
    let reason = Some("the run finished".to_owned());
    let by = Some(principal.user.id.as_str());
    let closed = ending::close(
        state,
        &record,
        RequestState::Revoked,
        principal.actor(),
        by,
        reason,
        Some(end),
    )
    .await?;
    if closed.is_none() {
        return Err(AccessError::Conflict(format!(
            "request {id} ended meanwhile; its run is over"
        )));
    }
    requests::get(state, id).await
}
