//! The three-way merge of one stored discovered target with what this sync found.
//!
//! For each field the sync owns, three values meet: the stored one, the one the last sync
//! saw (`discovered`), and the one this sync found. A stored value equal to the last-seen
//! one was not touched by an admin: it takes the new value. One that differs is an admin's
//! override: it stays. Two fields are never overrides: the zone always follows the
//! effective address (an overridden address is placed again, and refused if the policy
//! does not place it), and `available` always follows Proxmox.

use std::net::SocketAddr;

use portcullis_policy::{zone_of_target, Policy, TargetFacts};
use portcullis_proto::catalog::FieldChange;

use super::Seen;
use crate::store::targets::TargetRecord;

/// The sync-owned fields an admin may override, in the order changes list them.
pub(super) const OVERRIDABLE: [&str; 6] = ["name", "address", "service", "vmid", "tags", "pool"];

/// The sync-owned fields of a target after the merge, but its name (named later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Merged {
    /// The name an admin gave it, kept.
    pub fixed_name: Option<String>,
    pub address: String,
    pub zone: String,
    pub service: Option<String>,
    pub vmid: Option<u32>,
    pub tags: Vec<String>,
    pub pool: Option<String>,
    pub available: bool,
}

impl Merged {
    /// A new target: what the sync saw.
    pub(super) fn of(seen: &Seen) -> Merged {
        Merged {
            fixed_name: None,
            address: seen.address.clone(),
            zone: seen.zone.clone(),
            service: seen.service.clone(),
            vmid: seen.vmid,
            tags: seen.tags.clone(),
            pool: seen.pool.clone(),
            available: seen.available,
        }
    }
}

/// Merges `stored` with `new` (what this sync saw); an error is why the result cannot be
/// a target (its overridden address or labels place it in no zone or disagree).
pub(super) fn merge(stored: &TargetRecord, new: &Seen, policy: &Policy) -> Result<Merged, String> {
    let Some(last) = Seen::of(stored) else {
        // Nothing says what the last sync saw: no override can be told apart.
        return Ok(Merged::of(new));
    };
    fn pick<T: PartialEq + Clone>(stored: &T, last: &T, new: &T) -> T {
        if stored == last { new } else { stored }.clone()
    }
    let mut merged = Merged {
        fixed_name: (stored.name != last.name).then(|| stored.name.clone()),
        address: pick(&stored.address, &last.address, &new.address),
        zone: new.zone.clone(),
        service: pick(&stored.service, &last.service, &new.service),
        vmid: pick(&stored.vmid, &last.vmid, &new.vmid),
        tags: pick(&stored.tags, &last.tags, &new.tags),
        pool: pick(&stored.pool, &last.pool, &new.pool),
        available: new.available,
    };
    let changed: Vec<&str> = [
        ("address", merged.address != new.address),
        ("VMID", merged.vmid != new.vmid),
        ("tags", merged.tags != new.tags),
        ("pool", merged.pool != new.pool),
        ("service", merged.service != new.service),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect();
    if !changed.is_empty() {
        merged.zone = zone_of_override(&merged, &new.zone, policy).map_err(|err| {
            format!(
                "{err} (an admin changed the target's {}); change or clear the override",
                changed.join(", ")
            )
        })?;
    }
    Ok(merged)
}

/// The zone of a target whose address or labels an admin set. A host name (no IP
/// literal) cannot be placed here without DNS: it keeps the zone of the found address,
/// which the policy checks against the resolved address at every session.
fn zone_of_override(
    merged: &Merged,
    found_zone: &str,
    policy: &Policy,
) -> Result<String, portcullis_policy::ZoneError> {
    let Ok(address) = merged.address.parse::<SocketAddr>() else {
        return Ok(found_zone.to_owned());
    };
    let facts = TargetFacts {
        ip: address.ip(),
        port: address.port(),
        vmid: merged.vmid,
        tags: merged.tags.clone(),
        pool: merged.pool.clone(),
        declared_zone: None,
        service: merged.service.clone(),
    };
    zone_of_target(policy, &facts)
}

/// The sync-owned fields of `t` an admin changed (their stored value differs from the one
/// the last sync saw); none when there is no valid `discovered`.
pub(super) fn overridden(t: &TargetRecord) -> Vec<String> {
    let Some(last) = Seen::of(t) else {
        return Vec::new();
    };
    OVERRIDABLE
        .into_iter()
        .filter(|field| text(t, field) != seen_text(&last, field))
        .map(str::to_owned)
        .collect()
}

/// The changes from `before` to `after`, field by field: the target's fields, then what
/// the sync saw (`discovered.FIELD`) where that changed without the target changing with
/// it (an override hid it, or it is only seen: node, status, address origin).
pub(super) fn changes(before: &TargetRecord, after: &TargetRecord) -> Vec<FieldChange> {
    const FIELDS: [&str; 8] = [
        "name",
        "address",
        "zone",
        "service",
        "vmid",
        "tags",
        "pool",
        "available",
    ];
    const ONLY_SEEN: [&str; 4] = ["node", "guest_type", "status", "address_origin"];
    let mut out = Vec::new();
    let (seen_before, seen_after) = (Seen::of(before), Seen::of(after));
    for field in FIELDS {
        let (b, a) = (text(before, field), text(after, field));
        if b != a {
            out.push(FieldChange {
                field: field.to_owned(),
                before: b,
                after: a,
            });
            continue;
        }
        let b = seen_before.as_ref().and_then(|s| seen_text(s, field));
        let a = seen_after.as_ref().and_then(|s| seen_text(s, field));
        if b != a {
            out.push(discovered(field, b, a));
        }
    }
    for field in ONLY_SEEN {
        let b = seen_before.as_ref().and_then(|s| seen_text(s, field));
        let a = seen_after.as_ref().and_then(|s| seen_text(s, field));
        if b != a {
            out.push(discovered(field, b, a));
        }
    }
    out
}

fn discovered(field: &str, before: Option<String>, after: Option<String>) -> FieldChange {
    FieldChange {
        field: format!("discovered.{field}"),
        before,
        after,
    }
}

/// A target field as a change shows it (tags joined with `,`; none when empty).
fn text(t: &TargetRecord, field: &str) -> Option<String> {
    match field {
        "name" => Some(t.name.clone()),
        "address" => Some(t.address.clone()),
        "zone" => t.zone.clone(),
        "service" => t.service.clone(),
        "vmid" => t.vmid.map(|v| v.to_string()),
        "tags" => (!t.tags.is_empty()).then(|| t.tags.join(",")),
        "pool" => t.pool.clone(),
        "available" => Some(t.available.to_string()),
        _ => None,
    }
}

/// A field of what the sync saw, shown as [`text`] shows the target's.
fn seen_text(s: &Seen, field: &str) -> Option<String> {
    match field {
        "name" => Some(s.name.clone()),
        "address" => Some(s.address.clone()),
        "zone" => Some(s.zone.clone()),
        "service" => s.service.clone(),
        "vmid" => s.vmid.map(|v| v.to_string()),
        "tags" => (!s.tags.is_empty()).then(|| s.tags.join(",")),
        "pool" => s.pool.clone(),
        "available" => Some(s.available.to_string()),
        "node" => s.node.clone(),
        "guest_type" => Some(s.guest_type.clone()),
        "status" => Some(s.status.clone()),
        "address_origin" => s.address_origin.clone(),
        _ => None,
    }
}
