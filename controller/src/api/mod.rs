//! The HTTPS JSON API under `/v1`. [`router`] builds the routes over the shared state and can
//! be exercised without a socket; [`serve`] runs it on a TLS listener ([`listener`]).

pub(crate) mod audit;
pub(crate) mod catalog;
#[cfg(test)]
mod catalog_tests;
pub(crate) mod certificate;
pub(crate) mod connections;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod health;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod local_login;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod oidc;
pub(crate) mod oidc_pages;
pub(crate) mod policy;
pub(crate) mod recordings;
pub(crate) mod requests;
pub(crate) mod service_accounts;
pub(crate) mod service_token;
pub(crate) mod session_secrets;
pub(crate) mod sessions;
mod step_up;
pub(crate) mod targets;
pub(crate) mod tls_ca;
pub(crate) mod users;
pub(crate) mod workers;

#[cfg(test)]
mod gateway_forward_tests;
#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
mod pve_tests;
#[cfg(test)]
mod recordings_read_tests;
#[cfg(test)]
mod recordings_tests;
#[cfg(test)]
mod requests_tests;
#[cfg(test)]
mod session_secrets_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod users_tests;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;
pub(crate) use listener::serve;

/// Every route of the API.
pub(crate) fn router(state: AppState) -> Router {
    let max_body = state.config.api_max_body_bytes;
    let mut routes = Router::new();
    if state.dev_login {
        // Only `portcullis dev` serves it; elsewhere the path is an unknown route (404).
        routes = routes.route("/v1/auth/dev-login", post(login::dev_login));
    }
    routes
        .route("/v1/health", get(health::health))
        .route("/v1/auth/oidc/start", post(oidc::start))
        .route("/v1/auth/oidc/callback", get(oidc::callback))
        .route("/v1/auth/oidc/redeem", post(oidc::redeem))
        .route("/v1/auth/logout", post(logout::logout))
        .route("/v1/auth/local/login", post(local_login::login))
        .route("/v1/auth/service-token", post(service_token::token))
        .route("/v1/users/revoke", post(logout::revoke_user))
        .route("/v1/users/local", get(users::list).post(users::add))
        .route("/v1/users/local/{name}", get(users::show))
        .route("/v1/users/local/{name}/disable", post(users::disable))
        .route("/v1/users/local/{name}/reset", post(users::reset))
        .route(
            "/v1/users/services",
            get(service_accounts::list).post(service_accounts::add),
        )
        .route(
            "/v1/users/services/{name}/revoke-key",
            post(service_accounts::revoke_key),
        )
        .route("/v1/whoami", get(login::whoami))
        .route("/v1/targets", get(targets::list).post(targets::create))
        .route(
            "/v1/targets/{id}",
            get(targets::get)
                .patch(targets::update)
                .delete(targets::delete),
        )
        .route(
            "/v1/targets/{id}/authorize-session",
            post(sessions::authorize_session),
        )
        .route("/v1/catalog", get(catalog::status))
        .route("/v1/catalog/sync", post(catalog::sync_now))
        .route("/v1/inventory", get(catalog::inventory))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{id}", get(sessions::get))
        .route("/v1/sessions/{id}/cancel", post(sessions::cancel))
        .route("/v1/sessions/{id}/secrets", get(session_secrets::get))
        .route("/v1/sessions/{id}/recordings", get(recordings::list))
        .route(
            "/v1/sessions/{id}/recordings/{recording}/chunks",
            get(recordings::chunks),
        )
        .route(
            "/v1/sessions/{id}/recordings/{recording}/bundle",
            get(recordings::bundle),
        )
        .route("/v1/step-up/{id}/totp", post(step_up::totp))
        .route("/v1/requests", get(requests::list).post(requests::create))
        .route("/v1/requests/{id}", get(requests::get))
        .route("/v1/requests/{id}/approve", post(requests::approve))
        .route("/v1/requests/{id}/deny", post(requests::deny))
        .route("/v1/requests/{id}/revoke", post(requests::revoke))
        .route("/v1/requests/{id}/run/start", post(requests::run_start))
        .route(
            "/v1/requests/{id}/run/keepalive",
            post(requests::run_keepalive),
        )
        .route("/v1/requests/{id}/run/finish", post(requests::run_finish))
        .route("/v1/workers", get(workers::list))
        .route("/v1/workers/join-tokens", post(workers::create_join_token))
        .route(
            "/v1/workers/{id}",
            get(workers::get).delete(workers::delete),
        )
        .route("/v1/policy/reload", post(policy::reload))
        .route("/v1/policy/simulate", post(policy::simulate))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/ssh/ca", get(sessions::ssh_ca))
        .route("/v1/ssh/krl", get(sessions::ssh_krl))
        .route("/v1/ssh/gateway-ca", get(sessions::gateway_ca))
        .route("/v1/tls/ca", get(tls_ca::bundle))
        .merge(crate::console::routes())
        .fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such API route; see docs/api.md",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit_denials,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tls_ca::name_bundle,
        ))
        .layer(axum::middleware::from_fn(move |req, next| {
            refuse_declared_oversize(max_body, req, next)
        }))
        .with_state(state)
}

/// Records a `permission_denied` event for every refusal a handler marked with
/// [`error::Denied`]. If the event cannot be written the answer becomes 503: a denial that
/// cannot be audited is still a denial, but the caller learns the controller is unwell.
async fn audit_denials(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let Some(denied) = response.extensions().get::<error::Denied>().cloned() else {
        return response;
    };
    let result = async {
        use crate::audit::{event, AuditEvent, Event};
        let event = Event::PermissionDenied {
            reason: format!("missing permission {}", denied.permission),
            details: event::PermissionDenied {
                permission: denied.permission,
                method,
                path,
            },
        };
        state
            .audit_alone(AuditEvent::new(denied.actor, event))
            .await
    }
    .await;
    match result {
        Ok(()) => response,
        Err(err) => error::ApiError::from(err).into_response(),
    }
}

/// Refuses a body whose declared length is over the limit before any of it is read, so the
/// client gets the 413 rather than a reset of a connection with unread data (a client that
/// sent `Expect: 100-continue` never sends the body at all). Bodies without a length are
/// still cut at the limit by [`DefaultBodyLimit`].
async fn refuse_declared_oversize(
    max: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX)) {
        return error::ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}
