//! The catalog's pure decision: from what a sync found ([`Discovery`]), the targets the last
//! sync left, the refusals already audited and the policy, the changes to make ([`Plan`]).
//! No I/O and no clock: `now` is passed in. The one impurity is a new target's id, drawn
//! from the system's random numbers (`ids::new_id`) as every other target's is.
//!
//! The rules (docs/policy.md "Where zones come from"; each pinned by a test in `tests/`):
//! - A guest becomes one target per service, a node (with `node_targets`) one
//!   `proxmox-api` target on 8006. Keys: `qemu/100`, `lxc/101`, `node/pve1`; a guest's
//!   further services `qemu/100#rdp`. Services come from tags (`PREFIX<service>`), else
//!   from `default_services` by zone, else `"*"`; only services the policy knows count.
//! - The zone comes from the address only (`zone_of_target`): the first address whose
//!   zone checks pass is used; a disagreeing VMID, tag or pool is refused, never
//!   remapped. An address the guest reported itself places it only in a zone with
//!   `guest_reported_addresses = true`. A stopped guest without an address now keeps the
//!   address it last had.
//! - Names: the Proxmox name sanitised, plus `name_suffix`; a further service's target
//!   `NAME-SERVICE`; a namesake in the cluster `NAME-VMID` (see `names`). A name another
//!   source's target holds is refused.
//! - Templates and guests not `running` are unavailable; nodes follow `online`.
//! - A stored target is merged three ways (see `merge`): an admin's override stays.
//! - A change is one [`Change`]; a target that did not change is not written (its
//!   `discovered.seen_at` is when it last changed). A refusal is audited once per reason.
//! - Order: removals, then updates, then additions, then refusals, each by source key
//!   (updates that hand a name on go before the one taking it): the targets' unique names
//!   hold after each change.

mod found;
mod merge;
mod names;
mod order;
mod place;
#[cfg(test)]
mod tests;

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

// A plan holds one change per target that changed (tens): boxing the records would buy
// nothing but indirection.
#[allow(clippy::large_enum_variant)]
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
    let found = found::collect(input);
    let mut stored: BTreeMap<&str, &TargetRecord> = BTreeMap::new();
    let mut reserved = BTreeSet::new();
    for t in input.current {
        match t.source_key.as_deref() {
            Some(key) => {
                stored.entry(key).or_insert(t);
            }
            // Not the sync's to change (it cannot be matched), but its name stays taken.
            None => {
                reserved.insert(t.name.clone());
            }
        }
    }
    let mut refusals: BTreeMap<String, found::Refusal> = BTreeMap::new();
    for r in found.refusals {
        refusals.entry(r.key.clone()).or_insert(r);
    }

    // The fields but the name, merged with what is stored.
    let mut merged = Vec::new();
    for wanted in found.wanted {
        let before = stored.get(wanted.key.as_str()).copied();
        let result = match before {
            None => Ok(merge::Merged::of(&wanted.seen)),
            Some(t) => merge::merge(t, &wanted.seen, input.policy),
        };
        match result {
            Ok(m) => merged.push((wanted, before, m)),
            Err(reason) => {
                refusals.insert(wanted.key.clone(), refusal(&wanted, reason));
            }
        }
    }

    // The names, all at once: they must be unique together.
    let suffix = &input.cluster.name_suffix;
    let requests: Vec<names::Request<'_>> = merged
        .iter()
        .map(|(wanted, before, m)| {
            let service: Vec<&str> = wanted.further_service.iter().map(String::as_str).collect();
            let plain = names::compose(&wanted.stem, &service, suffix);
            let mut parts = vec![wanted.discriminator.as_str()];
            parts.extend(service);
            names::Request {
                key: &wanted.key,
                holds_plain: before.is_some_and(|t| t.name == plain),
                fallback: names::compose(&wanted.stem, &parts, suffix),
                fixed: m.fixed_name.clone(),
                plain,
            }
        })
        .collect();
    let mut named = names::assign(&requests, input.taken_names, &reserved);

    let mut changes = Vec::new();
    let mut unchanged = 0;
    let mut kept = BTreeSet::new();
    for ((wanted, before, m), request) in merged.iter().zip(&requests) {
        let name = match named.remove(&wanted.key) {
            Some(Ok(name)) => name,
            Some(Err(reason)) => {
                refusals.insert(wanted.key.clone(), refusal(wanted, reason));
                continue;
            }
            None => continue,
        };
        kept.insert(wanted.key.as_str());
        let mut seen = wanted.seen.clone();
        // For a name an admin set, what the sync would have called it.
        seen.name = if m.fixed_name.is_some() {
            request.plain.clone()
        } else {
            name.clone()
        };
        let after = record(input, &wanted.key, *before, m, name, &seen);
        match before {
            None => changes.push(Change::Add(after)),
            Some(before) if same(before, &after) => unchanged += 1,
            Some(before) => changes.push(Change::Update {
                fields: merge::changes(before, &after),
                before: (*before).clone(),
                after,
            }),
        }
    }

    let mut removed_refused = BTreeSet::new();
    for (key, t) in &stored {
        if kept.contains(key) {
            continue;
        }
        let refused =
            refusals.contains_key(*key) || found.refused_guests.contains(found::guest_key(key));
        if refused {
            removed_refused.insert(*key);
            removed_refused.insert(found::guest_key(key));
        }
        changes.push(Change::Remove {
            target: (*t).clone(),
            reason: if refused { "refused" } else { "gone" }.to_owned(),
        });
    }

    let mut refused = BTreeMap::new();
    for (key, r) in refusals {
        let audited = input.refused_before.get(&key) == Some(&r.reason);
        if !audited || removed_refused.contains(key.as_str()) {
            changes.push(Change::Refuse {
                key: key.clone(),
                name: r.name,
                reason: r.reason.clone(),
                vmid: r.vmid,
                node: r.node,
                address: r.address,
                address_origin: r.address_origin,
            });
        }
        refused.insert(key, r.reason);
    }

    Plan {
        changes: order::in_order(changes),
        unchanged,
        refused,
    }
}

/// The sync-owned fields an admin changed on `t` (they differ from what the last sync saw).
/// The zone and `available` are never among them: they follow the address and Proxmox.
pub(crate) fn overrides(t: &TargetRecord) -> Vec<String> {
    merge::overridden(t)
}

fn refusal(wanted: &found::Wanted, reason: String) -> found::Refusal {
    found::Refusal {
        key: wanted.key.clone(),
        name: wanted.proxmox_name.clone(),
        reason,
        vmid: wanted.seen.vmid,
        node: wanted.seen.node.clone(),
        address: Some(wanted.seen.address.clone()),
        address_origin: wanted.seen.address_origin.clone(),
    }
}

/// The stored form of a target after this sync: `before`'s own fields (id, limits, keys,
/// Vault settings) kept, the sync's fields from the merge.
fn record(
    input: &PlanInput<'_>,
    key: &str,
    before: Option<&TargetRecord>,
    m: &merge::Merged,
    name: String,
    seen: &Seen,
) -> TargetRecord {
    let now = i64::try_from(input.now).unwrap_or(i64::MAX);
    let mut t = match before {
        Some(before) => before.clone(),
        None => TargetRecord {
            id: crate::ids::new_id(crate::ids::IdKind::Target),
            name: String::new(),
            address: String::new(),
            zone: None,
            service: None,
            vmid: None,
            tags: Vec::new(),
            pool: None,
            max_session_secs: input.default_max_session_secs,
            connection_limit: 0,
            ssh_host_keys: Vec::new(),
            ssh_host_cas: Vec::new(),
            vault_ssh_mount: None,
            vault_ssh_role: None,
            vault_secrets: Vec::new(),
            source: Some(input.cluster.name.clone()),
            source_key: Some(key.to_owned()),
            available: true,
            discovered: None,
            proxmox_cluster: None,
            created_at: now,
            updated_at: now,
        },
    };
    t.name = name;
    t.address = m.address.clone();
    t.zone = Some(m.zone.clone());
    t.service = m.service.clone();
    t.vmid = m.vmid;
    t.tags = m.tags.clone();
    t.pool = m.pool.clone();
    t.available = m.available;
    t.discovered = serde_json::to_string(seen).ok();
    t.updated_at = now;
    t
}

/// Whether writing `after` over `before` would change anything but the times.
fn same(before: &TargetRecord, after: &TargetRecord) -> bool {
    let timeless = |t: &TargetRecord| TargetRecord {
        discovered: None,
        updated_at: 0,
        ..t.clone()
    };
    let seen = |t: &TargetRecord| Seen::of(t).map(|s| Seen { seen_at: 0, ..s });
    timeless(before) == timeless(after) && seen(before) == seen(after)
}
