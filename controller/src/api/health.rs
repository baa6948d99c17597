//! `GET /v1/health`: liveness and store reachability, no authentication.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_proto::api::Health;

use crate::state::AppState;

pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store_ok = state.store.ping().await.is_ok();
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if store_ok { "ok" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            controller_id: state.controller_id.to_string(),
            store: if store_ok { "ok" } else { "unavailable" }.into(),
        }),
    )
}
