//! `GET /v1/audit`: the audit log, newest first, for holders of `audit:read`.

use axum::extract::{Query, State};
use axum::Json;
use portcullis_policy::Permission;
use serde::Deserialize;
use sqlx::Row as _;

use super::error::ApiError;
use super::extract::Principal;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Return events with a sequence number below this (for paging backwards).
    before: Option<i64>,
    limit: Option<i64>,
    session: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut conn = state.store.conn().await?;
    let rows = sqlx::query(
        "SELECT seq, body FROM audit_events WHERE seq < $1 \
         AND ($2 = '' OR session_id = $2) AND ($3 = '' OR type = $3) ORDER BY seq DESC LIMIT $4",
    )
    .bind(q.before.unwrap_or(i64::MAX))
    .bind(q.session.unwrap_or_default())
    .bind(q.kind.unwrap_or_default())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let body: String = row.try_get("body")?;
        let mut event: serde_json::Value =
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        if let Some(map) = event.as_object_mut() {
            map.insert("sequence".into(), seq.into());
        }
        items.push(event);
        last = Some(seq);
    }
    Ok(Json(
        serde_json::json!({"items": items, "next_before": last}),
    ))
}
