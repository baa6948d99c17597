//! The backstop sweep: ends sessions past their expiry, pending sessions that never
//! connected, idle sessions (`super::idle`), and sessions on workers that have not been heard
//! from; expires access requests and ends lost runs (`access::sweep`); and deletes console
//! login sessions past their timeouts.

use portcullis_proto::link::EndReason;
use tokio_util::sync::CancellationToken;

use super::lifecycle::end_session;
use super::lost;
use crate::audit::Actor;
use crate::clock;
use crate::state::AppState;
use crate::store::{
    console_sessions, sessions as session_rows, workers as worker_rows, StoreError,
};

/// Runs until `shutdown`.
pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(state.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep_once(&state).await {
            Ok(_) => {}
            Err(err) => {
                state.store_watch.failed(&err);
                tracing::warn!(error = %err, "session sweep failed; retrying at the next tick");
            }
        }
    }
}

/// One sweep; returns how many sessions it ended.
pub(crate) async fn sweep_once(state: &AppState) -> Result<usize, StoreError> {
    // One sweeper across all controllers at a time.
    let lease = state.store.try_lease("sweeper").await?;
    let now = clock::to_i64(state.clock.unix_secs());
    state.store_watch.reached(now);
    let Some(_lease) = lease else {
        return Ok(0);
    };
    {
        let mut conn = state.store.conn().await?;
        console_sessions::prune(&mut conn, now).await?;
    }
    let pending_before = now - clock::to_i64(state.config.session_pending_timeout.as_secs());
    let due = {
        let mut conn = state.store.conn().await?;
        session_rows::due(&mut conn, now, pending_before).await?
    };
    let mut ended = 0;
    for session in due {
        // Past expiry, or pending too long without a connection: both are expiries.
        if end_session(state, &session.id, EndReason::Expired, Actor::system())
            .await?
            .is_some()
        {
            ended += 1;
        }
    }
    ended += super::idle::end_idle(state).await?;
    // Access requests past their window and lost runs: their sessions end with them.
    crate::access::sweep::sweep_once(state).await?;
    let lost_after = clock::to_i64(state.config.worker_lost_after.as_secs());
    let store_up_since = state.store_watch.up_since();
    let workers = {
        let mut conn = state.store.conn().await?;
        worker_rows::list(&mut conn).await?
    };
    for worker in workers
        .iter()
        .filter(|w| lost::is_lost(w.last_seen_at, store_up_since, now, lost_after))
    {
        if state.links.get(&worker.id).is_some() {
            continue;
        }
        // Its connections first, so that ending its sessions finds none left open.
        lost::close_left_open(state, &worker.id, &[]).await?;
        let live = {
            let mut conn = state.store.conn().await?;
            session_rows::live_on_worker(&mut conn, &worker.id).await?
        };
        for session in live {
            if end_session(state, &session.id, EndReason::WorkerLost, Actor::system())
                .await?
                .is_some()
            {
                ended += 1;
            }
        }
    }
    Ok(ended)
}
