//! Target names for discovered guests and nodes: sanitised from what Proxmox calls them,
//! unique within the cluster, and never one another target already has.
//!
//! A name is claimed in this order, so that a sync renames as little as it can:
//! 1. names an admin set (an override): kept as they are;
//! 2. names a stored target already has and would be given again: kept;
//! 3. everything else, by source key: the plain name if free, else the name with `-<vmid>`
//!    (`-node` for a node) after the stem; if that is taken too, the guest is refused.
//!
//! On a fresh cluster this is "the lowest key keeps the name"; later, a new guest never
//! takes a name an existing target holds. A name held by a target outside this cluster
//! (`taken_names`) is refused, never worked around: the admin decides who gets it.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{looks_like, IdKind};

/// The longest target name (the API's rule).
const MAX_NAME: usize = 64;

/// `raw` as a target name stem: lower case, runs of anything outside `[a-z0-9_.]` become
/// one `-`, no `-` at either end. Empty when nothing usable is left.
pub(super) fn sanitise(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            c
        } else {
            '-'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    out.trim_matches('-').to_owned()
}

/// `stem-part-part…suffix`, the stem cut so that the whole fits [`MAX_NAME`]; a result
/// still too long (a very long suffix) fails [`is_valid`].
pub(super) fn compose(stem: &str, parts: &[&str], suffix: &str) -> String {
    let tail: String = parts
        .iter()
        .map(|p| format!("-{}", sanitise(p)))
        .chain(std::iter::once(suffix.to_owned()))
        .collect();
    let room = MAX_NAME.saturating_sub(tail.len());
    // Sanitised stems are ASCII, so any byte index is a char boundary.
    let cut = stem.get(..room.min(stem.len())).unwrap_or(stem);
    let cut = cut.trim_end_matches('-');
    let stem = if cut.is_empty() { stem } else { cut };
    format!("{stem}{tail}")
}

/// The rule `POST /v1/targets` applies to a name (api/targets.rs `check_name`).
pub(super) fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !looks_like(IdKind::Target, name)
}

/// What one target asks of the naming.
#[derive(Debug)]
pub(super) struct Request<'a> {
    pub key: &'a str,
    /// The name it gets when free.
    pub plain: String,
    /// The name it gets when another target of the cluster has `plain`.
    pub fallback: String,
    /// The name an admin gave it: kept.
    pub fixed: Option<String>,
    /// Whether its stored name is `plain`.
    pub holds_plain: bool,
}

/// The name of every request (key → name) or why it cannot have one (key → reason).
/// `reserved` are names of this cluster's targets outside the plan (kept as they are).
pub(super) fn assign(
    requests: &[Request<'_>],
    taken: &BTreeSet<String>,
    reserved: &BTreeSet<String>,
) -> BTreeMap<String, Result<String, String>> {
    let mut claimed: BTreeMap<String, String> = reserved
        .iter()
        .map(|n| (n.clone(), "another target of this cluster".to_owned()))
        .collect();
    let mut out = BTreeMap::new();
    for r in requests {
        if let Some(name) = &r.fixed {
            claimed.insert(name.clone(), r.key.to_owned());
            out.insert(r.key.to_owned(), Ok(name.clone()));
        }
    }
    let mut sorted: Vec<&Request<'_>> = requests.iter().filter(|r| r.fixed.is_none()).collect();
    sorted.sort_by_key(|r| r.key);
    for r in sorted.iter().filter(|r| r.holds_plain) {
        let free = is_valid(&r.plain) && !taken.contains(&r.plain);
        if free && !claimed.contains_key(&r.plain) {
            claimed.insert(r.plain.clone(), r.key.to_owned());
            out.insert(r.key.to_owned(), Ok(r.plain.clone()));
        }
    }
    for r in sorted {
        if out.contains_key(r.key) {
            continue;
        }
        let result = choose(r, taken, &claimed);
        if let Ok(name) = &result {
            claimed.insert(name.clone(), r.key.to_owned());
        }
        out.insert(r.key.to_owned(), result);
    }
    out
}

fn choose(
    r: &Request<'_>,
    taken: &BTreeSet<String>,
    claimed: &BTreeMap<String, String>,
) -> Result<String, String> {
    check(&r.plain, taken)?;
    let Some(holder) = claimed.get(&r.plain) else {
        return Ok(r.plain.clone());
    };
    check(&r.fallback, taken)
        .map_err(|why| format!("its name `{}` is taken by {holder}, and {why}", r.plain))?;
    match claimed.get(&r.fallback) {
        None => Ok(r.fallback.clone()),
        Some(other) => Err(format!(
            "its names `{}` and `{}` are taken by {holder} and {other}: rename the guest \
             in Proxmox",
            r.plain, r.fallback
        )),
    }
}

/// Whether `name` may be a discovered target's name at all.
fn check(name: &str, taken: &BTreeSet<String>) -> Result<(), String> {
    if !is_valid(name) {
        return Err(format!(
            "the name `{name}` is not a valid target name (1-64 letters, digits, `-`, `_` or \
             `.`, not shaped like a target id): rename the guest in Proxmox or shorten the \
             cluster's name_suffix"
        ));
    }
    if taken.contains(name) {
        return Err(format!(
            "the name `{name}` is taken by another target named `{name}` (hand-made or \
             another cluster's): rename one of them, or set the cluster's name_suffix"
        ));
    }
    Ok(())
}
