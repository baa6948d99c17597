//! The sync: one cluster at a time, under the store lease `catalog:<cluster>` (several
//! controllers, one sync at a time), discover, plan, apply.
//!
//! - A failed discovery (or no policy to place zones with) changes no target: the last good
//!   catalog stays, `catalog_clusters` records the attempt and its error, and
//!   `catalog_sync_failed` says so, in one transaction.
//! - A good one applies each change of the plan in a transaction of its own with its one
//!   event (`catalog_target_added`, `_changed`, `_removed`, `catalog_guest_refused`), then
//!   records the cluster's row with `catalog_synced`. A crash between two changes leaves
//!   the targets part way, each change audited; the next sync plans from what is stored.
//! - When a target went or changed, the live sessions are re-evaluated as a policy reload
//!   does (`policy_file::end_disallowed`): a session to a target that is gone, whose
//!   address changed (the old one may be another guest's by now), or whose new zone the
//!   user may not reach, ends.
//! - A dry run discovers and plans, and writes and audits nothing.
//!
//! [`run`] is the periodic loop, one task per configured cluster.

mod report;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_policy::Policy;
use portcullis_proto::catalog::ClusterSync;
use tokio_util::sync::CancellationToken;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::catalog::config::ProxmoxCluster;
use crate::catalog::plan::{self, Change, Plan, PlanInput};
use crate::catalog::{proxmox, Discovery};
use crate::clock;
use crate::state::AppState;
use crate::store::catalog::{self as cluster_rows, ClusterRecord};
use crate::store::targets::{self as target_rows, SourceFilter};
use crate::store::StoreError;

/// The clusters this controller is syncing now. The store lease serialises controllers; on
/// SQLite (one controller) it is granted to everyone, so the periodic sync and one asked
/// for through the API are kept apart here.
#[derive(Clone, Default)]
pub(crate) struct Running {
    clusters: Arc<Mutex<BTreeSet<String>>>,
}

impl Running {
    /// Marks `cluster` as syncing; none when it already is.
    fn enter(&self, cluster: &str) -> Option<RunningGuard> {
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters.insert(cluster.to_owned()).then(|| RunningGuard {
            running: self.clone(),
            cluster: cluster.to_owned(),
        })
    }
}

struct RunningGuard {
    running: Running,
    cluster: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let mut clusters = self
            .running
            .clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        clusters.remove(&self.cluster);
    }
}

/// Syncs `cluster` (or, `dry_run`, only says what a sync would change). A discovery that
/// fails is an outcome (`failed`), not an error; the error is the store's.
pub(crate) async fn sync_cluster(
    state: &AppState,
    cluster: &ProxmoxCluster,
    dry_run: bool,
    actor: Actor,
) -> Result<ClusterSync, StoreError> {
    let Some(_running) = state.catalog_syncs.enter(&cluster.name) else {
        return Ok(outcome(cluster, "busy"));
    };
    let Some(_lease) = state
        .store
        .try_lease(&format!("catalog:{}", cluster.name))
        .await?
    else {
        return Ok(outcome(cluster, "busy"));
    };
    let found = discover(state, cluster).await;
    settle(state, cluster, found, dry_run, actor).await
}

/// What follows a discovery (under the lease): a failure recorded, or the plan made and,
/// unless `dry_run`, applied.
async fn settle(
    state: &AppState,
    cluster: &ProxmoxCluster,
    found: Result<Discovery, String>,
    dry_run: bool,
    actor: Actor,
) -> Result<ClusterSync, StoreError> {
    let found = match found {
        Ok(found) => found,
        Err(reason) => return failed(state, cluster, reason, dry_run, actor).await,
    };
    let Some(policy) = state.policy() else {
        let reason = "no policy is loaded: zones cannot be placed".to_owned();
        return failed(state, cluster, reason, dry_run, actor).await;
    };
    let plan = plan_for(state, cluster, &found, &policy).await?;
    let mut report = ClusterSync {
        url: Some(found.url.clone()),
        guests: count(found.guests.len()),
        nodes: count(found.nodes.len()),
        changes: plan.changes.iter().map(report::to_api).collect(),
        unchanged: plan.unchanged,
        notes: found.notes.clone(),
        ..outcome(cluster, "ok")
    };
    if !dry_run {
        report.sessions_ended = apply(state, &found, &plan, &policy, actor).await?;
    }
    Ok(report)
}

/// Reads the token, builds the client and discovers; the error is the sentence to audit
/// (never the token).
async fn discover(state: &AppState, cluster: &ProxmoxCluster) -> Result<Discovery, String> {
    let token = proxmox::load_token(&cluster.token, state.vault.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let client = proxmox::Client::new(cluster, token).map_err(|e| e.to_string())?;
    proxmox::discover(cluster, &client)
        .await
        .map_err(|e| e.to_string())
}

/// The plan of `found` against what the store holds.
async fn plan_for(
    state: &AppState,
    cluster: &ProxmoxCluster,
    found: &Discovery,
    policy: &Policy,
) -> Result<Plan, StoreError> {
    let mut conn = state.store.conn().await?;
    let (current, others): (Vec<_>, Vec<_>) = target_rows::list(&mut conn)
        .await?
        .into_iter()
        .partition(|t| t.source.as_deref() == Some(cluster.name.as_str()));
    let taken_names: BTreeSet<String> = others.into_iter().map(|t| t.name).collect();
    let refused_before = cluster_rows::get(&mut conn, &cluster.name)
        .await?
        .map(|row| row.refused)
        .unwrap_or_default();
    drop(conn);
    Ok(plan::plan(&PlanInput {
        cluster,
        found,
        current: &current,
        taken_names: &taken_names,
        refused_before: &refused_before,
        policy,
        now: state.clock.unix_secs(),
        default_max_session_secs: clock::to_i64(state.config.session_default_max.as_secs()),
    }))
}

/// Writes `plan`: each change with its event, then the cluster's row with `catalog_synced`;
/// then, if a target went or changed, ends the live sessions `policy` no longer allows.
/// Returns how many it ended.
pub(crate) async fn apply(
    state: &AppState,
    found: &Discovery,
    plan: &Plan,
    policy: &Policy,
    actor: Actor,
) -> Result<u32, StoreError> {
    let cluster = found.cluster.as_str();
    for change in &plan.changes {
        let mut tx = state.begin_audited().await?;
        match change {
            Change::Add(t) => target_rows::insert(tx.write(), t).await?,
            Change::Update { after, .. } => {
                target_rows::update(tx.write(), after).await?;
            }
            Change::Remove { target, .. } => {
                target_rows::delete(tx.write(), &target.id).await?;
            }
            // A refusal changes no target (one the same plan removes goes by its `Remove`).
            Change::Refuse { .. } => {}
        }
        tx.commit(report::event_of(cluster, change, plan, actor.clone()))
            .await?;
    }
    let counts = report::counts(plan);
    let sessions_ended = if counts.touches_sessions() {
        let ended = crate::policy_file::end_disallowed(state, policy).await?;
        count(ended)
    } else {
        0
    };
    let now = clock::to_i64(state.clock.unix_secs());
    let row = ClusterRecord {
        cluster: cluster.to_owned(),
        last_attempt_at: Some(now),
        last_success_at: Some(now),
        last_error: None,
        last_url: Some(found.url.clone()),
        guests: i64::from(count(found.guests.len())),
        nodes: i64::from(count(found.nodes.len())),
        refused: plan.refused.clone(),
    };
    let synced = Event::CatalogSynced {
        details: event::CatalogSynced {
            cluster: cluster.to_owned(),
            url: found.url.clone(),
            guests: count(found.guests.len()),
            nodes: count(found.nodes.len()),
            added: counts.added,
            changed: counts.changed,
            removed: counts.removed,
            refused: counts.refused,
            unchanged: counts.unchanged,
            sessions_ended,
        },
    };
    let mut tx = state.begin_audited().await?;
    cluster_rows::record_success(tx.write(), &row).await?;
    tx.commit(AuditEvent::new(actor, synced)).await?;
    Ok(sessions_ended)
}

/// A failed sync: unless `dry_run`, the cluster's row records the attempt and `reason`
/// with `catalog_sync_failed`; the targets stay as the last good sync left them.
async fn failed(
    state: &AppState,
    cluster: &ProxmoxCluster,
    reason: String,
    dry_run: bool,
    actor: Actor,
) -> Result<ClusterSync, StoreError> {
    if !dry_run {
        let now = clock::to_i64(state.clock.unix_secs());
        let mut tx = state.begin_audited().await?;
        let kept = target_rows::list_by_source(tx.read(), SourceFilter::Cluster(&cluster.name))
            .await?
            .len();
        let last_success_at = cluster_rows::get(tx.read(), &cluster.name)
            .await?
            .and_then(|row| row.last_success_at);
        cluster_rows::record_failure(tx.write(), &cluster.name, now, &reason).await?;
        let event = Event::CatalogSyncFailed {
            reason: reason.clone(),
            details: event::CatalogSyncFailed {
                cluster: cluster.name.clone(),
                kept_targets: count(kept),
                last_success_at: last_success_at.map(clock::to_u64),
            },
        };
        tx.commit(AuditEvent::new(actor, event)).await?;
    }
    Ok(ClusterSync {
        error: Some(reason),
        ..outcome(cluster, "failed")
    })
}

/// A report with nothing in it but its outcome.
fn outcome(cluster: &ProxmoxCluster, outcome: &str) -> ClusterSync {
    ClusterSync {
        cluster: cluster.name.clone(),
        outcome: outcome.to_owned(),
        error: None,
        url: None,
        guests: 0,
        nodes: 0,
        changes: Vec::new(),
        unchanged: 0,
        sessions_ended: 0,
        notes: Vec::new(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Syncs `cluster` now and then every `cluster.interval` until `shutdown`. A round is
/// skipped when the cluster's last good sync is younger than half the interval: another
/// controller did it.
pub(crate) async fn run(state: AppState, cluster: ProxmoxCluster, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(cluster.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match synced_lately(&state, &cluster).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the catalog's state; syncing anyway");
            }
        }
        let sync = sync_cluster(&state, &cluster, false, Actor::system());
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = sync => result,
        };
        log(&result);
    }
}

/// Whether the cluster's last good sync is younger than half its interval.
async fn synced_lately(state: &AppState, cluster: &ProxmoxCluster) -> Result<bool, StoreError> {
    let mut conn = state.store.conn().await?;
    let last = cluster_rows::get(&mut conn, &cluster.name)
        .await?
        .and_then(|row| row.last_success_at);
    let now = clock::to_i64(state.clock.unix_secs());
    Ok(is_recent(last, now, cluster.interval))
}

/// Whether `last` (Unix seconds) is less than half of `interval` before `now`.
fn is_recent(last: Option<i64>, now: i64, interval: Duration) -> bool {
    let half = clock::to_i64(interval.as_secs() / 2);
    last.is_some_and(|last| now.saturating_sub(last) < half)
}

fn log(result: &Result<ClusterSync, StoreError>) {
    match result {
        Ok(sync) if sync.outcome == "ok" => {
            let kinds = |kind: &str| sync.changes.iter().filter(|c| c.kind == kind).count();
            tracing::info!(
                catalog.guests = sync.guests,
                catalog.nodes = sync.nodes,
                catalog.added = kinds("added"),
                catalog.changed = kinds("changed"),
                catalog.removed = kinds("removed"),
                catalog.refused = kinds("refused"),
                catalog.unchanged = sync.unchanged,
                sessions.ended = sync.sessions_ended,
                "catalog synced"
            );
        }
        Ok(sync) if sync.outcome == "busy" => {
            tracing::debug!("catalog sync skipped: another sync of this cluster is running");
        }
        Ok(sync) => tracing::warn!(
            error = %portcullis_proto::text::escaped(sync.error.as_deref().unwrap_or_default()),
            "catalog sync failed; the last good catalog stays"
        ),
        Err(err) => tracing::warn!(error = %err, "catalog sync failed in the store"),
    }
}
