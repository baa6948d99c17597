//! `/v1/sessions/{id}/recordings/...`: a session's recordings for reviewers. The session's
//! own user may read them; anyone else needs `recordings:read` (a refusal is a 403, audited
//! as `permission_denied`). The reads themselves, and their `recording_read` events, are
//! `recordings::read`'s; here is who may ask and what the answer looks like over HTTP.

use axum::extract::{Path, Query, State};
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::recording::{Bundle, ChunkPage, RecordingList};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::Principal;
use crate::recordings::read::{self, ReadError};
use crate::state::AppState;
use crate::store::sessions as session_rows;

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::UnknownRecording { .. } => ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                err.to_string(),
            ),
            ReadError::Store(e) => e.into(),
            ReadError::Keys(e) => e.into(),
        }
    }
}

impl From<crate::recordings::playback::PlaybackError> for ApiError {
    fn from(err: crate::recordings::playback::PlaybackError) -> Self {
        use crate::recordings::playback::PlaybackError;
        match err {
            PlaybackError::Read(e) => e.into(),
            PlaybackError::Cast(_) => ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                err.to_string(),
            ),
        }
    }
}

/// Fails unless the caller may read the session's recordings: its own user, or `recordings:read`.
pub(crate) async fn readable(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(), ApiError> {
    let session = {
        let mut conn = state.store.conn().await?;
        session_rows::get(&mut conn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("session", id))?
    };
    if session.user_id != principal.user.id {
        principal.require(Permission::RecordingsRead)?;
    }
    Ok(())
}

/// `GET /v1/sessions/{id}/recordings`.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<RecordingList>, ApiError> {
    readable(&state, &principal, &id).await?;
    Ok(Json(read::list(&state, &principal.actor(), &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// The first seq of the page (0 when absent).
    #[serde(default)]
    from: u64,
    /// At most this many chunks (256 when absent, never more than 1024).
    limit: Option<u32>,
    /// Seconds to wait for a chunk at `from` when none is stored yet and the recording is
    /// not finished (a long poll for `sessions watch`; 0 when absent, at most 25).
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/sessions/{id}/recordings/{recording}/chunks?from=SEQ&limit=N&wait=SECS`.
pub(crate) async fn chunks(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, recording)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Json<ChunkPage>, ApiError> {
    readable(&state, &principal, &id).await?;
    let limit = q.limit.unwrap_or(read::DEFAULT_PAGE);
    if limit == 0 || limit > read::MAX_PAGE {
        return Err(ApiError::field(
            "limit",
            format!("must be 1 to {} chunks a page", read::MAX_PAGE),
        ));
    }
    if q.wait > read::MAX_WAIT_SECS {
        return Err(ApiError::field(
            "wait",
            format!("must be 0 to {} seconds", read::MAX_WAIT_SECS),
        ));
    }
    let wait = std::time::Duration::from_secs(q.wait);
    let page = read::page(
        &state,
        &principal.actor(),
        &id,
        &recording,
        q.from,
        limit,
        wait,
    )
    .await?;
    Ok(Json(page))
}

/// `GET /v1/sessions/{id}/recordings/{recording}/bundle`.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, recording)): Path<(String, String)>,
) -> Result<Json<Bundle>, ApiError> {
    readable(&state, &principal, &id).await?;
    Ok(Json(
        read::bundle(&state, &principal.actor(), &id, &recording).await?,
    ))
}
