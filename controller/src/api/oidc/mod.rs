//! OIDC login, bound to the CLI that started it.
//!
//! 1. `POST /v1/auth/oidc/start`: the CLI sends the SHA-256 of a secret only it knows (and, in
//!    loopback mode, its 127.0.0.1 port). The controller stores a pending login (state, nonce
//!    and PKCE verifier, the latter two sealed) and answers with the provider's URL.
//! 2. `GET /v1/auth/oidc/callback`: the provider sends the browser back. The state is used
//!    once; the code is exchanged and the ID token verified; the identity waits in the store
//!    under the hash of a one-time code, which goes to the CLI's loopback port (or is shown
//!    on the page for the user to type).
//! 3. `POST /v1/auth/oidc/redeem`: the CLI sends the one-time code together with its secret
//!    (never in a URL) and receives the API token. Device mode polls here too.
//!
//! A login completed in someone else's browser leaves its code in that browser (or on that
//! machine's loopback): the CLI that started it never gets the code, and the code is useless
//! without that CLI's secret. See docs/auth.md.
//!
//! One module per step (`start`, `callback`, `redeem`); this one holds what they share:
//! the rate limit, the audit of failures, the sealing of a login's secrets.

mod callback;
mod redeem;
mod start;

pub(crate) use callback::exchange;
pub(crate) use callback::{callback, CallbackQuery};
pub(crate) use redeem::redeem;
pub(crate) use start::{begin_in_browser, new_login, record_started, start};

use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use crate::audit::event::{LoginFailure, LoginRef};
use crate::audit::{Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::normalize_short_code;
use crate::oidc::{OidcError, Relying};
use crate::state::AppState;
use crate::store::oidc_logins::{self as logins, PendingLogin};
use crate::store::rate_limits;

pub(crate) fn relying(state: &AppState) -> Result<&Relying, ApiError> {
    state.oidc.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "oidc_disabled",
            "OIDC login is not configured on this controller (no [auth.oidc] section)",
        )
    })
}

fn oidc_error(err: OidcError) -> ApiError {
    let status = match err {
        OidcError::Unreachable { .. } | OidcError::Refused(_) => StatusCode::BAD_GATEWAY,
        OidcError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        OidcError::InvalidToken(_) | OidcError::Claims(_) => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, "login_failed", err.to_string())
}

/// Counts a login attempt from `peer`; refuses past `auth.login_rate_limit_per_minute`.
pub(crate) async fn rate_limit(state: &AppState, peer: std::net::IpAddr) -> Result<(), ApiError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let allowed = {
        let mut conn = state.store.conn().await?;
        rate_limits::hit(
            &mut conn,
            &format!("login:{peer}"),
            now,
            60,
            state.config.login_rate_limit,
        )
        .await?
    };
    if allowed {
        return Ok(());
    }
    note_failure(state, peer, "rate limited");
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many login attempts from this address; wait a minute",
    ))
}

/// Counts a failed login that names no login of ours (anyone can send one): summed per
/// address into one event per window (audit::denials).
fn note_failure(state: &AppState, peer: std::net::IpAddr, reason: &'static str) {
    state.metrics.login(
        crate::metrics::LoginMethod::Oidc,
        crate::metrics::LoginOutcome::Failure,
    );
    state.denials.note(crate::audit::denials::Failure {
        kind: crate::audit::denials::FailureKind::LoginFailed,
        source: peer,
        reason,
        attempted_name: None,
    });
}

/// Records a failed login of a pending login (never with a secret in it).
async fn record_failure(
    state: &AppState,
    source: &str,
    login_id: &str,
    reason: &str,
) -> Result<(), ApiError> {
    let event = Event::LoginFailed {
        reason: reason.to_owned(),
        details: LoginFailure::Login(LoginRef {
            login_id: login_id.to_owned(),
            mode: None,
        }),
    };
    state
        .audit_alone(AuditEvent::new(Actor::anonymous(source), event))
        .await?;
    Ok(())
}

/// Ends a pending login with `reason` (the CLI is told it when it redeems) and audits it.
pub(crate) async fn fail_login(
    state: &AppState,
    login: &PendingLogin,
    reason: &str,
) -> Result<(), ApiError> {
    let mut tx = state.begin_audited().await?;
    logins::fail(tx.write(), &login.id, reason).await?;
    let event = Event::LoginFailed {
        reason: reason.to_owned(),
        details: LoginFailure::Login(LoginRef {
            login_id: login.id.clone(),
            mode: Some(login.mode.clone()),
        }),
    };
    tx.commit(AuditEvent::new(Actor::anonymous(&login.source), event))
        .await?;
    Ok(())
}

fn sealing_context(login_id: &str) -> String {
    format!("{login_id}/oidc-login")
}

#[derive(serde::Serialize, Deserialize)]
struct BrowserSecrets {
    nonce: String,
    pkce_verifier: String,
}

pub(crate) fn normalize_code(mode: &str, code: &str) -> String {
    if mode == logins::CODE {
        normalize_short_code(code)
    } else {
        code.trim().to_owned()
    }
}
