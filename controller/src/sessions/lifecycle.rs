//! Ending sessions: [`end_session`] changes the store first (durable, audited, the Vault
//! revocations and the Proxmox token's deletion queued in the same transaction) and returns
//! what it [`Ended`]; then, after the commit, [`after_end`] tells the worker and starts the
//! revocations. Every end path
//! goes through it; the modules it calls (`notify`, `credentials`) never call back.

use std::time::Duration;

use portcullis_proto::link::EndReason;
use tracing::Instrument as _;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::sessions as rows;
use crate::store::StoreError;

/// What ending a session did, for the steps after its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    pub session_id: String,
    /// The worker carrying the session.
    pub worker_id: String,
    pub reason: EndReason,
    /// The session's Vault credentials whose revocation was queued with the end.
    pub vault_revocations: Vec<String>,
    /// Whether the deletion of the session's Proxmox API token was queued with the end.
    pub pve_revocation: bool,
    /// The forwards of a gateway session that ended with it.
    pub children: Vec<Ended>,
    /// The recording heads sealed (`recording_checkpoint`, incomplete) with the end: id and
    /// chunks, noted in the recordings store after the commit.
    pub sealed_recordings: Vec<(String, u64)>,
}

/// Ends a session with `reason` unless it has already ended; returns what it ended, or
/// `None` if it had ended before. The worker carrying it is told at once when it is linked to
/// this controller; otherwise it learns at its next heartbeat on whichever controller it is
/// linked to.
pub(crate) async fn end_session(
    state: &AppState,
    session_id: &str,
    reason: EndReason,
    actor: Actor,
) -> Result<Option<Ended>, StoreError> {
    let ended = end(state, session_id, reason, actor).await?;
    if let Some(ended) = &ended {
        after_end(state, ended);
    }
    Ok(ended)
}

/// The transaction of an end: the session terminated, its certificates into the KRL, its
/// Vault revocations queued, the wake-up of other controllers and `session_terminated`; and
/// the same for the live forwards a gateway session asked for (sessions of their own that
/// end with it, for the same reason).
async fn end(
    state: &AppState,
    session_id: &str,
    reason: EndReason,
    actor: Actor,
) -> Result<Option<Ended>, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    let Some(mut ended) = end_in(&mut tx, state, session_id, reason, &actor, now).await? else {
        return Ok(None);
    };
    for child in rows::live_children(tx.read(), session_id).await? {
        if let Some(child) = end_in(&mut tx, state, &child, reason, &actor, now).await? {
            ended.children.push(child);
        }
    }
    tx.commit_recorded().await?;
    crate::recordings::seal::noted(state, &ended.sealed_recordings).await;
    for child in &ended.children {
        crate::recordings::seal::noted(state, &child.sealed_recordings).await;
    }
    tracing::info!(session.id = session_id, %reason, forwards = ended.children.len(), "session terminated");
    Ok(Some(ended))
}

/// Ends one session in `tx` and records its `session_terminated`; `None` if it had ended.
async fn end_in(
    tx: &mut crate::audit::AuditedTx,
    state: &AppState,
    session_id: &str,
    reason: EndReason,
    actor: &Actor,
    now: i64,
) -> Result<Option<Ended>, StoreError> {
    let Some(session) = rows::get(tx.read(), session_id).await? else {
        return Ok(None);
    };
    if !rows::terminate(tx.write(), session_id, reason, now).await? {
        return Ok(None);
    }
    // Certificates of the session that are still valid go into the KRL.
    let revoked =
        crate::store::ssh_certificates::revoke_session(tx.write(), session_id, now).await?;
    // Its Vault credentials: the revocation is queued in this transaction, so it survives
    // any crash; it is attempted right after the commit and retried until Vault confirms.
    let vault_revocations =
        crate::store::vault_credentials::request_revocation(tx.read(), session_id, now).await?;
    // Its Proxmox API token: the same, and its sealed secret is wiped in this transaction.
    // The job leaves the first attempt to `after_end` for a few seconds.
    let job_from = now + super::pve::revoke::FIRST_ATTEMPT_GRACE_SECS;
    let pve_revocation =
        crate::store::pve_tokens::request_revocation(tx.read(), session_id, now, job_from)
            .await?
            .is_some();
    // Its leased secrets' sealed data: gone with it, so that nothing can serve them now.
    crate::store::session_secrets::delete(tx.write(), session_id).await?;
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
    tx.record(
        AuditEvent::new(actor.clone(), event)
            .session(session_id)
            .target(&session.target_id),
    );
    // Its recordings without a final chunk: their stored heads sealed, incomplete.
    let sealed_recordings = crate::recordings::seal::at_session_end(tx, state, session_id).await;
    Ok(Some(Ended {
        session_id: session_id.to_owned(),
        worker_id: session.worker_id,
        reason,
        vault_revocations,
        pve_revocation,
        children: Vec::new(),
        sealed_recordings,
    }))
}

/// After an end committed: starts the queued Vault revocations and the token deletion (the
/// credentials and token jobs retry any that fail) and tells a linked worker (best effort: the heartbeat reconcile is the
/// durable path).
pub(crate) fn after_end(state: &AppState, ended: &Ended) {
    if !ended.vault_revocations.is_empty() {
        match &state.vault {
            Some(vault) => super::credentials::revoke_now(
                state.clone(),
                vault.clone(),
                ended.vault_revocations.clone(),
            ),
            None => tracing::warn!(
                session.id = %ended.session_id,
                "the session has Vault credentials but the Vault backend is not configured; they stay queued"
            ),
        }
    }
    if ended.pve_revocation {
        super::pve::revoke::revoke_now(state.clone(), ended.session_id.clone());
    }
    crate::notify::tell_worker(state, &ended.worker_id, &ended.session_id, ended.reason);
    for child in &ended.children {
        after_end(state, child);
    }
}

/// Arms a timer that ends the session at its expiry (the sweeper is the backstop).
pub(crate) fn arm_expiry(state: &AppState, session_id: String, expires_at: u64) {
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
