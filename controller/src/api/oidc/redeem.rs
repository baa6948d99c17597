//! Step 3, `POST /v1/auth/oidc/redeem`: the CLI sends the login's one-time code together with
//! its secret (never in a URL) and receives the API token. Device mode polls here too, until
//! the provider has the user's answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use portcullis_proto::api::{OidcPending, OidcRedeemRequest};

use super::{
    fail_login, normalize_code, oidc_error, rate_limit, record_failure, relying, sealing_context,
};
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, PeerAddr};
use crate::api::login::issue_token;
use crate::clock;
use crate::ids::{new_id, secret_hash, IdKind};
use crate::oidc::{DevicePoll, OidcIdentity, Relying};
use crate::secret::{constant_time_eq, ExposeSecret as _};
use crate::state::AppState;
use crate::store::oidc_logins::{self as logins, PendingLogin};
use crate::store::users::UserRecord;

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
    let Some(login) = login else {
        rate_limit(&state, peer.ip()).await?;
        return Err(refused(
            "no such login (unknown or long expired); run `portcullis login` again",
        ));
    };
    check_redeemable(&state, peer.ip(), &body, &login, now).await?;
    let identity = if login.mode == logins::DEVICE {
        match poll_device(&state, relying, &login).await? {
            Polled::Done(identity) => identity,
            Polled::NotYet(response) => return Ok(response),
        }
    } else {
        typed_code_identity(&state, peer.ip(), &body, &login).await?
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
    // A step-up login gives a single-use proof for its challenge, never an API token.
    if let Some(challenge) = crate::step_up::of_login(&state, &login.id).await? {
        let proof = crate::step_up::answer_oidc(&state, &challenge, &identity, &source).await?;
        return Ok((StatusCode::CREATED, Json(proof)).into_response());
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
    state.metrics.login(
        crate::metrics::LoginMethod::Oidc,
        crate::metrics::LoginOutcome::Success,
    );
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

fn refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "login_failed", message)
}

/// Refuses a redeem by another client than the one that started the login, and of a login
/// that failed, was redeemed, expired or is burnt by wrong codes.
async fn check_redeemable(
    state: &AppState,
    peer: std::net::IpAddr,
    body: &OidcRedeemRequest,
    login: &PendingLogin,
    now: i64,
) -> Result<(), ApiError> {
    if !constant_time_eq(&secret_hash(&body.secret), &login.cli_secret_hash) {
        rate_limit(state, peer).await?;
        let mut conn = state.store.conn().await?;
        logins::count_failure(&mut conn, &login.id).await?;
        drop(conn);
        let source = peer.to_string();
        record_failure(state, &source, &login.id, "wrong client secret on redeem").await?;
        return Err(refused(
            "this login was started by another client: only the CLI that started a login can \
             redeem it",
        ));
    }
    if login.mode == logins::CONSOLE {
        return Err(refused(
            "this is a web console login: it finishes in the browser that started it",
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
        fail_login(state, login, "too many wrong codes").await?;
        return Err(refused(
            "too many wrong codes: this login is burnt; run `portcullis login` again",
        ));
    }
    Ok(())
}

/// Where a device login stands after one poll of the provider.
enum Polled {
    Done(OidcIdentity),
    /// The user has not answered yet: the answer tells the CLI when to poll again.
    NotYet(Response),
}

/// Polls the provider once with the login's sealed device code; a refusal ends the login.
async fn poll_device(
    state: &AppState,
    relying: &Relying,
    login: &PendingLogin,
) -> Result<Polled, ApiError> {
    let device_code = state
        .keys
        .open_secret(&sealing_context(&login.id), &login.sealed)?;
    let device_code = String::from_utf8_lossy(device_code.expose_secret()).into_owned();
    match relying.device_poll(&device_code).await {
        Ok(DevicePoll::Pending) => Ok(Polled::NotYet(pending("authorization_pending", 5))),
        Ok(DevicePoll::SlowDown) => Ok(Polled::NotYet(pending("slow_down", 10))),
        Ok(DevicePoll::Done(identity)) => Ok(Polled::Done(*identity)),
        Err(err) => {
            let message = err.to_string();
            fail_login(state, login, &message).await?;
            Err(oidc_error(err))
        }
    }
}

/// The identity the callback stored, for the one-time code it gave the browser; each wrong
/// code is counted and audited.
async fn typed_code_identity(
    state: &AppState,
    peer: std::net::IpAddr,
    body: &OidcRedeemRequest,
    login: &PendingLogin,
) -> Result<OidcIdentity, ApiError> {
    let (Some(identity), Some(code_hash)) = (&login.identity, &login.code_hash) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "login_pending",
            "the login has not come back from the provider yet: finish it in the browser",
        ));
    };
    rate_limit(state, peer).await?;
    let typed = body.code.as_deref().unwrap_or_default();
    if !constant_time_eq(&secret_hash(&normalize_code(&login.mode, typed)), code_hash) {
        let mut conn = state.store.conn().await?;
        let failures = logins::count_failure(&mut conn, &login.id).await?;
        drop(conn);
        record_failure(state, &peer.to_string(), &login.id, "wrong code on redeem").await?;
        let left = (logins::MAX_FAILED_ATTEMPTS - failures).max(0);
        return Err(refused(&format!(
            "wrong code; {left} attempt(s) left for this login"
        )));
    }
    serde_json::from_str::<OidcIdentity>(identity)
        .map_err(|e| ApiError::internal(format!("stored login identity: {e}")))
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
