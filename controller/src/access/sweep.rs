//! The sweeper's share of access requests (called from `sessions::sweeper` under its lease):
//! open requests past `expires_at` expire (pending ones were not approved in time, approved
//! ones' windows ended), runs with no keepalive for three of their intervals are `lost`;
//! either way the sessions under them end; and a session still live under a request that
//! ended (its end failed after the request's commit) ends now.

use portcullis_proto::access::RequestState;
use portcullis_proto::link::EndReason;

use super::ending::{self, RunEnd};
use crate::audit::Actor;
use crate::clock::to_i64;
use crate::state::AppState;
use crate::store::access_requests as rows;
use crate::store::StoreError;

/// One sweep at the state's clock; how many requests it ended.
pub(crate) async fn sweep_once(state: &AppState) -> Result<usize, StoreError> {
    let now = to_i64(state.clock.unix_secs());
    let (due, lost) = {
        let mut conn = state.store.conn().await?;
        (
            rows::due(&mut conn, now).await?,
            rows::lost_runs(&mut conn, now).await?,
        )
    };
    let mut ended = 0;
    for record in due {
        let closed = ending::close(
            state,
            &record,
            RequestState::Expired,
            Actor::system(),
            None,
            None,
            None,
        )
        .await;
        ended += usize::from(counted(closed)?);
    }
    for record in lost {
        let lost = RunEnd {
            outcome: "lost",
            exit_status: None,
            signal: None,
        };
        let reason = Some("its run sent no keepalive for three intervals (lost)".to_owned());
        let closed = ending::close(
            state,
            &record,
            RequestState::Revoked,
            Actor::system(),
            None,
            reason,
            Some(lost),
        )
        .await;
        ended += usize::from(counted(closed)?);
    }
    // The backstop: sessions still live under a request that ended (their end failed after
    // the request's commit) end now.
    let stranded = {
        let mut conn = state.store.conn().await?;
        rows::stranded_sessions(&mut conn, now).await?
    };
    ending::end_sessions(state, &stranded, EndReason::Canceled, Actor::system()).await?;
    Ok(ended)
}

fn counted(
    closed: Result<Option<Vec<String>>, super::error::AccessError>,
) -> Result<bool, StoreError> {
    match closed {
        Ok(done) => Ok(done.is_some()),
        Err(super::error::AccessError::Store(e)) => Err(e),
        Err(other) => Err(StoreError::Query(other.to_string())),
    }
}
