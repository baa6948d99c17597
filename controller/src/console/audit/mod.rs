//! The console's Audit page (docs/console.md): the search of `portcullis audit list` (the
//! API's own [`search`], paged newest first on the sequence number), each event's JSON, the
//! export of a search as JSON lines, and the chain's verification status from the
//! incremental check ([`watermark`]) with "verify from the start". Everything needs
//! `audit:read`, checked as the API checks it (a refusal is audited as `permission_denied`).

mod filters;
mod view;

#[cfg(test)]
mod tests;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use portcullis_policy::Permission;

use super::error::ConsoleError;
use super::handlers::{checked_post, form};
use super::pages::{self, Nav};
use super::session::ConsoleUser;
use crate::api::audit::search;
use crate::api::extract::PeerAddr;
use crate::audit::verify::{ExportHeader, Head, EXPORT_FORMAT};
use crate::audit::watermark;
use crate::state::AppState;
use crate::store::audit as rows;
use filters::Filters;

/// Events per page.
const PAGE: u32 = 50;

/// Events per store read of an export.
const EXPORT_PAGE: u32 = 1000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/audit", get(list))
        .route("/console/audit/export", get(export))
        .route("/console/audit/verify", post(verify_from_start))
        .route("/console/audit/{seq}", get(event))
}

fn nav(user: &ConsoleUser) -> Nav<'_> {
    Nav {
        username: &user.principal.user.username,
        csrf_token: &user.csrf_token,
    }
}

/// `GET /console/audit?session=&user=&target=&type=&decision=&since=&until=&before=`: the
/// search, newest first, under the chain's status (the incremental check runs here).
async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    user.principal.require(Permission::AuditRead)?;
    let filters = Filters::parse(query.as_deref().unwrap_or_default());
    let filter = filters.to_filter(state.clock.unix_secs())?;
    let found = search(&state, &filter, PAGE).await?;
    let status = watermark::check(&state, watermark::BATCH)
        .await
        .map_err(crate::api::error::ApiError::from)?;
    let next = found
        .next_before
        .map(|before| filters.link("/console/audit", Some(before)));
    let html = view::list(&view::ListView {
        nav: nav(&user),
        filters: &filters,
        export: filters.link("/console/audit/export", None),
        found: &found,
        next,
        status: &status,
    });
    Ok(pages::page_response(StatusCode::OK, html))
}

/// `GET /console/audit/{seq}`: one event's JSON, pretty-printed.
async fn event(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(seq): Path<String>,
) -> Result<Response, ConsoleError> {
    user.principal.require(Permission::AuditRead)?;
    let not_found = || ConsoleError::Page {
        status: StatusCode::NOT_FOUND,
        message: format!("no audit event {seq:?}: pick one from the Audit page"),
        denied: None,
    };
    let wanted: u64 = seq.parse().map_err(|_| not_found())?;
    let filter = rows::Filter {
        before: Some(wanted.checked_add(1).ok_or_else(not_found)?),
        ..rows::Filter::default()
    };
    let found = search(&state, &filter, 1).await?;
    let shown = found
        .items
        .iter()
        .find(|e| e.get("sequence").and_then(serde_json::Value::as_u64) == Some(wanted));
    let problem = found
        .excluded
        .iter()
        .find(|(s, _)| *s == wanted)
        .map(|(_, p)| p.as_str());
    let html = match (shown, problem) {
        (Some(event), _) => view::event(&nav(&user), wanted, Ok(event)),
        (None, Some(problem)) => view::event(&nav(&user), wanted, Err(problem)),
        (None, None) => return Err(not_found()),
    };
    Ok(pages::page_response(StatusCode::OK, html))
}

/// `POST /console/audit/verify`: forgets the watermark, so the check starts again at the
/// first event (an event edited before the watermark is found only so); back to the page,
/// which runs it.
async fn verify_from_start(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    user: Result<ConsoleUser, ConsoleError>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let user = checked_post(&state, &headers, peer, user, &form(&body))?;
    user.principal.require(Permission::AuditRead)?;
    watermark::reset(&state, user.principal.actor())
        .await
        .map_err(crate::api::error::ApiError::from)?;
    Ok(Redirect::to("/console/audit").into_response())
}

/// `GET /console/audit/export?FILTERS`: the search's every event as JSON lines, in the
/// format of `portcullis audit export` (a header line with the audit public keys and the
/// store's head, then one event per line exactly as signed), newest first. Streamed a
/// thousand events at a time, so a large log never sits in memory.
async fn export(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    user.principal.require(Permission::AuditRead)?;
    let filters = Filters::parse(query.as_deref().unwrap_or_default());
    let mut filter = filters.to_filter(state.clock.unix_secs())?;
    filter.before = None;
    let keys = state
        .keys
        .audit_public_keys()
        .await
        .map_err(crate::api::error::ApiError::from)?;
    let head = {
        let mut conn = state.store.conn().await?;
        rows::head(&mut conn).await?
    };
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        version: 1,
        exported_at: humantime::format_rfc3339_millis(state.clock.now()).to_string(),
        head: Some(Head {
            sequence: head.sequence,
            hash: head.hash,
        }),
        keys,
    };
    let mut first = json_line(&header);
    // Events committed after the head was read are left out: the export ends at its head.
    filter.before = head.sequence.checked_add(1);
    let pages = futures_util::stream::unfold(Some(filter), move |next| {
        let state = state.clone();
        let header_line = std::mem::take(&mut first);
        async move {
            let filter = next?;
            let found = match search(&state, &filter, EXPORT_PAGE).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e.message, "the console's audit export failed");
                    return Some((Err(std::io::Error::other(e.message)), None));
                }
            };
            let mut chunk = header_line;
            for item in &found.items {
                chunk.push_str(&json_line(item));
            }
            let following = found.next_before.map(|before| rows::Filter {
                before: Some(before),
                ..filter
            });
            Some((Ok(Bytes::from(chunk)), following))
        }
    });
    let mut response = Body::from_stream(pages).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"portcullis-audit.jsonl\""),
    );
    Ok(response)
}

fn json_line(value: &impl serde::Serialize) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    line.push('\n');
    line
}
