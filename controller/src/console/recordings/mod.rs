//! The console's session page and its recordings (docs/console.md, "Session page and
//! recordings"): `/console/sessions/{id}` shows a session, its connections, its recordings'
//! channels (pty, exec, sftp, forwards) and, with `audit:read`, its Proxmox API request log;
//! `.../recordings/{rec}/play` plays a pty channel in asciinema-player (vendored, [`assets`])
//! from `.../cast`, and `.../watch` follows a live one from `.../live`, an event stream.
//!
//! Permissions are the API's own: the session as `GET /v1/sessions/{id}` (its user, or
//! `sessions:read-all`), its recordings as `GET /v1/sessions/{id}/recordings` (its user, or
//! `recordings:read`), the request log as `GET /v1/audit` (`audit:read`). Every read of a
//! recording is audited as `recording_read` by `recordings::read` and `recordings::playback`.

mod assets;
mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt as _};
use portcullis_policy::Permission;
use serde_json::Value;

use super::error::ConsoleError;
use super::pages::{self, Nav};
use super::session::{self as console_session, ConsoleUser};
use crate::api::error::ApiError;
use crate::api::recordings::readable;
use crate::api::sessions::{to_api, visible};
use crate::audit::Actor;
use crate::clock;
use crate::recordings::playback::{self, Follower, LiveMessage};
use crate::recordings::read;
use crate::state::AppState;
use crate::store::audit::{self as audit_rows, Filter};

pub(crate) use view::PLAYER_CSP;

/// The most Proxmox API requests the session page lists (the newest).
const PVE_LOG: u32 = 500;
/// How long a live follower's read waits for new chunks (as `sessions watch`).
const LIVE_WAIT: Duration = Duration::from_secs(20);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/sessions/{id}", get(session))
        .route("/console/sessions/{id}/recordings/{rec}/play", get(play))
        .route("/console/sessions/{id}/recordings/{rec}/watch", get(watch))
        .route("/console/sessions/{id}/recordings/{rec}/cast", get(cast))
        .route("/console/sessions/{id}/recordings/{rec}/live", get(live))
        .route("/console/player/{file}", get(assets::get))
}

fn nav(user: &ConsoleUser) -> Nav<'_> {
    Nav {
        username: &user.principal.user.username,
        csrf_token: &user.csrf_token,
    }
}

/// The `channel` of a query string, if given; a 400 if it is not a number.
fn channel(query: Option<&str>) -> Result<Option<u32>, ConsoleError> {
    let q: BTreeMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    q.get("channel")
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<u32>().map_err(|_| ConsoleError::Page {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "channel {c:?} is not a channel number; the session page links each \
                     terminal channel"
                ),
                denied: None,
            })
        })
        .transpose()
}

/// `GET /console/sessions/{id}`.
async fn session(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let principal = &user.principal;
    let record = visible(&state, principal, &id, Permission::SessionsReadAll).await?;
    let session = to_api(&state, &record, true).await?;
    let recordings =
        if record.user_id == principal.user.id || principal.has(Permission::RecordingsRead) {
            Some(
                read::list(&state, &principal.actor(), &id)
                    .await
                    .map_err(ApiError::from)?,
            )
        } else {
            None
        };
    let pve_log = if principal.has(Permission::AuditRead) {
        Some(pve_requests(&state, &id).await?)
    } else {
        None
    };
    let page = view::SessionView {
        nav: nav(&user),
        session: &session,
        recordings: recordings.as_ref(),
        pve_log: pve_log.as_deref(),
    };
    Ok(pages::page_response(StatusCode::OK, view::session(&page)))
}

/// The session's `pve_request` events, oldest first.
async fn pve_requests(state: &AppState, id: &str) -> Result<Vec<view::PveRow>, ConsoleError> {
    let filter = Filter {
        session: Some(id.to_owned()),
        kind: Some("pve_request".to_owned()),
        ..Filter::default()
    };
    let events = {
        let mut conn = state.store.conn().await?;
        audit_rows::list(&mut conn, &filter, PVE_LOG).await?
    };
    let mut rows: Vec<view::PveRow> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.body).ok())
        .map(|e| view::PveRow::from_event(&e))
        .collect();
    rows.reverse();
    Ok(rows)
}

/// The player page of a recording's pty channel: `live` false plays `.../cast`, true
/// follows `.../live`.
async fn player_page(
    state: &AppState,
    user: &ConsoleUser,
    id: &str,
    rec: &str,
    query: Option<&str>,
    live: bool,
) -> Result<Response, ConsoleError> {
    readable(state, &user.principal, id).await?;
    let channel = channel(query)?;
    let page = view::PlayerView {
        nav: nav(user),
        session_id: id,
        recording_id: rec,
        channel,
        live,
    };
    let mut response = pages::page_response(StatusCode::OK, view::player(&page));
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PLAYER_CSP),
    );
    Ok(response)
}

/// `GET /console/sessions/{id}/recordings/{rec}/play?channel=N`.
async fn play(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((id, rec)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    player_page(&state, &user, &id, &rec, query.as_deref(), false).await
}

/// `GET /console/sessions/{id}/recordings/{rec}/watch?channel=N`.
async fn watch(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((id, rec)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    player_page(&state, &user, &id, &rec, query.as_deref(), true).await
}

/// `GET /console/sessions/{id}/recordings/{rec}/cast?channel=N`: the pty channel (the
/// recording's first when none is named) as asciicast v2, from the chunks that stand.
async fn cast(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((id, rec)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let principal = &user.principal;
    readable(&state, principal, &id).await?;
    let channel = match channel(query.as_deref())? {
        Some(channel) => channel,
        None => first_pty(&state, &principal.actor(), &id, &rec).await?,
    };
    let cast = playback::cast_of(&state, &principal.actor(), &id, &rec, channel)
        .await
        .map_err(ApiError::from)?;
    let mut response = cast.text.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    headers.insert(
        "x-portcullis-recording-state",
        HeaderValue::from_static(cast.state.as_str()),
    );
    if let Ok(value) = HeaderValue::from_str(&cast.verified_up_to.to_string()) {
        headers.insert("x-portcullis-verified-up-to", value);
    }
    Ok(response)
}

/// The first pty channel of recording `rec` (a 404 when it has none).
async fn first_pty(
    state: &AppState,
    actor: &Actor,
    id: &str,
    rec: &str,
) -> Result<u32, ConsoleError> {
    let list = read::list(state, actor, id).await.map_err(ApiError::from)?;
    list.recordings
        .iter()
        .filter(|r| r.recording_id == rec)
        .flat_map(|r| r.channels.iter())
        .find(|c| c.kind == portcullis_proto::recording::ChannelKind::Pty)
        .map(|c| c.channel)
        .ok_or_else(|| ConsoleError::Page {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "recording {rec} of session {id} has no terminal (pty) channel; the session \
                 page lists its channels"
            ),
            denied: None,
        })
}

/// `GET /console/sessions/{id}/recordings/{rec}/live?channel=N`: a live pty channel as
/// Server-Sent Events for asciinema-player's `eventsource` driver, from its first chunk
/// on, each chunk checked against the one before it; `done` when the recording is finished
/// or its chain breaks. Read-only: nothing is read from the browser. Each read of new chunks
/// is audited as `recording_read` (as `sessions watch`'s); the stream ends when the console
/// session does.
async fn live(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path((id, rec)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ConsoleError> {
    readable(&state, &user.principal, &id).await?;
    let channel = channel(query.as_deref())?;
    let cookie_hash = console_session::cookie(&headers)
        .map(crate::ids::secret_hash)
        .ok_or(ConsoleError::LogIn)?;
    let follow = Follow {
        state,
        actor: user.principal.actor(),
        cookie_hash,
        follower: Follower::new(&id, &rec, channel),
        first: true,
    };
    Ok(Sse::new(events(follow))
        .keep_alive(KeepAlive::default())
        .into_response())
}

struct Follow {
    state: AppState,
    actor: Actor,
    cookie_hash: Vec<u8>,
    follower: Follower,
    first: bool,
}

impl Follow {
    /// Whether the console session that opened the stream is still live (logout, `users
    /// revoke` and the timeouts end the stream too).
    async fn still_logged_in(&self) -> bool {
        let now = clock::to_i64(self.state.clock.unix_secs());
        let Ok(mut conn) = self.state.store.conn().await else {
            return false;
        };
        matches!(
            crate::store::console_sessions::authenticate(&mut conn, &self.cookie_hash, now).await,
            Ok(Some(_))
        )
    }
}

fn sse(message: &LiveMessage) -> SseEvent {
    match message {
        LiveMessage::Done { why } => SseEvent::default()
            .event("done")
            .data(why.as_deref().unwrap_or("the recording is finished")),
        other => SseEvent::default().data(other.data().unwrap_or_default()),
    }
}

fn events(follow: Follow) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        if follow.follower.done() {
            return None;
        }
        let messages = if follow.still_logged_in().await {
            let wait = if follow.first {
                Duration::ZERO
            } else {
                LIVE_WAIT
            };
            follow.first = false;
            let actor = follow.actor.clone();
            match follow.follower.next(&follow.state, &actor, wait).await {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(error = %e, "a console live follow failed");
                    vec![LiveMessage::Done {
                        why: Some(format!(
                            "reading the recording failed ({e}); reload the page to try again"
                        )),
                    }]
                }
            }
        } else {
            vec![LiveMessage::Done {
                why: Some("the console session ended; log in again".to_owned()),
            }]
        };
        let ended = messages
            .iter()
            .any(|m| matches!(m, LiveMessage::Done { .. }));
        let out: Vec<Result<SseEvent, Infallible>> = messages.iter().map(|m| Ok(sse(m))).collect();
        Some((out, (!ended).then_some(follow)))
    })
    .flat_map(stream::iter)
}
