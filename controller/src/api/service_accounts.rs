//! Service accounts (docs/auth.md "Service accounts"): `/v1/users/services` for callers with
//! `users:admin` whose login met MFA, and `POST /v1/auth/service-token`, where an account
//! exchanges a signed assertion (`portcullis_proto::assertion`) for an API token bound to
//! its key.
//!
//! CONTRACT(issue 21): the service-accounts helper builds this (wire types in
//! `portcullis_proto::users` and `portcullis_proto::api::ServiceToken*`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::api::{ServiceTokenRequest, ServiceTokenResponse};
use portcullis_proto::users::{
    AddServiceAccount, ServiceAccountList, ServiceAccountView, ServiceKeyRevoked,
};

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr, Principal};
use crate::state::AppState;

/// `POST /v1/users/services`: 201.
pub(crate) async fn add(
    State(_state): State<AppState>,
    principal: Principal,
    ApiJson(_body): ApiJson<AddServiceAccount>,
) -> Result<(StatusCode, Json<ServiceAccountView>), ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `GET /v1/users/services`.
pub(crate) async fn list(
    State(_state): State<AppState>,
    principal: Principal,
) -> Result<Json<ServiceAccountList>, ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `POST /v1/users/services/{name}/revoke-key`.
pub(crate) async fn revoke_key(
    State(_state): State<AppState>,
    principal: Principal,
    Path(_name): Path<String>,
) -> Result<Json<ServiceKeyRevoked>, ApiError> {
    principal.require_user_admin()?;
    Err(not_yet())
}

/// `POST /v1/auth/service-token`: 201.
pub(crate) async fn token(
    State(_state): State<AppState>,
    PeerAddr(_peer): PeerAddr,
    ApiJson(_body): ApiJson<ServiceTokenRequest>,
) -> Result<(StatusCode, Json<ServiceTokenResponse>), ApiError> {
    Err(not_yet())
}

fn not_yet() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "service accounts are not built yet",
    )
}
