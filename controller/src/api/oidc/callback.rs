//! Step 2, `GET /v1/auth/oidc/callback`: where the provider sends the browser back. The
//! state is used once; the code is exchanged and the ID token verified; the identity waits in
//! the store under the hash of a one-time code, which goes to the CLI's loopback port (or is
//! shown on the page for the user to type). Answers with HTML or a redirect, never JSON.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{
    fail_login, normalize_code, note_failure, rate_limit, record_failure, relying, sealing_context,
    BrowserSecrets,
};
use crate::api::error::ApiError;
use crate::api::extract::PeerAddr;
use crate::api::oidc_pages::{failure_response, html_escape, page, redirect};
use crate::clock;
use crate::ids::{new_secret, new_short_code, secret_hash};
use crate::oidc::{OidcIdentity, Relying};
use crate::secret::ExposeSecret as _;
use crate::state::AppState;
use crate::store::oidc_logins::{self as logins, PendingLogin};

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl CallbackQuery {
    /// The authorization code the provider sent back, or why there is none (the provider's
    /// own error, as text for the failure page or the CLI's loopback port).
    pub(crate) fn outcome(&self) -> Result<&str, String> {
        if let Some(error) = &self.error {
            return Err(format!(
                "the OpenID provider refused the login: {error}{}",
                self.error_description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
        self.code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "the provider's answer has no authorization code".to_owned())
    }

    /// The `state` echoed by the provider; empty when absent.
    pub(crate) fn state(&self) -> &str {
        self.state.as_deref().unwrap_or_default()
    }
}

/// `GET /v1/auth/oidc/callback`: where the provider sends the browser back. Answers with
/// HTML (or a redirect to the CLI's loopback port), never JSON.
pub(crate) async fn callback(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: axum::http::HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    match callback_inner(&state, peer.ip(), &headers, query).await {
        Ok(response) => response,
        Err(err) => page(
            err.status,
            "Login failed",
            &format!(
                "<p>{}</p><p>Nothing was issued. Run <code>portcullis login</code> again.</p>",
                html_escape(&err.message)
            ),
        ),
    }
}

async fn callback_inner(
    state: &AppState,
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    query: CallbackQuery,
) -> Result<Response, ApiError> {
    let relying = relying(state)?;
    rate_limit(state, peer).await?;
    let login = claim_login(state, peer, query.state()).await?;
    if login.mode == logins::CONSOLE {
        // Finished here, in the browser that started it: a session cookie, no code.
        return crate::console::oidc::came_back(state, relying, &login, headers, &query).await;
    }
    let identity = match exchange(state, relying, &login, &query).await {
        Ok(identity) => identity,
        Err(message) => {
            fail_login(state, &login, &message).await?;
            return Ok(failure_response(&login, &message));
        }
    };
    // A step-up login: the ID token must answer its challenge (fresh, strong, the user's).
    if let Some(challenge) = crate::step_up::of_login(state, &login.id).await? {
        let checked = crate::step_up::check_oidc(state, &challenge, &identity, &login.source);
        if let Err(err) = checked.await.map(drop) {
            let message = match err {
                crate::step_up::StepUpError::Refused(message) => message,
                other => return Err(other.into()),
            };
            fail_login(state, &login, &message).await?;
            return Ok(failure_response(&login, &message));
        }
    }
    hand_over(state, &login, &identity).await
}

/// The pending login the provider's `state` names, with the state marked used: it works
/// once, and only before the login expires.
async fn claim_login(
    state: &AppState,
    peer: std::net::IpAddr,
    oauth_state: &str,
) -> Result<PendingLogin, ApiError> {
    let now = clock::to_i64(state.clock.unix_secs());
    if oauth_state.is_empty() {
        return Err(ApiError::bad_request(
            "the provider's answer has no `state`; this page is only reached from a login",
        ));
    }
    let login = {
        let mut conn = state.store.conn().await?;
        logins::by_state(&mut conn, &secret_hash(oauth_state)).await?
    };
    let Some(login) = login else {
        note_failure(state, peer, "unknown state on callback");
        return Err(ApiError::bad_request(
            "this login is unknown to the controller (unknown state)",
        ));
    };
    if login.callback_at.is_some() {
        record_failure(state, &peer.to_string(), &login.id, "state reused").await?;
        return Err(ApiError::bad_request(
            "this login link was already used: a login's state works once",
        ));
    }
    if login.expires_at <= now {
        record_failure(state, &peer.to_string(), &login.id, "login expired").await?;
        return Err(ApiError::bad_request(
            "this login has expired (auth.oidc.login_timeout)",
        ));
    }
    let used = {
        let mut conn = state.store.conn().await?;
        logins::use_state(&mut conn, &login.id, now).await?
    };
    if !used {
        record_failure(state, &peer.to_string(), &login.id, "state reused").await?;
        return Err(ApiError::bad_request(
            "this login link was already used: a login's state works once",
        ));
    }
    Ok(login)
}

/// The provider's answer to a login: the code exchanged and the ID token verified.
pub(crate) async fn exchange(
    state: &AppState,
    relying: &Relying,
    login: &PendingLogin,
    query: &CallbackQuery,
) -> Result<OidcIdentity, String> {
    let code = query.outcome()?;
    let secrets = state
        .keys
        .open_secret(&sealing_context(&login.id), &login.sealed)
        .map_err(|e| e.to_string())?;
    let secrets: BrowserSecrets = serde_json::from_slice(secrets.expose_secret())
        .map_err(|e| format!("stored login: {e}"))?;
    relying
        .exchange_code(code, secrets.pkce_verifier, &secrets.nonce)
        .await
        .map_err(|e| {
            tracing::warn!(login.id = %login.id, error = %portcullis_proto::text::escaped(&e), "OIDC login failed");
            e.to_string()
        })
}

/// Keeps the identity under the hash of a new one-time code and passes the code on: to the
/// CLI's loopback port, or on a page for the user to type into the CLI.
async fn hand_over(
    state: &AppState,
    login: &PendingLogin,
    identity: &OidcIdentity,
) -> Result<Response, ApiError> {
    let code = if login.mode == logins::LOOPBACK {
        new_secret()
    } else {
        new_short_code()
    };
    let identity_json =
        serde_json::to_string(identity).map_err(|e| ApiError::internal(e.to_string()))?;
    {
        let mut conn = state.store.conn().await?;
        logins::complete(
            &mut conn,
            &login.id,
            &identity_json,
            &secret_hash(&normalize_code(&login.mode, &code)),
        )
        .await?;
    }
    if login.mode == logins::LOOPBACK {
        let port = login.redirect_port.unwrap_or(0);
        let location = format!(
            "http://127.0.0.1:{port}/callback?login={}&code={}",
            login.id, code
        );
        return Ok(redirect(&location));
    }
    Ok(page(
        StatusCode::OK,
        "Type this code into the CLI",
        &format!(
            "<p>Signed in as <b>{user}</b>. Type this code into the <code>portcullis login</code> \
             that is waiting for it:</p><p class=\"code\">{code}</p>\
             <p class=\"warn\">Only type it into a portcullis CLI <b>you started yourself</b>, \
             here, just now (the login was started from {source}). Never read it out or send \
             it to anyone: whoever types it into the CLI that started this login becomes you.</p>",
            user = html_escape(&identity.username),
            source = html_escape(&login.source),
        ),
    ))
}
