//! `/v1/workers`: list, show and delete workers; issue join tokens.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::api::{CreateJoinToken, JoinToken, List, Worker};
use portcullis_proto::link::{EndReason, Request, SessionEnd};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::sessions::lifecycle;
use crate::state::AppState;
use crate::store::sessions as session_rows;
use crate::store::workers::{self as rows, WorkerRecord};

fn to_api(w: &WorkerRecord) -> Worker {
    Worker {
        id: w.id.clone(),
        name: w.name.clone(),
        proxy_addr: w.proxy_addr.clone(),
        key_fingerprint: w.key_fingerprint.clone(),
        state: w.state.clone(),
        created_at: clock::to_u64(w.created_at),
        last_seen_at: w.last_seen_at.map(clock::to_u64),
        cert_expires_at: clock::to_u64(w.cert_expires_at),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<List<Worker>>, ApiError> {
    principal.require(Permission::WorkersAdmin)?;
    let mut conn = state.store.conn().await?;
    Ok(Json(List {
        items: rows::list(&mut conn).await?.iter().map(to_api).collect(),
        next: None,
    }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Worker>, ApiError> {
    principal.require(Permission::WorkersAdmin)?;
    let mut conn = state.store.conn().await?;
    let w = rows::find(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("worker", &id))?;
    Ok(Json(to_api(&w)))
}

/// Deletes a worker: its certificate is refused from now on, its link is dropped, and its
/// sessions end.
pub(crate) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::WorkersAdmin)?;
    let mut tx = state.begin_audited().await?;
    let w = rows::find(tx.read(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("worker", &id))?;
    rows::mark_deleted(tx.write(), &w.id).await?;
    tx.commit(AuditEvent::new(
        principal.actor(),
        Event::WorkerDeleted {
            details: event::WorkerNamed {
                worker_id: w.id.clone(),
                name: w.name.clone(),
            },
        },
    ))
    .await?;
    state.live_workers.clear();
    let live = {
        let mut conn = state.store.conn().await?;
        session_rows::live_on_worker(&mut conn, &w.id).await?
    };
    for s in &live {
        lifecycle::end_session(&state, &s.id, EndReason::WorkerDeleted, principal.actor()).await?;
    }
    // The ends are pushed in the background; wait for the worker to confirm them before its
    // link is dropped, or a worker that lost its link would keep the connections for its
    // grace period.
    if let Some(link) = state.links.get(&w.id) {
        for s in &live {
            let end = Request::EndSession(SessionEnd {
                session_id: s.id.clone(),
                reason: EndReason::WorkerDeleted,
            });
            if let Err(err) = link.request(end, Duration::from_secs(2)).await {
                tracing::warn!(session.id = %s.id, error = %err, "deleted worker did not confirm a session end");
            }
        }
    }
    state.links.disconnect(&w.id);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn create_join_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateJoinToken>,
) -> Result<(StatusCode, Json<JoinToken>), ApiError> {
    principal.require(Permission::WorkersAdmin)?;
    let ttl = body
        .ttl_secs
        .unwrap_or(state.config.join_token_ttl.as_secs());
    if ttl == 0 || ttl > 86_400 {
        return Err(ApiError::field(
            "ttl_secs",
            "must be between 1 and 86400 seconds",
        ));
    }
    let (token, expires_at) =
        crate::enrolment::issue_join_token(&state.store, &state.keys, Some(principal.actor()), ttl)
            .await?;
    Ok((StatusCode::CREATED, Json(JoinToken { token, expires_at })))
}
