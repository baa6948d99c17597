//! What a sync says about its changes, without I/O: each [`Change`] as a line of the API's
//! diff ([`to_api`]) and as its one audit event ([`event_of`]), and the counts of
//! `catalog_synced`.

use portcullis_proto::catalog::CatalogChange;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::catalog::plan::{Change, Plan, Seen};
use crate::store::targets::TargetRecord;

/// `change` as a line of `portcullis catalog sync`'s diff.
pub(crate) fn to_api(change: &Change) -> CatalogChange {
    match change {
        Change::Add(t) => CatalogChange {
            kind: "added".into(),
            key: key_of(t),
            name: t.name.clone(),
            fields: Vec::new(),
            reason: None,
            address: Some(t.address.clone()),
            zone: t.zone.clone(),
        },
        Change::Update { after, fields, .. } => CatalogChange {
            kind: "changed".into(),
            key: key_of(after),
            name: after.name.clone(),
            fields: fields.clone(),
            reason: None,
            address: Some(after.address.clone()),
            zone: after.zone.clone(),
        },
        Change::Remove { target, reason } => CatalogChange {
            kind: "removed".into(),
            key: key_of(target),
            name: target.name.clone(),
            fields: Vec::new(),
            reason: Some(reason.clone()),
            address: Some(target.address.clone()),
            zone: target.zone.clone(),
        },
        Change::Refuse {
            key,
            name,
            reason,
            address,
            ..
        } => CatalogChange {
            kind: "refused".into(),
            key: key.clone(),
            name: name.clone(),
            fields: Vec::new(),
            reason: Some(reason.clone()),
            address: address.clone(),
            zone: None,
        },
    }
}

/// The one audit event of `change` in `cluster`, by `actor`. `plan` is the whole plan
/// `change` belongs to: a refusal of a guest whose target the same plan removes names that
/// target.
pub(crate) fn event_of(cluster: &str, change: &Change, plan: &Plan, actor: Actor) -> AuditEvent {
    match change {
        Change::Add(t) => AuditEvent::new(
            actor,
            Event::CatalogTargetAdded {
                details: details(cluster, t),
            },
        )
        .target(&t.id),
        Change::Update {
            before,
            after,
            fields,
        } => {
            let changed: Vec<String> = fields.iter().map(|f| f.field.clone()).collect();
            let moved = |field: &str| changed.iter().any(|c| c == field);
            let details = event::CatalogTarget {
                previous_address: moved("address").then(|| before.address.clone()),
                previous_zone: if moved("zone") {
                    before.zone.clone()
                } else {
                    None
                },
                changed,
                ..details(cluster, after)
            };
            AuditEvent::new(actor, Event::CatalogTargetChanged { details }).target(&after.id)
        }
        Change::Remove { target, reason } => AuditEvent::new(
            actor,
            Event::CatalogTargetRemoved {
                reason: reason.clone(),
                details: details(cluster, target),
            },
        )
        .target(&target.id),
        Change::Refuse {
            key,
            name,
            reason,
            vmid,
            node,
            address,
            address_origin,
        } => {
            let refused = AuditEvent::new(
                actor,
                Event::CatalogGuestRefused {
                    reason: reason.clone(),
                    details: event::CatalogTarget {
                        cluster: cluster.to_owned(),
                        source_key: key.clone(),
                        name: name.clone(),
                        vmid: *vmid,
                        node: node.clone(),
                        address: address.clone(),
                        address_origin: address_origin.clone(),
                        available: false,
                        ..event::CatalogTarget::default()
                    },
                },
            );
            match removed_target(plan, key) {
                Some(id) => refused.target(id),
                None => refused,
            }
        }
    }
}

/// The counts of `catalog_synced` (`sessions_ended` is the caller's).
pub(crate) fn counts(plan: &Plan) -> Counts {
    let mut counts = Counts {
        unchanged: plan.unchanged,
        ..Counts::default()
    };
    for change in &plan.changes {
        let slot = match change {
            Change::Add(_) => &mut counts.added,
            Change::Update { .. } => &mut counts.changed,
            Change::Remove { .. } => &mut counts.removed,
            Change::Refuse { .. } => &mut counts.refused,
        };
        *slot += 1;
    }
    counts
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub added: u32,
    pub changed: u32,
    pub removed: u32,
    pub refused: u32,
    pub unchanged: u32,
}

impl Counts {
    /// Whether a target went or changed: the live sessions are re-evaluated.
    pub(crate) fn touches_sessions(&self) -> bool {
        self.changed > 0 || self.removed > 0
    }
}

/// The audit event's view of a discovered target.
fn details(cluster: &str, t: &TargetRecord) -> event::CatalogTarget {
    let seen = Seen::of(t);
    event::CatalogTarget {
        cluster: cluster.to_owned(),
        source_key: key_of(t),
        name: t.name.clone(),
        vmid: t.vmid,
        node: seen.as_ref().and_then(|s| s.node.clone()),
        address: Some(t.address.clone()),
        address_origin: seen.and_then(|s| s.address_origin),
        zone: t.zone.clone(),
        service: t.service.clone(),
        available: t.available,
        ..event::CatalogTarget::default()
    }
}

fn key_of(t: &TargetRecord) -> String {
    t.source_key.clone().unwrap_or_default()
}

/// The id of the target `plan` removes for the guest `key`, if it removes one.
fn removed_target<'p>(plan: &'p Plan, key: &str) -> Option<&'p str> {
    plan.changes.iter().find_map(|change| match change {
        Change::Remove { target, .. } if of_guest(target, key) => Some(target.id.as_str()),
        _ => None,
    })
}

/// Whether `t` is the guest `key`'s target (`qemu/100`) or one of its further services'
/// (`qemu/100#rdp`).
fn of_guest(t: &TargetRecord, key: &str) -> bool {
    t.source_key.as_deref().is_some_and(|k| {
        k == key
            || k.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('#'))
    })
}
