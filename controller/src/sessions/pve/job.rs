//! The token job: every [`INTERVAL`] (and at once at start, so a restarted controller
//! finishes what it left), one controller at a time under a store lease, it ends the sessions
//! whose token intent was abandoned (a controller crash or hang between the intent and
//! Proxmox's answer: older than the cluster's `mint_timeout`), which queues the deletion of
//! whatever exists under the derived token id, and retries the queued deletions Proxmox has
//! not confirmed yet.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use portcullis_proto::link::EndReason;

use super::revoke::revoke_one;
use crate::audit::Actor;
use crate::clock;
use crate::sessions::lifecycle::end_session;
use crate::state::AppState;
use crate::store::pve_tokens as rows;
use crate::store::StoreError;

/// Between two rounds: a deletion that failed is retried within seconds of Proxmox's return.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// The mint timeout of a cluster no longer configured.
const DEFAULT_MINT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs until `shutdown`; see the module doc.
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = run_once(&state).await {
            tracing::warn!(error = %portcullis_proto::text::escaped(&err), "Proxmox token job failed; retrying at the next tick");
        }
    }
}

/// The mint timeout of `cluster`.
fn mint_timeout(state: &AppState, cluster: &str) -> Duration {
    state
        .config
        .catalog
        .iter()
        .find(|c| c.name == cluster)
        .and_then(|c| c.sessions.as_ref())
        .map_or(DEFAULT_MINT_TIMEOUT, |s| s.mint_timeout)
}

/// One round of the job; returns how many deletions were confirmed.
pub(crate) async fn run_once(state: &AppState) -> Result<usize, StoreError> {
    let Some(_lease) = state.store.try_lease("pve-tokens").await? else {
        return Ok(0);
    };
    let now = clock::to_i64(state.clock.unix_secs());
    let shortest = state
        .config
        .catalog
        .iter()
        .filter_map(|c| c.sessions.as_ref().map(|s| s.mint_timeout))
        .chain([DEFAULT_MINT_TIMEOUT])
        .min()
        .unwrap_or(DEFAULT_MINT_TIMEOUT);
    let candidates = {
        let mut conn = state.store.conn().await?;
        rows::abandoned_intents(&mut conn, now - clock::to_i64(shortest.as_secs())).await?
    };
    for record in candidates {
        let timeout = clock::to_i64(mint_timeout(state, &record.cluster).as_secs());
        if record.created_at >= now - timeout {
            continue;
        }
        tracing::warn!(session.id = %record.session_id, token.id = %record.token_id(), "a Proxmox token mint was abandoned (controller crash or hang); ending its session");
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
            rows::request_revocation(&mut conn, &record.session_id, now, now).await?;
        }
    }
    let due = {
        let mut conn = state.store.conn().await?;
        rows::due_revocations(&mut conn, now).await?
    };
    let mut confirmed = 0;
    for record in due {
        if revoke_one(state, &record).await? {
            confirmed += 1;
        }
    }
    Ok(confirmed)
}
