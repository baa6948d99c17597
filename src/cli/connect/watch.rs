//! Watching our own session at the controller, for the modes that hold a session open
//! without a connection telling them it ended (`--listen-port`, `--listen-unix`,
//! `--write-session-file`): a cancel, a logout or a policy change then ends the process at
//! once with the reason, instead of at the next local connection.
//!
//! One `GET /v1/sessions/{id}` every [`INTERVAL`]; a controller that does not answer is
//! asked again at the next tick (the worker still refuses connections of an ended session).

use std::time::Duration;

use portcullis_proto::api::Session;
use portcullis_proto::clock::{Clock as _, SystemClock};

use super::session::ended_with_its_token;
use crate::cli::http::{segment, ApiClient, ApiError};

/// How often the session is looked at.
pub(super) const INTERVAL: Duration = Duration::from_secs(2);

/// Returns why the session ended, once it has; never returns while it lives.
pub(super) async fn until_ended(
    api: &ApiClient,
    id: &str,
    token_expires_at: Option<u64>,
) -> String {
    let Ok(path) = segment(id).map(|id| format!("/v1/sessions/{id}")) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(INTERVAL).await;
        match api.get::<Session>(&path).await {
            Ok(session) if session.terminated_at.is_some() => {
                return session
                    .termination_reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "ended".to_owned());
            }
            Ok(_) => {}
            Err(err) => {
                let status = err.downcast_ref::<ApiError>().map(|e| e.status);
                if ended_with_its_token(status, token_expires_at, SystemClock.unix_secs()) {
                    return "its API token was revoked (logout), which ended it".to_owned();
                }
                if status == Some(401) {
                    // The token expired: nothing more to ask; the worker's refusal of the
                    // next connection tells whether the session ended.
                    return std::future::pending().await;
                }
                tracing::debug!(error = %format!("{err:#}"), "cannot look at the session; asking again");
            }
        }
    }
}
