//! Ending sessions: in the store first (durable, audited), then on the worker.

use std::time::Duration;

use portcullis_proto::link::{EndReason, Request, SessionEnd};
use tracing::Instrument as _;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::sessions as rows;
use crate::store::StoreError;

/// Ends a session with `reason` unless it has already ended. Returns true if this call ended
/// it. The worker carrying it is told at once when it is linked to this controller; otherwise
/// it learns at its next heartbeat on whichever controller it is linked to.
pub async fn end_session(
    state: &AppState,
    session_id: &str,
    reason: EndReason,
    actor: Actor,
) -> Result<bool, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    let Some(session) = rows::get(tx.read(), session_id).await? else {
        return Ok(false);
    };
    if !rows::terminate(tx.write(), session_id, reason, now).await? {
        return Ok(false);
    }
    // Certificates of the session that are still valid go into the KRL.
    let revoked =
        crate::store::ssh_certificates::revoke_session(tx.write(), session_id, now).await?;
    // Its Vault credentials: the revocation is queued in this transaction, so it survives
    // any crash; it is attempted right after the commit and retried until Vault confirms.
    let vault_revocations =
        crate::store::vault_credentials::request_revocation(tx.read(), session_id, now).await?;
    crate::notify::session_ended(
        state.store.dialect(),
        tx.read(),
        session_id,
        &session.worker_id,
        reason,
    )
    .await?;
    let event = Event::SessionTerminated {
        reason: reason.to_string(),
        details: event::SessionTerminated {
            // Serials are random 64-bit numbers: always decimal strings (I-JSON, RFC 8785).
            ssh_certificates_revoked: revoked.iter().map(u64::to_string).collect(),
            vault_revocations_queued: vault_revocations.clone(),
        },
    };
    tx.commit(
        AuditEvent::new(actor, event)
            .session(session_id)
            .target(&session.target_id),
    )
    .await?;
    tracing::info!(session.id = session_id, %reason, "session terminated");
    if !vault_revocations.is_empty() {
        match &state.vault {
            Some(vault) => super::credentials::revoke_now(state.clone(), vault.clone(), vault_revocations),
            None => tracing::warn!(
                session.id = session_id,
                "the session has Vault credentials but the Vault backend is not configured; they stay queued"
            ),
        }
    }
    notify_worker(state, &session.worker_id, session_id, reason);
    Ok(true)
}

/// Tells a linked worker to end a session now (best effort: the heartbeat reconcile is the
/// durable path).
pub fn notify_worker(state: &AppState, worker_id: &str, session_id: &str, reason: EndReason) {
    let Some(link) = state.links.get(worker_id) else {
        return;
    };
    let end = SessionEnd {
        session_id: session_id.to_owned(),
        reason,
    };
    let span = tracing::info_span!(
        "end_session_push",
        session.id = session_id,
        worker.id = worker_id
    );
    tokio::spawn(
        async move {
            if let Err(err) = link.request(Request::EndSession(end), Duration::from_secs(5)).await {
                tracing::warn!(error = %err, "worker did not confirm the session end; the next heartbeat will");
            }
        }
        .instrument(span),
    );
}

/// Arms a timer that ends the session at its expiry (the sweeper is the backstop).
pub fn arm_expiry(state: &AppState, session_id: String, expires_at: u64) {
    let state = state.clone();
    let span = tracing::info_span!("session_expiry", session.id = %session_id);
    tokio::spawn(
        async move {
            let wait = expires_at.saturating_sub(state.clock.unix_secs());
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if let Err(err) =
                end_session(&state, &session_id, EndReason::Expired, Actor::system()).await
            {
                tracing::warn!(error = %err, "could not expire session; the sweeper will retry");
            }
        }
        .instrument(span),
    );
}
