//! The credentials job: every `vault.job_interval` (and at once at start, so a restarted
//! controller finishes what it left), one controller at a time under a store lease, it ends
//! the sessions whose mint was abandoned (a controller crash or hang), which queues the
//! revocation of whatever that mint had made, and retries the queued revocations Vault has
//! not confirmed yet.

use tokio_util::sync::CancellationToken;

use portcullis_proto::link::EndReason;

use super::credentials::revoke_one;
use super::lifecycle::end_session;
use crate::audit::Actor;
use crate::clock;
use crate::state::AppState;
use crate::store::vault_credentials as rows;
use crate::store::StoreError;
use crate::vault::Vault;

/// Runs until `shutdown`: recovers abandoned mints and retries queued revocations. The first
/// round runs at once (a restarted controller finishes what it left).
pub(crate) async fn run(state: AppState, vault: Vault, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(vault.config().job_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = run_once(&state, &vault).await {
            tracing::warn!(error = %portcullis_proto::text::escaped(&err), "Vault credential job failed; retrying at the next tick");
        }
    }
}

/// One round of the job; returns how many revocations were confirmed.
pub(crate) async fn run_once(state: &AppState, vault: &Vault) -> Result<usize, StoreError> {
    let Some(_lease) = state.store.try_lease("vault-credentials").await? else {
        return Ok(0);
    };
    let now = clock::to_i64(state.clock.unix_secs());
    let before = now - clock::to_i64(vault.config().mint_timeout.as_secs());
    let abandoned = {
        let mut conn = state.store.conn().await?;
        rows::abandoned_mints(&mut conn, before).await?
    };
    for record in abandoned {
        tracing::warn!(session.id = %record.session_id, credential.id = %record.id, "a mint was abandoned (controller crash or hang); ending its session");
        let ended = end_session(
            state,
            &record.session_id,
            EndReason::CredentialMintAbandoned,
            Actor::system(),
        )
        .await?;
        if ended.is_none() {
            // The session had ended without queueing this row: queue it now.
            let mut conn = state.store.conn().await?;
            rows::request_revocation(&mut conn, &record.session_id, now).await?;
        }
    }
    let due = {
        let mut conn = state.store.conn().await?;
        rows::due_revocations(&mut conn, now).await?
    };
    let mut confirmed = 0;
    for record in due {
        if revoke_one(state, vault, &record).await? {
            confirmed += 1;
        }
    }
    Ok(confirmed)
}
