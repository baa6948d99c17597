//! `/v1/requests`: just-in-time access requests (issue 25), bearer tokens only. The HTTP edge
//! over `crate::access`: bodies in, [`AccessRequest`]s out.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::access::{
    AccessRequest, CreateAccessRequest, DecideRequest, FinishRun, RequestState, StartRun,
};
use portcullis_proto::api::List;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::access::{requests, run, view};
use crate::state::AppState;
use crate::store::access_requests::{self as rows, AccessRecord, ListFilter};

async fn shown(state: &AppState, record: &AccessRecord) -> Result<AccessRequest, ApiError> {
    let mut conn = state.store.conn().await?;
    Ok(view::to_api(&mut conn, record).await?)
}

/// `POST /v1/requests`.
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateAccessRequest>,
) -> Result<(StatusCode, Json<AccessRequest>), ApiError> {
    let record = requests::create(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(shown(&state, &record).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    /// A user id (with `audit:read`, or one's own).
    user: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/requests?state=&user=`: one's own requests, those of the roles one approves,
/// or (with `audit:read`) everyone's; newest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<AccessRequest>>, ApiError> {
    let wanted = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<RequestState>)
        .transpose()
        .map_err(|e| ApiError::field("state", e))?;
    let me = principal.user.id.as_str();
    let auditor = principal.has(Permission::AuditRead);
    let roles = requests::approver_roles(&state, &principal);
    let user = q.user.as_deref().filter(|u| !u.is_empty());
    let filter = match (auditor, user) {
        (true, user) => ListFilter {
            user_id: user,
            ..ListFilter::default()
        },
        (false, Some(user)) if user == me => ListFilter {
            user_id: Some(me),
            ..ListFilter::default()
        },
        (false, Some(user)) => ListFilter {
            user_id: Some(user),
            roles: Some(&roles),
            ..ListFilter::default()
        },
        (false, None) => ListFilter {
            roles: Some(&roles),
            or_user: Some(me),
            ..ListFilter::default()
        },
    };
    let filter = ListFilter {
        state: wanted,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        ..filter
    };
    let records = {
        let mut conn = state.store.conn().await?;
        rows::list(&mut conn, &filter).await?
    };
    let mut items = Vec::with_capacity(records.len());
    for record in &records {
        items.push(shown(&state, record).await?);
    }
    Ok(Json(List { items, next: None }))
}

/// `GET /v1/requests/{id}`: to its requester, an approver of its role, or `audit:read`.
pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<AccessRequest>, ApiError> {
    let record = requests::get(&state, &id).await?;
    if !requests::may_see(&state, &principal, &record) {
        // As if there were none: ids of others' requests are not confirmed.
        return Err(ApiError::not_found("access request", &id));
    }
    Ok(Json(shown(&state, &record).await?))
}

/// An optional [`DecideRequest`] body: none (or blank) is `{}`.
fn decide_body(body: &[u8]) -> Result<DecideRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecideRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "reason",
            format!("the body must be {{}} or {{\"reason\": \"...\"}}: {e}"),
        )
    })
}

/// `POST /v1/requests/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AccessRequest>, ApiError> {
    let body = decide_body(&body)?;
    let record = requests::approve(&state, &principal, &id, body.reason.as_deref()).await?;
    Ok(Json(shown(&state, &record).await?))
}

/// `POST /v1/requests/{id}/deny`.
pub(crate) async fn deny(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AccessRequest>, ApiError> {
    let body = decide_body(&body)?;
    let record = requests::deny(&state, &principal, &id, body.reason.as_deref()).await?;
    Ok(Json(shown(&state, &record).await?))
}

/// `POST /v1/requests/{id}/revoke`.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AccessRequest>, ApiError> {
    let body = decide_body(&body)?;
    let record = requests::revoke(&state, &principal, &id, body.reason.as_deref()).await?;
    Ok(Json(shown(&state, &record).await?))
}

/// `POST /v1/requests/{id}/run/start`.
pub(crate) async fn run_start(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartRun>,
) -> Result<Json<AccessRequest>, ApiError> {
    let record = run::start(&state, &principal, &id, &body).await?;
    Ok(Json(shown(&state, &record).await?))
}

/// `POST /v1/requests/{id}/run/keepalive`: 204.
pub(crate) async fn run_keepalive(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    run::keepalive(&state, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/requests/{id}/run/finish`.
pub(crate) async fn run_finish(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FinishRun>,
) -> Result<Json<AccessRequest>, ApiError> {
    let record = run::finish(&state, &principal, &id, &body).await?;
    Ok(Json(shown(&state, &record).await?))
}
