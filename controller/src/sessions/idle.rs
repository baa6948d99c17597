//! Sessions left without an owner: a pending or active session with no open connection whose
//! client has given no sign for `sessions.idle_timeout` ends with reason `idle`.
//!
//! Why: a CLI that exits while no controller can hear its cancel leaves its session live
//! until its expiry (hours), with its grant and credentials usable all that time. What counts
//! as a sign of the client: the session's creation, a connection opened or closed (the
//! worker's events), an open connection, and a `GET /v1/sessions/{id}` by the session's own
//! user ([`client_seen`]), which `portcullis connect` sends while it holds a session open
//! with no connection. An admin reading someone else's session is no sign of its client.
//!
//! The decision ([`is_idle`]) is pure, on the times the store holds; [`end_idle`], run by the
//! sweeper, reads them and ends each idle session through `lifecycle::end_session` (the
//! `session_terminated` event, the worker told, credentials revoked).

use std::time::Duration;

use portcullis_proto::link::EndReason;
use portcullis_proto::text;

use super::lifecycle::end_session;
use crate::audit::Actor;
use crate::clock;
use crate::state::AppState;
use crate::store::sessions::{self as session_rows, Activity, SessionRecord};
use crate::store::StoreError;

/// A client polling its session records the sign at most this often (and at least four
/// times per idle timeout).
const SEEN_EVERY: Duration = Duration::from_secs(30);

/// The latest sign of the session's client: its creation, a connection opened or closed, or
/// its user asking about it.
pub(crate) fn last_sign(activity: &Activity) -> i64 {
    [
        Some(activity.created_at),
        activity.client_seen_at,
        activity.last_opened_at,
        activity.last_closed_at,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(activity.created_at)
}

/// True when the session has no open connection and no sign of its client within
/// `idle_timeout` before `now` (unix seconds).
pub(crate) fn is_idle(activity: &Activity, now: i64, idle_timeout: Duration) -> bool {
    let timeout = clock::to_i64(idle_timeout.as_secs());
    activity.open_connections == 0 && now.saturating_sub(last_sign(activity)) >= timeout
}

/// Ends every idle session; returns how many it ended. Run by the sweeper, under its lease.
pub(crate) async fn end_idle(state: &AppState) -> Result<usize, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let timeout = state.config.session_idle_timeout;
    let quiet_since = now.saturating_sub(clock::to_i64(timeout.as_secs()));
    let quiet = {
        let mut conn = state.store.conn().await?;
        session_rows::quiet_since(&mut conn, quiet_since).await?
    };
    let mut ended = 0;
    for activity in quiet.iter().filter(|a| is_idle(a, now, timeout)) {
        if end_session(
            state,
            &activity.session_id,
            EndReason::Idle,
            Actor::system(),
        )
        .await?
        .is_some()
        {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Records a request about `session` by its own user as a sign of its client (bookkeeping:
/// a failure is logged, never the request's).
pub(crate) async fn client_seen(state: &AppState, session: &SessionRecord, user_id: &str) {
    if session.user_id != user_id || !session.state.is_live() {
        return;
    }
    let now = clock::to_i64(state.clock.unix_secs());
    let every = SEEN_EVERY.min(state.config.session_idle_timeout / 4);
    let unless_since = now.saturating_sub(clock::to_i64(every.as_secs()));
    let seen = async {
        let mut conn = state.store.conn().await?;
        session_rows::client_seen(&mut conn, &session.id, now, unless_since).await
    }
    .await;
    if let Err(err) = seen {
        tracing::debug!(error = %text::escaped(&err), session.id = %session.id, "could not record that the session's client asked about it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(900);

    /// Session `s_1`, created at 1,000, never asked about, no connection.
    fn quiet() -> Activity {
        Activity {
            session_id: "s_1".to_owned(),
            created_at: 1_000,
            client_seen_at: None,
            open_connections: 0,
            last_opened_at: None,
            last_closed_at: None,
        }
    }

    #[test]
    fn a_session_without_any_sign_of_its_client_is_idle_once_the_timeout_has_passed() {
        assert!(!is_idle(&quiet(), 1_899, IDLE));
        assert!(is_idle(&quiet(), 1_900, IDLE));
    }

    #[test]
    fn an_open_connection_keeps_a_session_however_long_it_has_been_quiet() {
        let open = Activity {
            open_connections: 1,
            last_opened_at: Some(1_000),
            ..quiet()
        };
        assert!(!is_idle(&open, 1_000_000, IDLE));
    }

    #[test]
    fn each_sign_of_the_client_restarts_the_timeout() {
        let signs = [
            Activity {
                client_seen_at: Some(1_500),
                ..quiet()
            },
            Activity {
                last_opened_at: Some(1_500),
                last_closed_at: Some(1_200),
                ..quiet()
            },
            Activity {
                last_opened_at: Some(1_100),
                last_closed_at: Some(1_500),
                ..quiet()
            },
        ];
        for activity in signs {
            assert_eq!(last_sign(&activity), 1_500, "{activity:?}");
            assert!(!is_idle(&activity, 2_399, IDLE), "{activity:?}");
            assert!(is_idle(&activity, 2_400, IDLE), "{activity:?}");
        }
    }

    #[test]
    fn a_clock_set_back_never_makes_a_session_idle() {
        assert!(!is_idle(&quiet(), 0, IDLE));
        assert!(!is_idle(&quiet(), i64::MIN, IDLE));
    }
}
