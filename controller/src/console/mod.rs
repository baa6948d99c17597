//! The web console under `/console/` (docs/console.md), on the API's listener: server-rendered
//! pages over the API's own domain functions and permission checks.
//!
//! Its login session is a `__Host-` cookie ([`session`]) accepted only by these routes; `/v1`
//! stays bearer-only. Every POST passes [`guard`] (same origin, CSRF token). Every response
//! carries a strict Content-Security-Policy: no inline script or style, the stylesheet is
//! served from the binary ([`assets`]).

mod assets;
mod audit;
pub(crate) mod error;
mod guard;
mod handlers;
#[cfg(test)]
mod harness;
mod html;
pub(crate) mod oidc;
mod pages;
mod policy;
mod recordings;
pub(crate) mod session;
mod sessions_query;
mod targets;
mod workers;

#[cfg(test)]
mod tests;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// The Content-Security-Policy of every console response.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
                              img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                              base-uri 'none'";

/// The console's routes, to merge into the API's router (which adds its layers: body limit,
/// the audit of refused permissions).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(handlers::index))
        .route("/console/", get(handlers::index))
        .route(
            "/console/login",
            get(handlers::login_form).post(handlers::login),
        )
        .route("/console/login/oidc", get(oidc::start))
        .route("/console/logout", post(handlers::logout))
        .route("/console/sessions", get(handlers::sessions))
        .route("/console/sessions/{id}/cancel", post(handlers::cancel))
        .route("/console/assets/{file}", get(assets::get))
        .merge(recordings::routes())
        .merge(policy::routes())
        .merge(targets::routes())
        .merge(workers::routes())
        .merge(audit::routes())
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_request(host_from_authority))
}

/// HTTP/2 carries the request's host in the `:authority` pseudo-header, not in `Host`: the
/// origin check ([`guard::cross_site`]) compares `Origin` with `Host`, so a request without one
/// gets it from its URI's authority (what the browser connected to). A request with a `Host`
/// keeps it.
async fn host_from_authority<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    if !request.headers().contains_key(header::HOST) {
        let authority = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if let Some(host) = authority {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    request
}

/// The headers of every console response: CSP, no sniffing, no referrer to other sites, no
/// framing; and
/// `Cache-Control: no-store` unless the response set its own (the hashed assets).
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    set_security_headers(response.headers_mut());
    response
}

/// [`security_headers`] on `headers` (also for the console pages the API's OIDC callback
/// serves).
pub(crate) fn set_security_headers(headers: &mut axum::http::HeaderMap) {
    // The player pages' policy (recordings::PLAYER_CSP) is the one a handler may set;
    // any other becomes the console's.
    if headers.get(header::CONTENT_SECURITY_POLICY)
        != Some(&HeaderValue::from_static(recordings::PLAYER_CSP))
    {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: under it Chromium sends `Origin: null` with the console's own
        // form posts, which the origin check must refuse. `same-origin` sends nothing to
        // other sites.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
