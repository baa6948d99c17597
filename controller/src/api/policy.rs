//! `POST /v1/policy/reload`: re-read the policy file (also done on SIGHUP); with
//! `?dry_run=true`, the report of what loading a policy would change, changing nothing.
//! `POST /v1/policy/simulate?user=NAME`: what a user reaches under a policy.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::{Permission, Policy};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::Principal;
use crate::policy_preview::{self, PreviewError};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ReloadQuery {
    #[serde(default)]
    dry_run: bool,
}

/// The body of a dry run or a simulation: the policy file's text. Without one, the dry run
/// reads the configured file (what a reload would load) and a simulation uses the loaded
/// policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyText {
    #[serde(default)]
    policy: Option<String>,
}

pub(crate) async fn reload(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ReloadQuery>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::PolicyReload)?;
    if q.dry_run {
        let policy = match text(&body)? {
            Some(text) => parse(&text)?,
            None => configured(&state)?,
        };
        let report = policy_preview::dry_run(&state, policy)
            .await
            .map_err(preview_error)?;
        return Ok(Json(serde_json::to_value(report).map_err(|e| {
            ApiError::internal(format!("cannot encode the dry run's report: {e}"))
        })?));
    }
    match crate::policy_file::reload(&state, principal.actor()).await {
        Ok(outcome) => Ok(Json(serde_json::json!({
            "policy_hash": outcome.hash,
            "sessions_ended": outcome.sessions_ended,
        }))),
        Err(message) => Err(invalid(message)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SimulateQuery {
    user: String,
}

pub(crate) async fn simulate(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<SimulateQuery>,
    body: Bytes,
) -> Result<Json<portcullis_policy::diff::Simulation>, ApiError> {
    principal.require(Permission::PolicyReload)?;
    let policy = match text(&body)? {
        Some(text) => Some(parse(&text)?),
        None => None,
    };
    let simulation = policy_preview::simulate_user(&state, &q.user, policy)
        .await
        .map_err(preview_error)?;
    Ok(Json(simulation))
}

/// The policy text of a body, if it has one.
fn text(body: &Bytes) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: Option<PolicyText> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"policy\": \"<the policy file's text>\"}}: {e}"
        ))
    })?;
    Ok(parsed.and_then(|p| p.policy))
}

fn parse(text: &str) -> Result<Arc<Policy>, ApiError> {
    Policy::parse(text)
        .map(Arc::new)
        .map_err(|e| invalid(format!("the policy sent: {e}")))
}

/// The configured policy file, as a reload would load it.
fn configured(state: &AppState) -> Result<Arc<Policy>, ApiError> {
    let path = state.config.policy_file.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            "no policy file is configured (policy.file): send the policy's text to compare",
        )
    })?;
    crate::policy_file::load(path)
        .map(Arc::new)
        .map_err(invalid)
}

fn invalid(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_policy",
        format!("the policy was refused and the old policy stays: {message}"),
    )
}

fn preview_error(e: PreviewError) -> ApiError {
    match e {
        PreviewError::NoPolicy => ApiError::new(StatusCode::CONFLICT, "no_policy", e.to_string()),
        PreviewError::UnknownUser(ref name) => {
            let mut err = ApiError::not_found("user", name);
            err.message = e.to_string();
            err
        }
        PreviewError::AmbiguousUser { .. } => {
            ApiError::new(StatusCode::CONFLICT, "ambiguous_user", e.to_string())
        }
        PreviewError::Store(s) => s.into(),
        PreviewError::Task(m) => ApiError::internal(m),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
