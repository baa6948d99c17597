//! The console's OIDC login, through the controller's own callback
//! (`/v1/auth/oidc/callback`, shared with the CLI's logins):
//!
//! 1. `GET /console/login/oidc` stores a pending login of mode `console` bound to a random
//!    secret that only this browser gets, in the `__Host-portcullis-oidc` cookie (SameSite=Lax,
//!    so the provider's redirect back carries it; HttpOnly; for the login's lifetime), and
//!    sends the browser to the provider.
//! 2. The callback claims the login by its state (once), then [`came_back`] checks that the
//!    browser brought the cookie of the login it claims: a login finished in another browser
//!    (a login link sent to a victim, or a callback URL replayed elsewhere) is refused and
//!    audited before the code is exchanged. Then the code is exchanged, the login marked
//!    redeemed (single use), and the console session opened with its `login_succeeded`.
//!
//! The answer to the callback is a page that moves on to the console by `<meta refresh>`,
//! not a redirect: the callback is a navigation that came from the provider's site, and a
//! browser keeps SameSite=Strict cookies (the console's) off a redirect chain that started
//! cross-site; the refresh is a navigation of the console's own.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ConsoleError;
use super::html::Html;
use super::pages;
use crate::api::error::ApiError;
use crate::api::extract::PeerAddr;
use crate::api::oidc::{self as api_oidc, CallbackQuery};
use crate::clock;
use crate::oidc::Relying;
use crate::secret::constant_time_eq;
use crate::state::AppState;
use crate::store::oidc_logins::{self as logins, PendingLogin};
use crate::store::users::UserRecord;

/// The cookie that binds a console login to the browser that started it.
pub(crate) const STATE_COOKIE: &str = "__Host-portcullis-oidc";

/// `GET /console/login/oidc`: starts a console login at the provider.
pub(crate) async fn start(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
) -> Result<Response, ConsoleError> {
    let Some(relying) = state.oidc.as_deref() else {
        return Err(ConsoleError::Page {
            status: StatusCode::NOT_FOUND,
            message: "OIDC login is not configured on this controller (no [auth.oidc] section); \
                      log in as a local user"
                .to_owned(),
            denied: None,
        });
    };
    api_oidc::rate_limit(&state, peer.ip()).await?;
    let binding = crate::ids::new_secret();
    let timeout = relying.config().login_timeout.as_secs();
    let mut login = api_oidc::new_login(
        state.clock.unix_secs(),
        timeout,
        &peer.ip().to_string(),
        crate::ids::secret_hash(&binding),
    );
    let url = api_oidc::begin_in_browser(&state, relying, logins::CONSOLE, &mut login).await?;
    api_oidc::record_started(&state, relying, &login).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url),
            (
                header::SET_COOKIE,
                format!(
                    "{STATE_COOKIE}={binding}; Path=/; Secure; HttpOnly; SameSite=Lax; \
                     Max-Age={timeout}"
                ),
            ),
        ],
    )
        .into_response())
}

/// The callback's answer to a console login it claimed (the state is used up): the console
/// session, or a page saying why not. Every refusal is audited as the login's failure.
pub(crate) async fn came_back(
    state: &AppState,
    relying: &Relying,
    login: &PendingLogin,
    headers: &HeaderMap,
    query: &CallbackQuery,
) -> Result<Response, ApiError> {
    let bound = super::session::cookie_named(headers, STATE_COOKIE).is_some_and(|secret| {
        constant_time_eq(&crate::ids::secret_hash(secret), &login.cli_secret_hash)
    });
    if !bound {
        let why = "the login came back to another browser than the one that started it";
        api_oidc::fail_login(state, login, why).await?;
        return Ok(failed(&format!(
            "{why}: nothing was issued. Start the login from the console's login page in this \
             browser."
        )));
    }
    let identity = match api_oidc::exchange(state, relying, login, query).await {
        Ok(identity) => identity,
        Err(message) => {
            api_oidc::fail_login(state, login, &message).await?;
            return Ok(failed(&format!("{message}; nothing was issued")));
        }
    };
    let now = clock::to_i64(state.clock.unix_secs());
    let user = UserRecord {
        id: crate::ids::new_id(crate::ids::IdKind::User),
        issuer: identity.issuer,
        subject: identity.subject,
        username: identity.username,
        email: identity.email,
        name: identity.name,
        groups: identity.groups,
        amr: identity.amr,
        acr: identity.acr,
        auth_time: identity.auth_time,
        updated_at: now,
    };
    let mut tx = state.begin_audited().await?;
    if !logins::redeem(tx.write().conn(), &login.id, now).await? {
        return Ok(failed("this login was already used: log in again"));
    }
    let opened = super::session::open_in(tx, state, &user, &login.source).await?;
    state.metrics.login(
        crate::metrics::LoginMethod::Oidc,
        crate::metrics::LoginOutcome::Success,
    );
    let mut response = pages::page_response(StatusCode::OK, moving_on());
    let headers = response.headers_mut();
    for cookie in [super::session::set_cookie(&opened.secret), clear_binding()] {
        if let Ok(value) = cookie.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    with_console_headers(&mut response);
    Ok(response)
}

/// The `Set-Cookie` that makes the browser forget the binding (single use).
fn clear_binding() -> String {
    format!("{STATE_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// A refused console login: the console's error page, and the binding forgotten.
fn failed(message: &str) -> Response {
    let status = StatusCode::UNAUTHORIZED;
    let mut response = pages::page_response(status, pages::error(status, message));
    if let Ok(value) = clear_binding().parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    with_console_headers(&mut response);
    response
}

/// The console's security headers on a page the API's callback route serves, with no
/// referrer at all: its URL held the provider's code and state.
fn with_console_headers(response: &mut Response) {
    super::set_security_headers(response.headers_mut());
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
}

/// The page after a console login: on to the console by a refresh of its own (see the
/// module's doc), with a link for a browser that does not refresh.
fn moving_on() -> Html {
    let mut h = Html::new();
    h.raw(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url=/console/sessions\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Logged in · Portcullis</title><link rel=\"stylesheet\" href=\"",
    )
    .text(&super::assets::css_path())
    .raw("\"><link rel=\"icon\" type=\"image/svg+xml\" href=\"")
    .text(&super::assets::icon_path())
    .raw(
        "\"></head><body><main><h1>Logged in</h1>\
         <p><a href=\"/console/sessions\">Continue to the console</a></p></main></body></html>\n",
    );
    h
}
