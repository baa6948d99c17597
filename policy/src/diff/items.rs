//! Zones, services, roles and matrix cells that both policies have, and what about each
//! changed, in words. The decisions these changes make are the tuples' business; these say
//! what no decision shows (a zone's addresses, a role's groups or terms of request).

use super::{CellChange, ItemChange};
use crate::access::duration::render_secs;
use crate::access::Requestable;
use crate::evaluate::describe;
use crate::policy::{Policy, Role, Service, Zone};

/// Collects `what: old -> new` lines for the fields that differ.
#[derive(Default)]
struct Lines(Vec<String>);

impl Lines {
    fn field(&mut self, what: &str, old: String, new: String) {
        if old != new {
            self.0.push(format!("{what}: {old} -> {new}"));
        }
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Pairs the items both policies name, in the new policy's order, with their changes.
fn paired<'a, T: 'a>(
    old: &'a [T],
    new: &'a [T],
    name: impl Fn(&T) -> &str,
    changes: impl Fn(&T, &T) -> Vec<String>,
) -> Vec<ItemChange> {
    new.iter()
        .filter_map(|n| {
            let o = old.iter().find(|o| name(o) == name(n))?;
            let lines = changes(o, n);
            (!lines.is_empty()).then(|| ItemChange {
                name: name(n).to_owned(),
                changes: lines,
            })
        })
        .collect()
}

pub(super) fn zones(old: &Policy, new: &Policy) -> Vec<ItemChange> {
    paired(
        &old.zones,
        &new.zones,
        |z| &z.name,
        |a: &Zone, b: &Zone| {
            let mut l = Lines::default();
            l.field("cidrs", list(&a.cidrs), list(&b.cidrs));
            let ranges = |z: &Zone| {
                let r: Vec<String> = z
                    .vmids
                    .iter()
                    .map(|(lo, hi)| format!("{lo}-{hi}"))
                    .collect();
                list(&r)
            };
            l.field("vmids", ranges(a), ranges(b));
            l.field("tags", list(&a.tags), list(&b.tags));
            l.field("pools", list(&a.pools), list(&b.pools));
            l.field(
                "ssh_mode",
                a.ssh_mode.as_str().into(),
                b.ssh_mode.as_str().into(),
            );
            let rec = |z: &Zone| {
                format!(
                    "record {}, input {}, unrecorded_fallback {}",
                    z.recording.rule.required,
                    z.recording.rule.input,
                    z.recording.unrecorded_fallback
                )
            };
            l.field("recording", rec(a), rec(b));
            l.field(
                "guest_reported_addresses",
                a.guest_reported_addresses.to_string(),
                b.guest_reported_addresses.to_string(),
            );
            l.0
        },
    )
}

pub(super) fn services(old: &Policy, new: &Policy) -> Vec<ItemChange> {
    let zone_names = |p: &Policy, s: &Service| match &s.zones {
        None => "every zone".to_owned(),
        Some(ids) => {
            let names: Vec<&str> = ids.iter().map(|id| p.zone_name(id)).collect();
            list(&names)
        }
    };
    paired(
        &old.services,
        &new.services,
        |s| &s.name,
        |a: &Service, b: &Service| {
            let mut l = Lines::default();
            l.field("ports", a.ports.render("-"), b.ports.render("-"));
            l.field(
                "protocol",
                a.protocol.as_str().into(),
                b.protocol.as_str().into(),
            );
            l.field("zones", zone_names(old, a), zone_names(new, b));
            l.0
        },
    )
}

pub(super) fn roles(old: &Policy, new: &Policy) -> Vec<ItemChange> {
    paired(
        &old.roles,
        &new.roles,
        |r| &r.name,
        |a: &Role, b: &Role| {
            let mut l = Lines::default();
            let held = |r: &Role| {
                if r.requestable.is_some() {
                    "on request"
                } else {
                    "standing"
                }
            };
            l.field("held", held(a).into(), held(b).into());
            // A requestable role's groups are who may request it, not members.
            let groups_are = |r: &Role| {
                if r.requestable.is_some() {
                    "requesters"
                } else {
                    "groups"
                }
            };
            if groups_are(a) == groups_are(b) {
                l.field(groups_are(b), list(&a.groups), list(&b.groups));
            } else {
                l.field("groups", list(&a.groups), list(&b.groups));
            }
            l.field(
                "group_match",
                format!("{:?}", a.group_match).to_lowercase(),
                format!("{:?}", b.group_match).to_lowercase(),
            );
            let perms = |r: &Role| list(&r.permissions.iter().collect::<Vec<_>>());
            l.field("permissions", perms(a), perms(b));
            if let (Some(x), Some(y)) = (&a.requestable, &b.requestable) {
                requestable(&mut l, x, y);
            }
            l.0
        },
    )
}

/// The terms of request of a role requestable in both policies.
fn requestable(l: &mut Lines, a: &Requestable, b: &Requestable) {
    l.field("approvers", list(&a.approvers), list(&b.approvers));
    l.field(
        "approvals",
        a.approvals.to_string(),
        b.approvals.to_string(),
    );
    l.field(
        "max_duration",
        render_secs(a.max_duration_secs),
        render_secs(b.max_duration_secs),
    );
    l.field(
        "reason_required",
        a.reason_required.to_string(),
        b.reason_required.to_string(),
    );
    l.field("preapproved", list(&a.preapproved), list(&b.preapproved));
    let glass = |r: &Requestable| {
        r.break_glass
            .map_or_else(|| "none".into(), |g| render_secs(g.max_duration_secs))
    };
    l.field("break_glass", glass(a), glass(b));
}

/// Every cell, between zones either policy names, whose description differs.
pub(super) fn cells(old: &Policy, new: &Policy, zones: &[String]) -> Vec<CellChange> {
    let cell = |p: &Policy, from: &str, to: &str| match (p.zone_id(from), p.zone_id(to)) {
        (Some(s), Some(d)) => {
            let text = describe(p, s, d, p.cell(s, d));
            // Without the route: it is in `from` and `to`.
            text.split_once(": ")
                .map_or(text.clone(), |(_, rest)| rest.to_owned())
        }
        _ => "no such zone".to_owned(),
    };
    let mut out = Vec::new();
    for from in zones {
        for to in zones {
            let (a, b) = (cell(old, from, to), cell(new, from, to));
            let both_absent = a == "no such zone" || b == "no such zone";
            // A cell of a zone added or removed is that zone's change, unless it allows.
            let trivial = both_absent
                && [&a, &b]
                    .iter()
                    .all(|t| t.starts_with("deny") || *t == "no such zone");
            if a != b && !trivial {
                out.push(CellChange {
                    from: from.clone(),
                    to: to.clone(),
                    old: a,
                    new: b,
                });
            }
        }
    }
    out
}
