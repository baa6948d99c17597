//! `/v1/users/local`: local users over the API (`portcullis users add|list|show|disable|
//! reset`), for callers with `users:admin` whose login met MFA
//! ([`super::extract::Principal::require_user_admin`]); groups granted only from
//! `[auth.local] allowed_groups`. The changes are `crate::local_users`', recorded with the
//! administrator as the actor; a password is always generated here (shown once in the
//! answer), never taken from a request.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::users::{
    AddLocalUser, LocalUserChanged, LocalUserDisabled, LocalUserList, LocalUserView,
};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use super::logout::end_user_sessions;
use crate::local_users::{
    self, Changed, LocalUserError, LocalUserSummary, PasswordRules, PasswordSource,
};
use crate::secret::ExposeSecret as _;
use crate::state::AppState;

/// `POST /v1/users/local`: 201 with the one-time password.
pub(crate) async fn add(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<AddLocalUser>,
) -> Result<(StatusCode, Json<LocalUserChanged>), ApiError> {
    principal.require_user_admin()?;
    let local_auth = &state.config.local_auth;
    grantable(&body.groups, &local_auth.allowed_groups)
        .map_err(|m| ApiError::field("groups", m))?;
    let added = local_users::add(
        &state.store,
        &state.keys,
        PasswordRules::from(local_auth),
        &body.username,
        body.groups,
        PasswordSource::Generate,
        principal.actor(),
    )
    .await
    .map_err(refused)?;
    Ok((StatusCode::CREATED, Json(changed(added)?)))
}

/// `GET /v1/users/local`.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<LocalUserList>, ApiError> {
    principal.require_user_admin()?;
    let users = local_users::list(&state.store).await.map_err(refused)?;
    Ok(Json(LocalUserList {
        users: users.iter().map(view).collect(),
    }))
}

/// `GET /v1/users/local/{name}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<LocalUserView>, ApiError> {
    principal.require_user_admin()?;
    let user = local_users::show(&state.store, &name)
        .await
        .map_err(refused)?;
    Ok(Json(view(&user)))
}

/// `POST /v1/users/local/{name}/disable`: no more logins, its tokens revoked (with the event,
/// in one transaction), then its live sessions ended as `POST /v1/users/revoke` ends them.
pub(crate) async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<LocalUserDisabled>, ApiError> {
    principal.require_user_admin()?;
    let disabled = local_users::disable(&state.store, &state.keys, &name, principal.actor())
        .await
        .map_err(refused)?;
    end_user_sessions(&state, &disabled.user.user_id, &principal).await?;
    Ok(Json(LocalUserDisabled {
        user: view(&disabled.user),
        revoked_token_ids: disabled.revoked_token_ids,
    }))
}

/// `POST /v1/users/local/{name}/reset`: a new one-time password; TOTP and recovery codes
/// cleared.
pub(crate) async fn reset(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<LocalUserChanged>, ApiError> {
    principal.require_user_admin()?;
    let reset = local_users::reset(
        &state.store,
        &state.keys,
        PasswordRules::from(&state.config.local_auth),
        &name,
        PasswordSource::Generate,
        principal.actor(),
    )
    .await
    .map_err(refused)?;
    Ok(Json(changed(reset)?))
}

/// Whether an administrator may grant `groups`: each must be in `allowed` (`[auth.local]
/// allowed_groups`); the message names the first that is not.
pub(crate) fn grantable(groups: &[String], allowed: &BTreeSet<String>) -> Result<(), String> {
    let Some(outside) = groups.iter().find(|g| !allowed.contains(*g)) else {
        return Ok(());
    };
    Err(if allowed.is_empty() {
        format!(
            "the group {outside:?} cannot be granted over the API: `[auth.local] \
             allowed_groups` is empty in the controller's config, so no group can; list the \
             groups user administrators may grant there, or use `portcullis controller users \
             add` on the controller"
        )
    } else {
        format!(
            "the group {outside:?} is not among `[auth.local] allowed_groups` ({}): choose \
             among those, or add it there in the controller's config",
            allowed.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// The API's answer to a refused change.
fn refused(err: LocalUserError) -> ApiError {
    match err {
        LocalUserError::InvalidName(_, "group") | LocalUserError::NoGroups => {
            ApiError::field("groups", err.to_string())
        }
        LocalUserError::InvalidName(..) => ApiError::field("username", err.to_string()),
        LocalUserError::Exists(name) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the local user {name:?} exists already: `portcullis users reset {name}` gives \
                 it a new one-time password"
            ),
        ),
        LocalUserError::Unknown(name) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no local user {name:?}: see `portcullis users list`"),
        ),
        LocalUserError::Store(e) => e.into(),
        LocalUserError::Keys(e) => e.into(),
        // A generated password always passes its own rules; hashing fails only if the
        // config's argon2 parameters cannot run here.
        other @ (LocalUserError::Password(_)
        | LocalUserError::Hashing(_)
        | LocalUserError::PasswordFile { .. }) => {
            tracing::error!(error = %other, "cannot set a local user's password");
            ApiError::internal("cannot set the password; see the controller's log")
        }
    }
}

fn changed(changed: Changed) -> Result<LocalUserChanged, ApiError> {
    let Some(password) = changed.one_time_password else {
        return Err(ApiError::internal("no one-time password was generated"));
    };
    Ok(LocalUserChanged {
        user: view(&changed.user),
        one_time_password: password.expose_secret().to_owned(),
    })
}

fn view(user: &LocalUserSummary) -> LocalUserView {
    LocalUserView {
        id: user.user_id.clone(),
        username: user.username.clone(),
        groups: user.groups.clone(),
        totp_enrolled: user.totp_enrolled,
        must_change_password: user.must_change_password,
        recovery_codes_left: user.recovery_codes_left,
        disabled_at: user.disabled_at.map(crate::clock::to_u64),
        created_at: crate::clock::to_u64(user.created_at),
    }
}
