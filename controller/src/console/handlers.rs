//! The console's routes: the HTTP edge (forms in, pages and redirects out) over the API's
//! own domain functions and permission checks.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use portcullis_policy::Permission;
use portcullis_proto::api::CancelSession;

use super::error::ConsoleError;
use super::guard;
use super::pages::{self, Nav, SessionsView};
use super::session::{self, ConsoleUser};
use super::sessions_query;
use crate::api::extract::PeerAddr;
use crate::api::local_login::{console_login, ConsoleRefusal};
use crate::api::sessions::cancel_as;
use crate::audit::denials::{Failure, FailureKind};
use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::session_list as list;
use crate::store::{console_sessions, tokens};

/// A filter's value, unless it was left empty.
fn given(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}

/// Sessions per page.
const PAGE: i64 = 50;

/// A form body's fields (`application/x-www-form-urlencoded`); the last of a repeated name.
pub(crate) fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Refuses a state-changing request that is not from the console's own page (403): audited
/// as `permission_denied` for a logged-in caller, summed per address otherwise.
fn same_origin(
    state: &AppState,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    user: Option<&ConsoleUser>,
) -> Result<(), ConsoleError> {
    let Some(why) = guard::cross_site(headers) else {
        return Ok(());
    };
    let message = format!(
        "refused: {why}. Console forms must be sent from the console's own pages; reload the \
         page and try again"
    );
    match user {
        Some(user) => Err(ConsoleError::refused(
            user.principal.actor(),
            "console same-origin request",
            message,
        )),
        None => {
            state.denials.note(Failure {
                kind: FailureKind::TokenRejected,
                source: peer.ip(),
                reason: "console request not from the console's origin",
                attempted_name: None,
            });
            Err(ConsoleError::Page {
                status: StatusCode::FORBIDDEN,
                message,
                denied: None,
            })
        }
    }
}

/// The checks of every POST with a session: same origin, then the CSRF token.
pub(crate) fn checked_post(
    state: &AppState,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    user: Result<ConsoleUser, ConsoleError>,
    fields: &BTreeMap<String, String>,
) -> Result<ConsoleUser, ConsoleError> {
    same_origin(state, headers, peer, user.as_ref().ok())?;
    let user = user?;
    if !guard::csrf_ok(
        &user.csrf_token,
        fields.get("csrf_token").map(String::as_str),
    ) {
        return Err(ConsoleError::refused(
            user.principal.actor(),
            "console CSRF token",
            "refused: the form's CSRF token is missing or not this session's; reload the page \
             and try again",
        ));
    }
    Ok(user)
}

/// `GET /console/` and `/console`: to the sessions page (or the login page from there).
pub(crate) async fn index() -> Redirect {
    Redirect::to("/console/sessions")
}

/// `GET /console/login`.
pub(crate) async fn login_form(State(state): State<AppState>) -> Response {
    pages::page_response(StatusCode::OK, pages::login(None, "", state.oidc.is_some()))
}

/// `POST /console/login`: a local user's password and TOTP code; on success the session
/// cookie and a redirect to the sessions page.
pub(crate) async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    same_origin(&state, &headers, peer, None)?;
    let mut fields = form(&body);
    let username = fields.remove("username").unwrap_or_default();
    let password = fields.remove("password").unwrap_or_default();
    let totp_code = fields.remove("totp_code").unwrap_or_default();
    let again = |status: StatusCode, message: &str| {
        Ok(pages::page_response(
            status,
            pages::login(Some(message), &username, state.oidc.is_some()),
        ))
    };
    match console_login(&state, peer.ip(), &username, password, totp_code).await {
        Ok(opened) => Ok((
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/console/sessions".to_owned()),
                (header::SET_COOKIE, session::set_cookie(&opened.secret)),
            ],
        )
            .into_response()),
        Err(ConsoleRefusal::Credentials(message)) => again(StatusCode::UNAUTHORIZED, &message),
        Err(ConsoleRefusal::NeedsCli(message)) => again(StatusCode::UNAUTHORIZED, &message),
        Err(ConsoleRefusal::TooMany(secs)) => again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed logins: try again in {secs} s"),
        ),
        Err(ConsoleRefusal::Disabled) => again(
            StatusCode::NOT_FOUND,
            "local users are turned off on this controller ([auth.local] enabled = false)",
        ),
        Err(ConsoleRefusal::Api(e)) => Err(e.into()),
    }
}

/// `POST /console/logout`: deletes the console session and revokes its token, audited as
/// `logged_out`; forgets the cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    user: Result<ConsoleUser, ConsoleError>,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    let user = checked_post(&state, &headers, peer, user, &form(&body))?;
    let principal = &user.principal;
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    console_sessions::delete_of_token(tx.write(), &principal.token_id).await?;
    tokens::revoke(tx.write(), &principal.token_id, now).await?;
    tx.commit(AuditEvent::new(
        principal.actor(),
        Event::LoggedOut {
            details: event::TokenRef {
                token_id: principal.token_id.clone(),
            },
        },
    ))
    .await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console/login".to_owned()),
            (header::SET_COOKIE, session::clear_cookie()),
        ],
    )
        .into_response())
}

/// `GET /console/sessions?user=&target=&zone=&state=&since=&until=&after=`: live and past
/// sessions, newest first, those the caller may see (everyone's with `sessions:read-all`, as
/// the API). One query per page, whatever its depth (`store::session_list`).
pub(crate) async fn sessions(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let q = form(query.unwrap_or_default().as_bytes());
    let (filters, selection) =
        sessions_query::parse(&q, state.clock.unix_secs()).map_err(|message| {
            ConsoleError::Page {
                status: StatusCode::BAD_REQUEST,
                message,
                denied: None,
            }
        })?;
    let principal = &user.principal;
    let all_users = principal.has(Permission::SessionsReadAll);
    let cancel_any = principal.has(Permission::SessionsCancelAny);
    let page = list::ListQuery {
        user_id: (!all_users).then_some(principal.user.id.as_str()),
        username: given(&filters.user),
        target: given(&filters.target),
        zone: given(&filters.zone),
        live_only: selection.live_only,
        state: selection.state,
        since: selection.since,
        until: selection.until,
        after: selection.after.as_ref().map(|(at, id)| (*at, id.as_str())),
        limit: PAGE + 1,
    };
    let mut listed = {
        let mut conn = state.store.conn().await?;
        list::page(&mut conn, &page).await?
    };
    let more = listed.len() > usize::try_from(PAGE).unwrap_or(usize::MAX);
    listed.truncate(usize::try_from(PAGE).unwrap_or(usize::MAX));
    let next = more
        .then(|| listed.last())
        .flatten()
        .map(|last| sessions_query::next_link(&filters, last.record.created_at, &last.record.id));
    let rows = listed
        .into_iter()
        .map(|l| {
            let cancel =
                l.record.state.is_live() && (l.record.user_id == principal.user.id || cancel_any);
            sessions_query::row(l, cancel)
        })
        .collect();
    let zones = state
        .policy()
        .map(|p| p.zone_names().map(str::to_owned).collect())
        .unwrap_or_default();
    let view = SessionsView {
        nav: Nav {
            username: &principal.user.username,
            csrf_token: &user.csrf_token,
        },
        filters: &filters,
        rows,
        next,
        all_users,
        zones,
    };
    Ok(pages::page_response(StatusCode::OK, pages::sessions(&view)))
}

/// `POST /console/sessions/{id}/cancel`: ends the session through the API's own cancel
/// (same permission check, audit event and credential revocation).
pub(crate) async fn cancel(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    user: Result<ConsoleUser, ConsoleError>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ConsoleError> {
    let user = checked_post(&state, &headers, peer, user, &form(&body))?;
    cancel_as(&state, &user.principal, &id, CancelSession::default()).await?;
    Ok(Redirect::to("/console/sessions").into_response())
}
