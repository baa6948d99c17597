//! `/v1/users/local`: local users over the API (`portcullis users add|list|show|disable|
//! reset`), for callers with `users:admin` whose login met MFA
//! ([`super::extract::Principal::require_user_admin`]); groups granted only from
//! `[auth.local] allowed_groups`.
//!
//! CONTRACT(issue 21): the users-API helper builds this (wire types in
//! `portcullis_proto::users`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::users::{
    AddLocalUser, LocalUserChanged, LocalUserDisabled, LocalUserList, LocalUserView,
};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::state::AppState;

/// `POST /v1/users/local`: 201 with the one-time password.
pub(crate) async fn add(
    State(_state): State<AppState>,
    principal: Principal,
    ApiJson(_body): ApiJson<AddLocalUser>,
) -> Result<(StatusCode, Json<LocalUserChanged>), ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `GET /v1/users/local`.
pub(crate) async fn list(
    State(_state): State<AppState>,
    principal: Principal,
) -> Result<Json<LocalUserList>, ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `GET /v1/users/local/{name}`.
pub(crate) async fn show(
    State(_state): State<AppState>,
    principal: Principal,
    Path(_name): Path<String>,
) -> Result<Json<LocalUserView>, ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `POST /v1/users/local/{name}/disable`.
pub(crate) async fn disable(
    State(_state): State<AppState>,
    principal: Principal,
    Path(_name): Path<String>,
) -> Result<Json<LocalUserDisabled>, ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `POST /v1/users/local/{name}/reset`: a new one-time password; TOTP and recovery codes
/// cleared.
pub(crate) async fn reset(
    State(_state): State<AppState>,
    principal: Principal,
    Path(_name): Path<String>,
) -> Result<Json<LocalUserChanged>, ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

fn not_yet() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "user administration is not built yet",
    )
}
