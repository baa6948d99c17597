//! What a policy edit changes, before it is loaded: [`diff`] of two policies, decision by
//! decision, and [`simulate`]: what one identity may reach under a policy.
//!
//! A decision is keyed by (role, source zone, target zone, service): the decision for a
//! member of that role alone, asked as a brokered session through [`evaluate_zones`] (both
//! ends in one microsegment, any port of the service). Its *verdict* is the outcome and, on
//! an allow, the terms the session gets (limits, logins, SSH access, recording, the role's
//! MFA requirement, whether the role is held only on request). A requestable role is
//! probed as granted by an approved request: it grants nothing standing, and a change to
//! its terms of request is a role change. Pure, like the crate: no clock is needed (MFA is
//! compared as a requirement, not met or missed at some time).
//!
//! [`evaluate_zones`]: crate::evaluate_zones

mod items;
mod live;
mod probe;
mod simulate;

use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::request::Outcome;

pub use live::{DryRun, Live, SessionImpact, Simulation, TargetImpact, UserImpact};
pub use probe::Terms;
pub use simulate::{reach_changes, simulate, Reach, ReachChange};

/// Everything an edit from `old` to `new` changes, in a deterministic order: names in the
/// new policy's file order, then those only the old one has.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PolicyDiff {
    /// Hex SHA-256 of the old and the new file.
    pub old_hash: String,
    pub new_hash: String,
    pub zones: Names,
    pub services: Names,
    pub roles: Names,
    /// Zones whose addresses, VMIDs, tags or pools changed (the targets they hold), or
    /// whose SSH mode or recording changed.
    pub zone_changes: Vec<ItemChange>,
    /// Services whose ports, protocol or zones changed.
    pub service_changes: Vec<ItemChange>,
    /// Roles whose groups, permissions, or terms of request changed, or that became
    /// requestable or standing.
    pub role_changes: Vec<ItemChange>,
    /// Matrix cells that changed (direct flows too, which no role decides).
    pub cells: Vec<CellChange>,
    /// Every (role, source zone, target zone, service) decision that changed.
    pub changes: Vec<Change>,
}

/// Names added and removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Names {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Names {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// A zone, service or role present in both policies, and what about it changed, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemChange {
    pub name: String,
    pub changes: Vec<String>,
}

/// One matrix cell, as each policy describes it (`A -> B: broker-only [ssh]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellChange {
    pub from: String,
    pub to: String,
    pub old: String,
    pub new: String,
}

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Denied before, allowed now.
    Allowed,
    /// Allowed before, denied now: live sessions it decided end at the reload.
    Denied,
    /// Allowed in both, on other terms (limits, MFA, recording, SSH mode, on request).
    Changed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Allowed => "allowed",
            ChangeKind::Denied => "denied",
            ChangeKind::Changed => "changed",
        }
    }
}

/// A decision as one policy makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The cells and role rule that decided (the decision's `cells` and `role_rule`), or
    /// its reason when no cell was consulted.
    pub rules: Vec<String>,
    /// On an allow: what the session gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<Terms>,
}

/// One (role, source zone, target zone, service) decision that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub role: String,
    pub source_zone: String,
    pub target_zone: String,
    pub service: String,
    pub kind: ChangeKind,
    pub old: Verdict,
    pub new: Verdict,
    /// The rules responsible: `- RULE` only the old decision names, `+ RULE` only the new
    /// one does; for a [`ChangeKind::Changed`], each term that changed (`max session: 1h ->
    /// none`).
    pub because: Vec<String>,
}

impl Change {
    /// `role ops: ON-PREM -> DMZ ssh: allow -> deny`.
    pub fn line(&self) -> String {
        format!(
            "role {}: {} -> {} {}: {} -> {}",
            self.role,
            self.source_zone,
            self.target_zone,
            self.service,
            self.old.outcome.as_str(),
            self.new.outcome.as_str()
        )
    }
}

/// The counts of a [`PolicyDiff`], for an audit event and a one-line summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub allowed: usize,
    pub denied: usize,
    pub changed: usize,
    pub zones_added: usize,
    pub zones_removed: usize,
    pub services_added: usize,
    pub services_removed: usize,
    pub roles_added: usize,
    pub roles_removed: usize,
    /// Zones, services and roles changed in place, and matrix cells changed.
    pub items_changed: usize,
    pub cells_changed: usize,
}

impl PolicyDiff {
    /// No decision, name, cell or role term changed (the hashes may differ: a comment).
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
            && self.services.is_empty()
            && self.roles.is_empty()
            && self.zone_changes.is_empty()
            && self.service_changes.is_empty()
            && self.role_changes.is_empty()
            && self.cells.is_empty()
            && self.changes.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let count = |kind| self.changes.iter().filter(|c| c.kind == kind).count();
        Summary {
            allowed: count(ChangeKind::Allowed),
            denied: count(ChangeKind::Denied),
            changed: count(ChangeKind::Changed),
            zones_added: self.zones.added.len(),
            zones_removed: self.zones.removed.len(),
            services_added: self.services.added.len(),
            services_removed: self.services.removed.len(),
            roles_added: self.roles.added.len(),
            roles_removed: self.roles.removed.len(),
            items_changed: self.zone_changes.len()
                + self.service_changes.len()
                + self.role_changes.len(),
            cells_changed: self.cells.len(),
        }
    }
}

/// Compares two policies: names added and removed, zones, services, roles and cells changed
/// in place, and every (role, source zone, target zone, service) decision whose verdict
/// differs, with the rules responsible. `diff(p, p)` is empty.
pub fn diff(old: &Policy, new: &Policy) -> PolicyDiff {
    Comparison::new(old, new).diff()
}

/// Two policies, each role probed once under each: [`Comparison::diff`] and, for the
/// targets a controller knows, [`Comparison::target_impact`].
pub struct Comparison<'a> {
    old: &'a Policy,
    new: &'a Policy,
    zones: Vec<String>,
    services: Vec<String>,
    roles: Vec<(String, probe::Probe<'a>, probe::Probe<'a>)>,
}

impl<'a> Comparison<'a> {
    pub fn new(old: &'a Policy, new: &'a Policy) -> Comparison<'a> {
        let roles = union(new.role_names(), old.role_names())
            .into_iter()
            .map(|role| {
                let (a, b) = (probe::Probe::new(old, &role), probe::Probe::new(new, &role));
                (role, a, b)
            })
            .collect();
        Comparison {
            old,
            new,
            zones: union(new.zone_names(), old.zone_names()),
            services: union(new.service_names(), old.service_names()),
            roles,
        }
    }

    /// See [`diff`].
    pub fn diff(&self) -> PolicyDiff {
        let (old, new) = (self.old, self.new);
        let mut changes = Vec::new();
        for (role, a, b) in &self.roles {
            for src in &self.zones {
                for dst in &self.zones {
                    for svc in &self.services {
                        if let Some(change) = probe::compare(a, b, role, src, dst, svc) {
                            changes.push(change);
                        }
                    }
                }
            }
        }
        PolicyDiff {
            old_hash: old.hash().to_owned(),
            new_hash: new.hash().to_owned(),
            zones: names(old.zone_names(), new.zone_names()),
            services: names(old.service_names(), new.service_names()),
            roles: names(old.role_names(), new.role_names()),
            zone_changes: items::zones(old, new),
            service_changes: items::services(old, new),
            role_changes: items::roles(old, new),
            cells: items::cells(old, new, &self.zones),
            changes,
        }
    }
}

/// `first`'s names in order, then `second`'s that `first` lacks.
fn union<'a>(
    first: impl Iterator<Item = &'a str>,
    second: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let mut out: Vec<String> = first.map(str::to_owned).collect();
    for name in second {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    out
}

fn names<'a>(old: impl Iterator<Item = &'a str>, new: impl Iterator<Item = &'a str>) -> Names {
    let (old, new): (Vec<&str>, Vec<&str>) = (old.collect(), new.collect());
    let only = |these: &[&str], those: &[&str]| -> Vec<String> {
        these
            .iter()
            .filter(|name| !those.contains(name))
            .map(|name| (*name).to_owned())
            .collect()
    };
    Names {
        added: only(&new, &old),
        removed: only(&old, &new),
    }
}

#[cfg(test)]
mod tests;
