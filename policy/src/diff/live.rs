//! What a reload would do to what the controller knows, as data: the users (with the groups
//! of their last login) who gain or lose reach, the targets whose decisions change, and the
//! live sessions the new policy would end. The controller gathers the rows and fills these;
//! `POST /v1/policy/reload?dry_run=true` returns them beside the [`PolicyDiff`], and
//! `portcullis policy diff --live` prints them. [`Comparison::target_impact`] is the pure part.

use serde::{Deserialize, Serialize};

use super::{probe, Change, Comparison, PolicyDiff, ReachChange};
use crate::policy::Policy;
use crate::request::TargetFacts;
use crate::zones::zone_of_target;

/// The answer of a dry run: the diff of the loaded policy and the new one, and its effect.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DryRun {
    #[serde(flatten)]
    pub diff: PolicyDiff,
    pub live: Live,
}

/// The live part of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Live {
    /// Users whose reach changes (each with what it gains and loses).
    pub users: Vec<UserImpact>,
    /// Targets whose decisions change, or that the new policy puts in another zone.
    pub targets: Vec<TargetImpact>,
    /// Live sessions the new policy no longer allows: a real reload ends exactly these.
    pub sessions: Vec<SessionImpact>,
}

impl Live {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.targets.is_empty() && self.sessions.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserImpact {
    pub user: String,
    /// The groups of the user's last login, which the decisions used.
    pub groups: Vec<String>,
    pub changes: Vec<ReachChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetImpact {
    pub target: String,
    pub service: Option<String>,
    /// The target's zone under each policy (`None`: in no zone, or not placed because its
    /// address is a host name and the policy has no declared zone for it).
    pub old_zone: Option<String>,
    pub new_zone: Option<String>,
    /// The (role, source zone) decisions for this target that change.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionImpact {
    pub session: String,
    pub user: String,
    pub target: String,
    /// Why the new policy would not allow it.
    pub reason: String,
}

/// What `POST /v1/policy/simulate?user=NAME` answers (and `policy simulate --json` prints):
/// whom it simulated, with the groups and `amr` of their last login, and what they reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulation {
    /// Empty for an offline simulation of groups.
    pub user: String,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub policy_hash: String,
    pub reach: Vec<super::Reach>,
}

impl Comparison<'_> {
    /// The effect of the edit on one target: its zone under each policy (from its facts; a
    /// target whose `ip` is unspecified, a host name not resolved here, is placed by its
    /// declared zone) and every (role, source zone) decision for its service that changes.
    /// `None` when nothing changes for it.
    pub fn target_impact(&self, name: &str, facts: &TargetFacts) -> Option<TargetImpact> {
        let place = |p: &Policy| -> Option<String> {
            if facts.ip.is_unspecified() {
                let zone = facts.declared_zone.as_ref()?;
                return p.zone_id(zone).map(|_| zone.clone());
            }
            zone_of_target(p, facts).ok()
        };
        let (old_zone, new_zone) = (place(self.old), place(self.new));
        let service = facts.service.clone().or_else(|| {
            // As a session to it is decided: the first TCP service using its port.
            self.new
                .services
                .iter()
                .chain(&self.old.services)
                .find(|s| s.protocol.carries_tcp() && s.ports.contains(facts.port))
                .map(|s| s.name.clone())
        });
        let mut changes = Vec::new();
        if let Some(svc) = &service {
            let dst = (
                old_zone.as_deref().unwrap_or(""),
                new_zone.as_deref().unwrap_or(""),
            );
            for (role, a, b) in &self.roles {
                for src in &self.zones {
                    if let Some(change) = probe::compare_at(a, b, role, src, dst, svc) {
                        changes.push(change);
                    }
                }
            }
        }
        if changes.is_empty() && old_zone == new_zone {
            return None;
        }
        Some(TargetImpact {
            target: name.to_owned(),
            service,
            old_zone,
            new_zone,
            changes,
        })
    }
}
