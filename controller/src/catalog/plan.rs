//! The catalog's pure decision: from what a sync found ([`Discovery`]), the targets the last
//! sync left, the refusals already audited and the policy, the changes to make ([`Plan`]).
//! No I/O and no clock: `now` is passed in.
//!
//! CONTRACT (session 9): the signatures and types below are what `sync` calls; the bodies
//! are the plan helper's to write.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_policy::Policy;
use portcullis_proto::catalog::FieldChange;
use serde::{Deserialize, Serialize};

use crate::catalog::config::ProxmoxCluster;
use crate::catalog::Discovery;
use crate::store::targets::TargetRecord;

/// What the sync saw of a target: stored as JSON in `targets.discovered`. A sync-owned
/// field of the target whose stored value differs from the one here was changed by an
/// admin: an override the next sync keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub name: String,
    pub address: String,
    pub zone: String,
    pub service: Option<String>,
    pub vmid: Option<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub pool: Option<String>,
    pub node: Option<String>,
    /// `qemu`, `lxc` or `node`.
    pub guest_type: String,
    /// As Proxmox reported it; `template` for a template.
    pub status: String,
    pub address_origin: Option<String>,
    pub available: bool,
    /// Unix seconds.
    pub seen_at: u64,
}

impl Seen {
    /// The `discovered` column of `t`, if it holds a valid one.
    pub(crate) fn of(t: &TargetRecord) -> Option<Seen> {
        t.discovered
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }
}

/// The changes one sync makes to one cluster's targets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    pub changes: Vec<Change>,
    /// Targets that stay exactly as they are.
    pub unchanged: u32,
    /// Every refusal that holds after this sync (key → reason): the next sync's
    /// `refused_before`. A refusal already in `refused_before` with the same reason yields
    /// no `Change::Refuse` (it was audited once).
    pub refused: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new target (a fresh id, `source`/`source_key`/`discovered` set).
    Add(TargetRecord),
    /// The stored target `before` becomes `after` (same id); `fields` name what changed.
    Update {
        before: TargetRecord,
        after: TargetRecord,
        fields: Vec<FieldChange>,
    },
    /// The target goes: `reason` is `gone` or `refused`.
    Remove {
        target: TargetRecord,
        reason: String,
    },
    /// A guest or node that cannot become a target, newly or for a new reason.
    Refuse {
        key: String,
        name: String,
        reason: String,
        /// What is known of it, for the audit event.
        vmid: Option<u32>,
        node: Option<String>,
        address: Option<String>,
        address_origin: Option<String>,
    },
}

/// The inputs of [`plan`] beside the discovery.
pub(crate) struct PlanInput<'a> {
    pub cluster: &'a ProxmoxCluster,
    pub found: &'a Discovery,
    /// The targets with `source == cluster.name`.
    pub current: &'a [TargetRecord],
    /// Names of every other target (hand-made, other clusters'): a discovered name that
    /// would take one is refused.
    pub taken_names: &'a BTreeSet<String>,
    /// The refusals the last sync left (`catalog_clusters.refused`).
    pub refused_before: &'a BTreeMap<String, String>,
    pub policy: &'a Policy,
    /// Unix seconds.
    pub now: u64,
    /// `max_session_secs` of a new target (the controller's `sessions.default_max`).
    pub default_max_session_secs: i64,
}

/// The changes that bring the cluster's targets to what `input.found` says.
pub(crate) fn plan(input: &PlanInput<'_>) -> Plan {
    let _ = input;
    Plan::default()
}

/// The sync-owned fields an admin changed on `t` (they differ from what the last sync saw).
pub(crate) fn overrides(t: &TargetRecord) -> Vec<String> {
    let _ = t;
    Vec::new()
}
