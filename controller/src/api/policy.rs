//! `POST /v1/policy/reload`: re-read the policy file (also done on SIGHUP).

use axum::extract::State;
use axum::Json;
use portcullis_policy::Permission;

use super::error::ApiError;
use super::extract::Principal;
use crate::state::AppState;

pub(crate) async fn reload(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::PolicyReload)?;
    match crate::policy_file::reload(&state, principal.actor()).await {
        Ok(outcome) => Ok(Json(serde_json::json!({
            "policy_hash": outcome.hash,
            "sessions_ended": outcome.sessions_ended,
        }))),
        Err(message) => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!("the policy file was refused and the old policy stays: {message}"),
        )),
    }
}
