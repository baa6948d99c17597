//! `POST /v1/step-up/{id}/totp`: a local user answers their step-up challenge with the code
//! of their authenticator app (`crate::step_up`). OIDC users answer through
//! `POST /v1/auth/oidc/start` with `step_up` set.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::step_up::{StepUpProof, StepUpTotp};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::state::AppState;

/// `POST /v1/step-up/{id}/totp`: 201 with the single-use proof; 403 `step_up_refused` saying
/// why (a wrong or reused code, another user's challenge, an expired one).
pub(crate) async fn totp(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StepUpTotp>,
) -> Result<(StatusCode, Json<StepUpProof>), ApiError> {
    let proof = crate::step_up::answer_totp(&state, &principal, &id, &body.code).await?;
    Ok((StatusCode::CREATED, Json(proof)))
}
