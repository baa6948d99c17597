//! A policy edit seen before it is loaded: the diff against the loaded policy
//! (`portcullis_policy::diff`), and what it would do to what this controller knows: the
//! users (with the groups of their last login) who gain or lose reach, the targets whose
//! decisions change, and the live sessions a reload would end (the same
//! [`policy_file::disallowed`] a reload ends). Reads only: nothing here changes state, so a
//! dry run writes no audit event. The pure work runs on the blocking pool.
//!
//! [`policy_file::disallowed`]: crate::policy_file::disallowed

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use portcullis_audit::event::PolicyChangeSummary;
use portcullis_policy::diff::{DryRun, Live, SessionImpact, Simulation, UserImpact};
use portcullis_policy::{Comparison, Policy, PolicyDiff, TargetFacts};

use crate::state::AppState;
use crate::store::targets::TargetRecord;
use crate::store::{targets, users, StoreError};

/// The most users a dry run checks.
const MAX_USERS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PreviewError {
    #[error("the controller has no policy loaded, so there is nothing to compare with; load one (`policy.file`, then a reload)")]
    NoPolicy,
    #[error("no user named `{0}` has logged in to this controller; check the name (`portcullis sessions list --all` shows users), or simulate offline with --groups")]
    UnknownUser(String),
    #[error("{count} users are named `{name}` (one per identity provider); simulate offline with --groups instead")]
    AmbiguousUser { name: String, count: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the policy comparison failed: {0}")]
    Task(String),
}

/// The diff of two policies, computed off the async threads.
pub(crate) async fn compare(old: Arc<Policy>, new: Arc<Policy>) -> PolicyDiff {
    let task = tokio::task::spawn_blocking(move || portcullis_policy::diff(&old, &new));
    match task.await {
        Ok(diff) => diff,
        Err(err) => {
            // Only a panic gets here; the reload itself stands, its event without a diff.
            tracing::error!(error = %err, "the policy diff failed");
            PolicyDiff::default()
        }
    }
}

/// A reload's audit summary of `diff`.
pub(crate) fn summary(diff: &PolicyDiff) -> PolicyChangeSummary {
    let s = diff.summary();
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    PolicyChangeSummary {
        previous_policy_hash: diff.old_hash.clone(),
        allowed: n(s.allowed),
        denied: n(s.denied),
        changed: n(s.changed),
        names_added: n(s.zones_added + s.services_added + s.roles_added),
        names_removed: n(s.zones_removed + s.services_removed + s.roles_removed),
        items_changed: n(s.items_changed),
        cells_changed: n(s.cells_changed),
        first_changes: diff
            .changes
            .iter()
            .take(PolicyChangeSummary::FIRST)
            .map(|c| c.line())
            .collect(),
    }
}

/// What loading `new` in place of the loaded policy would change.
pub(crate) async fn dry_run(state: &AppState, new: Arc<Policy>) -> Result<DryRun, PreviewError> {
    let old = state.policy().ok_or(PreviewError::NoPolicy)?;
    let (user_rows, target_rows) = {
        let mut conn = state.store.conn().await?;
        (
            users::list(&mut conn, MAX_USERS).await?,
            targets::list(&mut conn).await?,
        )
    };
    let sessions = crate::policy_file::disallowed(state, &new)
        .await?
        .into_iter()
        .map(|d| SessionImpact {
            session: d.session,
            user: d.user,
            target: d.target,
            reason: d.reason,
        })
        .collect();
    let now = state.clock.unix_secs();
    let task = tokio::task::spawn_blocking(move || {
        let comparison = Comparison::new(&old, &new);
        let users = user_rows
            .iter()
            .filter_map(|u| {
                let identity = crate::authz::identity(u);
                let changes = portcullis_policy::diff::reach_changes(&old, &new, &identity, now);
                (!changes.is_empty()).then(|| UserImpact {
                    user: u.username.clone(),
                    groups: u.groups.clone(),
                    changes,
                })
            })
            .collect();
        let targets = target_rows
            .iter()
            .filter_map(|t| comparison.target_impact(&t.name, &facts(t)))
            .collect();
        (comparison.diff(), users, targets)
    });
    let (diff, users, targets) = task.await.map_err(|e| PreviewError::Task(e.to_string()))?;
    Ok(DryRun {
        diff,
        live: Live {
            users,
            targets,
            sessions,
        },
    })
}

/// What the user named `name` (with the groups, amr and acr of their last login) reaches
/// under `policy`, or under the loaded one.
pub(crate) async fn simulate_user(
    state: &AppState,
    name: &str,
    policy: Option<Arc<Policy>>,
) -> Result<Simulation, PreviewError> {
    let policy = match policy {
        Some(p) => p,
        None => state.policy().ok_or(PreviewError::NoPolicy)?,
    };
    let mut found = {
        let mut conn = state.store.conn().await?;
        users::by_username(&mut conn, name).await?
    };
    let user = match found.len() {
        0 => return Err(PreviewError::UnknownUser(name.to_owned())),
        1 => found.remove(0),
        count => {
            return Err(PreviewError::AmbiguousUser {
                name: name.to_owned(),
                count,
            })
        }
    };
    let identity = crate::authz::identity(&user);
    let now = state.clock.unix_secs();
    let hash = policy.hash().to_owned();
    let reach =
        tokio::task::spawn_blocking(move || portcullis_policy::simulate(&policy, &identity, now))
            .await
            .map_err(|e| PreviewError::Task(e.to_string()))?;
    Ok(Simulation {
        user: user.username,
        groups: user.groups,
        amr: user.amr,
        policy_hash: hash,
        reach,
    })
}

/// A target's facts for placing it in a zone: a literal address places it; a host name
/// (resolved only at authorisation) leaves the address unspecified, and its declared zone
/// places it.
fn facts(t: &TargetRecord) -> TargetFacts {
    let (ip, port) = match t.address.parse::<SocketAddr>() {
        Ok(addr) => (addr.ip(), addr.port()),
        Err(_) => {
            let port = t
                .address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(0);
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
        }
    };
    TargetFacts {
        ip,
        port,
        vmid: t.vmid,
        tags: t.tags.clone(),
        pool: t.pool.clone(),
        declared_zone: t.zone.clone(),
        service: t.service.clone(),
    }
}
