//! `POST /v1/auth/local/login`: a local user's login with a password and TOTP (docs/auth.md
//! "Local users"), including the first admin's bootstrap credential and TOTP enrolment.
//!
//! CONTRACT(issue 21): the local-login helper builds this (wire types in
//! `portcullis_proto::users`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::users::{LocalLoginAnswer, LocalLoginRequest};

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr};
use crate::state::AppState;

/// `POST /v1/auth/local/login`: 201 [`LocalLoginAnswer::LoggedIn`], 200
/// [`LocalLoginAnswer::Continue`], 401 `invalid_credentials`, 429 with `Retry-After`.
pub(crate) async fn login(
    State(_state): State<AppState>,
    PeerAddr(_peer): PeerAddr,
    ApiJson(_body): ApiJson<LocalLoginRequest>,
) -> Result<(StatusCode, Json<LocalLoginAnswer>), ApiError> {
    Err(not_yet())
}

fn not_yet() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "local login is not built yet",
    )
}
