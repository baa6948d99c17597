//! Telling workers that a session ended. The controller that ends it pushes the end at once
//! to a worker linked to it ([`tell_worker`]); on PostgreSQL the transaction that ends it
//! also sends `NOTIFY portcullis_session_ended, '<session id> <worker id> <reason>'`, every
//! controller listens, and the one the worker is linked to pushes the end. The durable
//! record is the session row: a push or notification missed while a link or listener
//! reconnects is caught by the heartbeat reconcile, which compares the worker's live
//! sessions with the store at every heartbeat.

use std::time::Duration;

use portcullis_proto::link::{EndReason, Request, SessionEnd};
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::state::AppState;
use crate::store::{Dialect, StoreError};

const CHANNEL: &str = "portcullis_session_ended";

/// Queues the notification inside the caller's transaction (sent at commit).
pub(crate) async fn session_ended(
    dialect: Dialect,
    conn: &mut AnyConnection,
    session_id: &str,
    worker_id: &str,
    reason: EndReason,
) -> Result<(), StoreError> {
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{session_id} {worker_id} {reason}"))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Tells a worker linked to this controller to end a session now (best effort: the
/// heartbeat reconcile is the durable path); a worker linked elsewhere is not told here.
pub(crate) fn tell_worker(state: &AppState, worker_id: &str, session_id: &str, reason: EndReason) {
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

/// The worker and the session end a payload names; `None` for a payload this version cannot
/// read (the worker then learns of the end at its next heartbeat).
fn parse(payload: &str) -> Option<(String, SessionEnd)> {
    let mut parts = payload.splitn(3, ' ');
    let session_id = parts.next()?.to_owned();
    let worker_id = parts.next()?.to_owned();
    let reason = parts.next()?.parse().ok()?;
    Some((worker_id, SessionEnd { session_id, reason }))
}

/// Listens until `shutdown` (PostgreSQL only); reconnects by itself.
pub(crate) async fn listen(state: AppState, url: String, shutdown: CancellationToken) {
    // From 1 s, doubling and jittered, at most 5 s; from the start again once listening.
    let retries =
        || portcullis_net::retry::schedule(Duration::from_secs(1), Duration::from_secs(5));
    let mut waits = retries();
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for session ends; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(waits.next().unwrap_or(Duration::from_secs(5))) => continue,
                }
            }
        };
        waits = retries();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.recv() => n,
            };
            match received {
                Ok(notification) => {
                    if let Some((worker_id, end)) = parse(notification.payload()) {
                        tell_worker(&state, &worker_id, &end.session_id, end.reason);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "session-end listener lost its connection; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn payloads_parse() {
        let (worker, end) = super::parse("s_1 w_2 canceled").unwrap();
        assert_eq!(
            (worker.as_str(), end.session_id.as_str(), end.reason),
            ("w_2", "s_1", super::EndReason::Canceled)
        );
        assert!(super::parse("garbage").is_none());
        // A reason this version does not know: the heartbeat reconcile tells the worker.
        assert!(super::parse("s_1 w_2 gone_fishing").is_none());
    }
}
