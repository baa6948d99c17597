//! The order a sync applies its changes in, so that target names stay unique after each
//! one (the store enforces it): removals free names, updates hand them on, additions take
//! what is left; refusals change no target and come last.

use super::Change;

/// Removals, updates, additions, refusals; each by source key, except that an update
/// giving up a name goes before an update taking it (a cycle of renames cannot be ordered
/// and keeps key order).
pub(super) fn in_order(changes: Vec<Change>) -> Vec<Change> {
    let mut removes = Vec::new();
    let mut updates = Vec::new();
    let mut adds = Vec::new();
    let mut refuses = Vec::new();
    for change in changes {
        match change {
            Change::Remove { .. } => removes.push(change),
            Change::Update { .. } => updates.push(change),
            Change::Add(_) => adds.push(change),
            Change::Refuse { .. } => refuses.push(change),
        }
    }
    for group in [&mut removes, &mut updates, &mut adds, &mut refuses] {
        group.sort_by(|a, b| change_key(a).cmp(change_key(b)));
    }
    let mut out = removes;
    let mut pending = updates;
    while !pending.is_empty() {
        let blocked = |c: &Change| {
            let Change::Update { before, after, .. } = c else {
                return false;
            };
            pending.iter().any(|other| match other {
                Change::Update { before: o, .. } => o.id != before.id && o.name == after.name,
                _ => false,
            })
        };
        let next = pending.iter().position(|c| !blocked(c)).unwrap_or(0);
        out.push(pending.remove(next));
    }
    out.extend(adds);
    out.extend(refuses);
    out
}

fn change_key(change: &Change) -> &str {
    match change {
        Change::Add(t) | Change::Update { after: t, .. } | Change::Remove { target: t, .. } => {
            t.source_key.as_deref().unwrap_or_default()
        }
        Change::Refuse { key, .. } => key,
    }
}
