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

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_proto::api::{
    OidcLoginMode, OidcPending, OidcRedeemRequest, OidcStartRequest, OidcStartResponse,
};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr};
use super::login::issue_token;
use super::oidc_pages::{failure_response, html_escape, page, redirect};
use crate::audit::event::{LoginFailure, LoginRef};
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, new_secret, new_short_code, normalize_short_code, secret_hash, IdKind};
use crate::oidc::{DevicePoll, OidcError, OidcIdentity, Relying};
use crate::secret::{constant_time_eq, ExposeSecret as _};
use crate::state::AppState;
use crate::store::oidc_logins::{self as logins, PendingLogin};
use crate::store::rate_limits;
use crate::store::users::UserRecord;

fn relying(state: &AppState) -> Result<&Relying, ApiError> {
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
async fn rate_limit(state: &AppState, peer: std::net::IpAddr) -> Result<(), ApiError> {
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
async fn fail_login(state: &AppState, login: &PendingLogin, reason: &str) -> Result<(), ApiError> {
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

/// `POST /v1/auth/oidc/start`.
pub(crate) async fn start(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<OidcStartRequest>,
) -> Result<(StatusCode, Json<OidcStartResponse>), ApiError> {
    let relying = relying(&state)?;
    rate_limit(&state, peer.ip()).await?;
    let cli_secret_hash = URL_SAFE_NO_PAD
        .decode(body.secret_hash.trim_end_matches('='))
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| {
            ApiError::field(
                "secret_hash",
                "must be the base64url SHA-256 (32 bytes) of a random secret the CLI keeps",
            )
        })?;
    match (body.mode, body.redirect_port) {
        (OidcLoginMode::Loopback, None | Some(0)) => {
            return Err(ApiError::field(
                "redirect_port",
                "loopback mode needs the port the CLI listens on at 127.0.0.1",
            ))
        }
        (OidcLoginMode::Code | OidcLoginMode::Device, Some(_)) => {
            return Err(ApiError::field(
                "redirect_port",
                "only loopback mode takes a redirect port",
            ))
        }
        _ => {}
    }
    let now = state.clock.unix_secs();
    let timeout = relying.config().login_timeout.as_secs();
    let id = new_id(IdKind::Login);
    let source = peer.ip().to_string();
    let mut login = PendingLogin {
        id: id.clone(),
        mode: String::new(),
        state_hash: None,
        sealed: Vec::new(),
        cli_secret_hash,
        redirect_port: body.redirect_port.map(i64::from),
        source: source.clone(),
        created_at: clock::to_i64(now),
        expires_at: clock::to_i64(now + timeout),
        callback_at: None,
        identity: None,
        code_hash: None,
        failed_attempts: 0,
        error: None,
        redeemed_at: None,
    };
    let mut response = OidcStartResponse {
        login_id: id.clone(),
        authorization_url: None,
        expires_at: now + timeout,
        user_code: None,
        verification_uri: None,
        verification_uri_complete: None,
        interval: None,
    };
    match body.mode {
        OidcLoginMode::Loopback | OidcLoginMode::Code => {
            let oauth_state = new_secret();
            let nonce = new_secret();
            let (challenge, pkce_verifier) = Relying::pkce();
            let url = relying
                .authorization_url(&oauth_state, &nonce, challenge)
                .await
                .map_err(oidc_error)?;
            let secrets = serde_json::to_vec(&BrowserSecrets {
                nonce,
                pkce_verifier,
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
            login.mode = if body.mode == OidcLoginMode::Loopback {
                logins::LOOPBACK
            } else {
                logins::CODE
            }
            .into();
            login.state_hash = Some(secret_hash(&oauth_state));
            login.sealed = state.keys.seal_secret(&sealing_context(&id), &secrets)?;
            response.authorization_url = Some(url);
        }
        OidcLoginMode::Device => {
            if !relying.config().device_flow {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "device_flow_disabled",
                    "the device flow is disabled on this controller (auth.oidc.device_flow = \
                     false); use `portcullis login` or `portcullis login --no-browser`",
                ));
            }
            let device = relying.device_start().await.map_err(oidc_error)?;
            let lifetime = device.expires_in.clamp(1, timeout);
            login.mode = logins::DEVICE.into();
            login.expires_at = clock::to_i64(now + lifetime);
            login.sealed = state
                .keys
                .seal_secret(&sealing_context(&id), device.device_code.as_bytes())?;
            response.expires_at = now + lifetime;
            response.user_code = Some(device.user_code);
            response.verification_uri = Some(device.verification_uri);
            response.verification_uri_complete = device.verification_uri_complete;
            response.interval = Some(device.interval.unwrap_or(5).max(1));
        }
    }
    let mut tx = state.begin_audited().await?;
    logins::prune(tx.read(), clock::to_i64(now)).await?;
    logins::insert(tx.write(), &login).await?;
    let event = Event::LoginStarted {
        details: event::LoginStarted {
            login_id: id,
            mode: login.mode.clone(),
            issuer: relying.config().issuer.clone(),
        },
    };
    tx.commit(AuditEvent::new(Actor::anonymous(&source), event))
        .await?;
    Ok((StatusCode::CREATED, Json(response)))
}

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
    Query(query): Query<CallbackQuery>,
) -> Response {
    match callback_inner(&state, peer.ip(), query).await {
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
    query: CallbackQuery,
) -> Result<Response, ApiError> {
    let relying = relying(state)?;
    rate_limit(state, peer).await?;
    let now = clock::to_i64(state.clock.unix_secs());
    let oauth_state = query.state();
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
    let outcome = exchange(state, relying, &login, &query).await;
    let identity = match outcome {
        Ok(identity) => identity,
        Err(message) => {
            fail_login(state, &login, &message).await?;
            return Ok(failure_response(&login, &message));
        }
    };
    let code = if login.mode == logins::LOOPBACK {
        new_secret()
    } else {
        new_short_code()
    };
    let identity_json =
        serde_json::to_string(&identity).map_err(|e| ApiError::internal(e.to_string()))?;
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

/// The provider's answer to a login: the code exchanged and the ID token verified.
async fn exchange(
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

pub(crate) fn normalize_code(mode: &str, code: &str) -> String {
    if mode == logins::CODE {
        normalize_short_code(code)
    } else {
        code.trim().to_owned()
    }
}

/// `POST /v1/auth/oidc/redeem`: the one-time code with the CLI's secret gives the API token.
pub(crate) async fn redeem(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<OidcRedeemRequest>,
) -> Result<Response, ApiError> {
    let relying = relying(&state)?;
    let now = clock::to_i64(state.clock.unix_secs());
    let source = peer.ip().to_string();
    let login = {
        let mut conn = state.store.conn().await?;
        logins::get(&mut conn, &body.login_id).await?
    };
    let refused = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "login_failed", message);
    let Some(login) = login else {
        rate_limit(&state, peer.ip()).await?;
        return Err(refused(
            "no such login (unknown or long expired); run `portcullis login` again",
        ));
    };
    if !constant_time_eq(&secret_hash(&body.secret), &login.cli_secret_hash) {
        rate_limit(&state, peer.ip()).await?;
        let mut conn = state.store.conn().await?;
        logins::count_failure(&mut conn, &login.id).await?;
        drop(conn);
        record_failure(&state, &source, &login.id, "wrong client secret on redeem").await?;
        return Err(refused(
            "this login was started by another client: only the CLI that started a login can \
             redeem it",
        ));
    }
    if let Some(error) = &login.error {
        return Err(refused(&format!("the login failed: {error}")));
    }
    if login.redeemed_at.is_some() {
        return Err(refused(
            "this login was already redeemed; run `portcullis login` again",
        ));
    }
    if login.expires_at <= now {
        return Err(refused(
            "this login expired before it was completed; run `portcullis login` again",
        ));
    }
    if login.failed_attempts >= logins::MAX_FAILED_ATTEMPTS {
        fail_login(&state, &login, "too many wrong codes").await?;
        return Err(refused(
            "too many wrong codes: this login is burnt; run `portcullis login` again",
        ));
    }
    let identity = if login.mode == logins::DEVICE {
        let device_code = state
            .keys
            .open_secret(&sealing_context(&login.id), &login.sealed)?;
        let device_code = String::from_utf8_lossy(device_code.expose_secret()).into_owned();
        match relying.device_poll(&device_code).await {
            Ok(DevicePoll::Pending) => return Ok(pending("authorization_pending", 5)),
            Ok(DevicePoll::SlowDown) => return Ok(pending("slow_down", 10)),
            Ok(DevicePoll::Done(identity)) => *identity,
            Err(err) => {
                let message = err.to_string();
                fail_login(&state, &login, &message).await?;
                return Err(oidc_error(err));
            }
        }
    } else {
        let (Some(identity), Some(code_hash)) = (&login.identity, &login.code_hash) else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "login_pending",
                "the login has not come back from the provider yet: finish it in the browser",
            ));
        };
        rate_limit(&state, peer.ip()).await?;
        let typed = body.code.as_deref().unwrap_or_default();
        if !constant_time_eq(&secret_hash(&normalize_code(&login.mode, typed)), code_hash) {
            let mut conn = state.store.conn().await?;
            let failures = logins::count_failure(&mut conn, &login.id).await?;
            drop(conn);
            record_failure(&state, &source, &login.id, "wrong code on redeem").await?;
            let left = (logins::MAX_FAILED_ATTEMPTS - failures).max(0);
            return Err(refused(&format!(
                "wrong code; {left} attempt(s) left for this login"
            )));
        }
        serde_json::from_str::<OidcIdentity>(identity)
            .map_err(|e| ApiError::internal(format!("stored login identity: {e}")))?
    };
    let redeemed = {
        let mut conn = state.store.conn().await?;
        logins::redeem(&mut conn, &login.id, now).await?
    };
    if !redeemed {
        return Err(refused(
            "this login was already redeemed; run `portcullis login` again",
        ));
    }
    let user = UserRecord {
        id: new_id(IdKind::User),
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
    let response = issue_token(&state, user, &source).await?;
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

fn pending(status: &str, interval: u64) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(OidcPending {
            status: status.into(),
            interval,
        }),
    )
        .into_response()
}
