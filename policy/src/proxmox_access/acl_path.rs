//! Proxmox ACL paths a session's token may be granted roles on.
//!
//! The accepted shapes are those pve-access-control 9.1 accepts for an ACL (its
//! `check_path`), minus `/access` and everything below it: roles on `/access` govern users,
//! groups, realms and tokens, and a session's token never gets any there.

/// Normalises `path` the way Proxmox does (repeated `/` collapsed, a trailing `/` dropped)
/// and checks it is an ACL path a session may be granted roles on. The error says why not.
pub(crate) fn normalise(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "Proxmox ACL path `{path}` must start with `/` (e.g. /vms/4000, /pool/prod)"
        ));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let normal = format!("/{}", segments.join("/"));
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!(
            "Proxmox ACL path `{path}` has a `.` or `..` segment; write the path itself"
        ));
    }
    if segments.first() == Some(&"access") {
        return Err(format!(
            "Proxmox ACL path `{path}` is under /access (users, groups, realms, tokens, ACLs): \
             a session's token is never granted roles there"
        ));
    }
    if shape_is_known(&segments) {
        Ok(normal)
    } else {
        Err(format!(
            "`{path}` is not a Proxmox ACL path; use /, /vms, /vms/{{vmid}}, /pool/{{pool}}, \
             /storage/{{storage}}, /nodes/{{node}}, /sdn/..., or /mapping/..."
        ))
    }
}

/// Whether the segments form one of the ACL path shapes Proxmox accepts (without /access).
fn shape_is_known(segments: &[&str]) -> bool {
    let name = |s: &str| !s.is_empty() && s.bytes().all(is_name_byte);
    let alnum = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    let sdn_id = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    match segments {
        [] => true,
        ["nodes" | "pool" | "sdn" | "storage" | "vms" | "mapping"] => true,
        ["nodes" | "storage", id] => name(id),
        ["vms", vmid] => is_vmid(vmid),
        ["pool", rest @ ..] => (1..=3).contains(&rest.len()) && rest.iter().all(|s| name(s)),
        ["mapping", rest @ ..] => (1..=2).contains(&rest.len()) && rest.iter().all(|s| name(s)),
        ["sdn", "controllers"] | ["sdn", "dns" | "fabrics" | "ipams"] => true,
        ["sdn", "prefix-lists" | "route-maps" | "zones"] => true,
        ["sdn", "controllers", id] => sdn_id(id),
        ["sdn", "dns" | "fabrics" | "ipams" | "prefix-lists" | "route-maps", id] => alnum(id),
        ["sdn", "zones", zone] => name(zone),
        ["sdn", "zones", zone, vnet] => name(zone) && name(vnet),
        ["sdn", "zones", zone, vnet, tag] => name(zone) && name(vnet) && is_vlan_tag(tag),
        _ => false,
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// A VMID as an ACL path takes it: at least three digits, no leading zero.
fn is_vmid(s: &str) -> bool {
    s.len() >= 3 && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

/// A VLAN tag in an SDN path: 1-4 digits, no leading zero.
fn is_vlan_tag(s: &str) -> bool {
    (1..=4).contains(&s.len()) && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}
