//! `/v1/catalog` and `/v1/inventory`: the Proxmox host catalog (docs/proxmox.md).
//!
//! - `GET /v1/catalog`: each configured cluster's last sync, its discovered targets and its
//!   refused guests (any signed-in principal).
//! - `POST /v1/catalog/sync`: sync now, or with `dry_run` only say what would change
//!   (`targets:admin`).
//! - `GET /v1/inventory`: the targets the caller may reach now (any signed-in principal).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::catalog::{CatalogStatus, ClusterStatus, Inventory, SyncReport, SyncRequest};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::catalog::config::ProxmoxCluster;
use crate::catalog::{inventory, sync};
use crate::clock;
use crate::state::AppState;
use crate::store::catalog as cluster_rows;
use crate::store::targets::{self as target_rows, SourceFilter};

/// `GET /v1/catalog`.
pub(crate) async fn status(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Json<CatalogStatus>, ApiError> {
    let mut conn = state.store.conn().await?;
    let mut clusters = Vec::new();
    for cluster in &state.config.catalog {
        let row = cluster_rows::get(&mut conn, &cluster.name)
            .await?
            .unwrap_or_default();
        let targets =
            target_rows::list_by_source(&mut conn, SourceFilter::Cluster(&cluster.name)).await?;
        clusters.push(ClusterStatus {
            cluster: cluster.name.clone(),
            urls: cluster.urls.iter().map(|u| u.to_string()).collect(),
            interval_secs: cluster.interval.as_secs(),
            last_attempt_at: row.last_attempt_at.map(clock::to_u64),
            last_success_at: row.last_success_at.map(clock::to_u64),
            stale: row.last_error.is_some(),
            last_error: row.last_error,
            guests: u32::try_from(row.guests).unwrap_or(0),
            nodes: u32::try_from(row.nodes).unwrap_or(0),
            refused: row.refused,
            targets: targets.iter().map(super::targets::to_api).collect(),
        });
    }
    Ok(Json(CatalogStatus { clusters }))
}

/// `POST /v1/catalog/sync`.
pub(crate) async fn sync_now(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SyncRequest>,
) -> Result<Json<SyncReport>, ApiError> {
    principal.require(Permission::TargetsAdmin)?;
    let chosen = chosen(&state.config.catalog, body.cluster.as_deref())?;
    let mut clusters = Vec::with_capacity(chosen.len());
    for cluster in chosen {
        // In a task of its own: a caller who hangs up does not cut a sync between two of
        // its transactions.
        let (state, cluster, actor) = (state.clone(), cluster.clone(), principal.actor());
        let dry_run = body.dry_run;
        let sync =
            tokio::spawn(async move { sync::sync_cluster(&state, &cluster, dry_run, actor).await });
        let report = sync
            .await
            .map_err(|e| ApiError::internal(format!("the catalog sync stopped: {e}")))??;
        clusters.push(report);
    }
    Ok(Json(SyncReport {
        dry_run: body.dry_run,
        clusters,
    }))
}

/// The clusters a sync request names: `name`, or every configured one.
fn chosen<'c>(
    configured: &'c [ProxmoxCluster],
    name: Option<&str>,
) -> Result<Vec<&'c ProxmoxCluster>, ApiError> {
    if configured.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_catalog",
            "no Proxmox cluster is configured: add a [[catalog.proxmox]] section to the \
             controller's configuration (docs/proxmox.md) and restart it",
        ));
    }
    let Some(name) = name else {
        return Ok(configured.iter().collect());
    };
    match configured.iter().find(|c| c.name == name) {
        Some(cluster) => Ok(vec![cluster]),
        None => {
            let names: Vec<&str> = configured.iter().map(|c| c.name.as_str()).collect();
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no Proxmox cluster named {name:?} is configured; the configured ones: {}",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// `GET /v1/inventory`.
pub(crate) async fn inventory(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Inventory>, ApiError> {
    let Some(policy) = state.policy() else {
        return Ok(Json(Inventory { hosts: Vec::new() }));
    };
    let targets = {
        let mut conn = state.store.conn().await?;
        target_rows::list(&mut conn).await?
    };
    let hosts = inventory::reachable(
        &policy,
        &principal.user,
        &targets,
        principal.peer.ip(),
        state.clock.unix_secs(),
    );
    Ok(Json(Inventory { hosts }))
}
