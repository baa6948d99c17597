//! Step 1, `POST /v1/auth/oidc/start`: the CLI's secret hash and mode are checked, the
//! provider is asked for its authorization URL (or a device authorization), and the pending
//! login is stored with its `login_started` event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_proto::api::{OidcLoginMode, OidcStartRequest, OidcStartResponse};

use super::{oidc_error, rate_limit, relying, sealing_context, BrowserSecrets};
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, PeerAddr};
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, new_secret, secret_hash, IdKind};
use crate::oidc::Relying;
use crate::state::AppState;
use crate::store::oidc_logins::{self as logins, PendingLogin};

/// `POST /v1/auth/oidc/start`.
pub(crate) async fn start(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<OidcStartRequest>,
) -> Result<(StatusCode, Json<OidcStartResponse>), ApiError> {
    let relying = relying(&state)?;
    rate_limit(&state, peer.ip()).await?;
    let cli_secret_hash = cli_secret_hash(&body.secret_hash)?;
    check_redirect_port(body.mode, body.redirect_port)?;
    let now = state.clock.unix_secs();
    let timeout = relying.config().login_timeout.as_secs();
    let source = peer.ip().to_string();
    let mut login = new_login(now, timeout, &source, cli_secret_hash);
    login.redirect_port = body.redirect_port.map(i64::from);
    let mut response = OidcStartResponse {
        login_id: login.id.clone(),
        authorization_url: None,
        expires_at: now + timeout,
        user_code: None,
        verification_uri: None,
        verification_uri_complete: None,
        interval: None,
    };
    match body.mode {
        OidcLoginMode::Loopback | OidcLoginMode::Code => {
            let mode = if body.mode == OidcLoginMode::Loopback {
                logins::LOOPBACK
            } else {
                logins::CODE
            };
            let url = match &body.step_up {
                None => begin_in_browser(&state, relying, mode, &mut login).await?,
                Some(challenge) => {
                    let ask = step_up_ask(&state, challenge, &login.id, now).await?;
                    let fresh = Fresh {
                        nonce: &ask.nonce,
                        acr_values: &ask.acr,
                    };
                    begin_fresh(&state, relying, mode, &mut login, Some(fresh)).await?
                }
            };
            response.authorization_url = Some(url);
        }
        OidcLoginMode::Device if body.step_up.is_some() => {
            return Err(ApiError::field(
                "mode",
                "a step-up login runs in a browser (loopback or code mode), which can be asked \
                 for a fresh authentication; the device flow cannot",
            ));
        }
        OidcLoginMode::Device => {
            begin_on_device(&state, relying, now, &mut login, &mut response).await?;
        }
    }
    record_started(&state, relying, &login).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

/// A pending login from `source` that lives `timeout` seconds from `now`, bound to the client
/// that knows the secret hashed in `client_secret_hash`; its mode is the caller's to set.
pub(crate) fn new_login(
    now: u64,
    timeout: u64,
    source: &str,
    client_secret_hash: Vec<u8>,
) -> PendingLogin {
    PendingLogin {
        id: new_id(IdKind::Login),
        mode: String::new(),
        state_hash: None,
        sealed: Vec::new(),
        cli_secret_hash: client_secret_hash,
        redirect_port: None,
        source: source.to_owned(),
        created_at: clock::to_i64(now),
        expires_at: clock::to_i64(now + timeout),
        callback_at: None,
        identity: None,
        code_hash: None,
        failed_attempts: 0,
        error: None,
        redeemed_at: None,
    }
}

/// Stores a pending login with its `login_started` event (pruning expired ones).
pub(crate) async fn record_started(
    state: &AppState,
    relying: &Relying,
    login: &PendingLogin,
) -> Result<(), ApiError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    logins::prune(tx.read(), now).await?;
    logins::insert(tx.write(), login).await?;
    let event = Event::LoginStarted {
        details: event::LoginStarted {
            login_id: login.id.clone(),
            mode: login.mode.clone(),
            issuer: relying.config().issuer.clone(),
        },
    };
    tx.commit(AuditEvent::new(Actor::anonymous(&login.source), event))
        .await?;
    Ok(())
}

/// The challenge a step-up login answers, with the login linked to it: it must be open
/// (not answered, spent or expired).
async fn step_up_ask(
    state: &AppState,
    challenge_id: &str,
    login_id: &str,
    now: u64,
) -> Result<crate::store::step_ups::StepUpRecord, ApiError> {
    let mut conn = state.store.conn().await?;
    let at = clock::to_i64(now);
    let found = crate::store::step_ups::get(&mut conn, challenge_id).await?;
    let open = match found {
        Some(challenge) => {
            crate::store::step_ups::attach_login(&mut conn, challenge_id, login_id, at)
                .await?
                .then_some(challenge)
        }
        None => None,
    };
    open.ok_or_else(|| {
        ApiError::field(
            "step_up",
            format!(
                "no open step-up challenge {challenge_id:?} (unknown, already being answered \
                 by another login, answered, spent or expired); ask for the session again to \
                 get a new one"
            ),
        )
    })
}

/// The SHA-256 of the secret the CLI keeps, from its base64url text.
fn cli_secret_hash(text: &str) -> Result<Vec<u8>, ApiError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or_else(|| {
            ApiError::field(
                "secret_hash",
                "must be the base64url SHA-256 (32 bytes) of a random secret the CLI keeps",
            )
        })
}

/// Loopback mode needs the CLI's port; the other modes take none.
fn check_redirect_port(mode: OidcLoginMode, port: Option<u16>) -> Result<(), ApiError> {
    match (mode, port) {
        (OidcLoginMode::Loopback, None | Some(0)) => Err(ApiError::field(
            "redirect_port",
            "loopback mode needs the port the CLI listens on at 127.0.0.1",
        )),
        (OidcLoginMode::Code | OidcLoginMode::Device, Some(_)) => Err(ApiError::field(
            "redirect_port",
            "only loopback mode takes a redirect port",
        )),
        _ => Ok(()),
    }
}

/// A login in the browser (loopback, typed code, or the console's): the state's hash is kept
/// to find the login at the callback, the nonce and PKCE verifier sealed until then. Returns
/// the provider's authorization URL to send the browser to.
pub(crate) async fn begin_in_browser(
    state: &AppState,
    relying: &Relying,
    mode: &str,
    login: &mut PendingLogin,
) -> Result<String, ApiError> {
    begin_fresh(state, relying, mode, login, None).await
}

/// What a step-up login asks the provider for: the challenge's nonce, a fresh
/// authentication, and its `acr_values`.
struct Fresh<'a> {
    nonce: &'a str,
    acr_values: &'a [String],
}

/// [`begin_in_browser`], or a step-up login when `fresh` is set.
async fn begin_fresh(
    state: &AppState,
    relying: &Relying,
    mode: &str,
    login: &mut PendingLogin,
    fresh: Option<Fresh<'_>>,
) -> Result<String, ApiError> {
    let oauth_state = new_secret();
    let nonce = fresh
        .as_ref()
        .map_or_else(new_secret, |f| f.nonce.to_owned());
    let (challenge, pkce_verifier) = Relying::pkce();
    let url = relying
        .authorization_url(&oauth_state, &nonce, challenge, fresh.map(|f| f.acr_values))
        .await
        .map_err(oidc_error)?;
    let secrets = serde_json::to_vec(&BrowserSecrets {
        nonce,
        pkce_verifier,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    login.mode = mode.to_owned();
    login.state_hash = Some(secret_hash(&oauth_state));
    login.sealed = state
        .keys
        .seal_secret(&sealing_context(&login.id), &secrets)?;
    Ok(url)
}

/// A device login (RFC 8628): the device code is sealed for the CLI's polls; the login lives
/// no longer than the provider's device authorization.
async fn begin_on_device(
    state: &AppState,
    relying: &Relying,
    now: u64,
    login: &mut PendingLogin,
    response: &mut OidcStartResponse,
) -> Result<(), ApiError> {
    if !relying.config().device_flow {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "device_flow_disabled",
            "the device flow is disabled on this controller (auth.oidc.device_flow = \
             false); use `portcullis login` or `portcullis login --no-browser`",
        ));
    }
    let device = relying.device_start().await.map_err(oidc_error)?;
    let lifetime = device
        .expires_in
        .clamp(1, relying.config().login_timeout.as_secs());
    login.mode = logins::DEVICE.into();
    login.expires_at = clock::to_i64(now + lifetime);
    login.sealed = state
        .keys
        .seal_secret(&sealing_context(&login.id), device.device_code.as_bytes())?;
    response.expires_at = now + lifetime;
    response.user_code = Some(device.user_code);
    response.verification_uri = Some(device.verification_uri);
    response.verification_uri_complete = device.verification_uri_complete;
    response.interval = Some(device.interval.unwrap_or(5).max(1));
    Ok(())
}
