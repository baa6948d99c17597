//! The development login, token issuing (shared with OIDC login in `oidc/`) and `whoami`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::api::{DevLoginRequest, LoginResponse, UserInfo};

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr, Principal};
use crate::admin::DEV_ISSUER;
use crate::audit::denials::Failure;
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::state::AppState;
use crate::store::rate_limits;
use crate::store::users::UserRecord;

pub(crate) fn user_info(
    state: &AppState,
    user: &UserRecord,
    token_expires_at: Option<i64>,
) -> UserInfo {
    let policy = state.policy();
    UserInfo {
        id: user.id.clone(),
        issuer: user.issuer.clone(),
        subject: user.subject.clone(),
        username: user.username.clone(),
        groups: user.groups.clone(),
        amr: user.amr.clone(),
        acr: user.acr.clone(),
        auth_time: user.auth_time.map(clock::to_u64),
        permissions: crate::authz::permissions(policy.as_deref(), user)
            .iter()
            .map(|p| p.to_string())
            .collect(),
        token_expires_at: token_expires_at.map(clock::to_u64),
    }
}

/// Stores (or refreshes) a user and issues an API token for it, in one transaction with the
/// login's audit event. Returns the token secret, shown once.
pub(crate) async fn issue_token(
    state: &AppState,
    user: UserRecord,
    source: &str,
) -> Result<LoginResponse, ApiError> {
    let issued = crate::tokens::issue(
        &state.store,
        &state.keys,
        state.config.token_lifetime,
        &user,
        |user, token| crate::tokens::login_succeeded(user, token, source),
    )
    .await?;
    let info = user_info(state, &issued.user, Some(clock::to_i64(issued.expires_at)));
    Ok(LoginResponse {
        token: issued.secret,
        expires_at: issued.expires_at,
        user: info,
    })
}

/// `POST /v1/auth/dev-login`: routed only in `portcullis dev` ([`crate::Options::dev_login`]).
pub(crate) async fn dev_login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<DevLoginRequest>,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    if !state.dev_login {
        return Err(ApiError::not_found("route", "/v1/auth/dev-login"));
    }
    let now = clock::to_i64(state.clock.unix_secs());
    let allowed = {
        let mut conn = state.store.conn().await?;
        rate_limits::hit(
            &mut conn,
            &format!("login:{}", peer.ip()),
            now,
            60,
            state.config.login_rate_limit,
        )
        .await?
    };
    if !allowed {
        state.metrics.login(
            crate::metrics::LoginMethod::Dev,
            crate::metrics::LoginOutcome::Failure,
        );
        // Summed per address (audit::denials); the claimed name is a sample, not an actor.
        state.denials.note(Failure {
            kind: crate::audit::denials::FailureKind::LoginFailed,
            source: peer.ip(),
            reason: "rate limited",
            attempted_name: Some(body.username.clone()),
        });
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many login attempts from this address; wait a minute",
        ));
    }
    if !crate::tokens::valid_username(&body.username) {
        return Err(ApiError::field(
            "username",
            "1-64 letters, digits, `-`, `_`, `.` or `@`",
        ));
    }
    let user = UserRecord {
        id: new_id(IdKind::User),
        issuer: DEV_ISSUER.into(),
        subject: body.username.clone(),
        username: body.username,
        email: None,
        name: None,
        groups: body.groups,
        amr: body.amr,
        acr: None,
        auth_time: Some(now),
        updated_at: now,
    };
    let response = issue_token(&state, user, &peer.ip().to_string()).await?;
    state.metrics.login(
        crate::metrics::LoginMethod::Dev,
        crate::metrics::LoginOutcome::Success,
    );
    Ok((StatusCode::CREATED, Json(response)))
}

pub(crate) async fn whoami(State(state): State<AppState>, principal: Principal) -> Json<UserInfo> {
    Json(user_info(
        &state,
        &principal.user,
        Some(principal.token_expires_at),
    ))
}
