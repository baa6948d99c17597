//! The matrix for people and for the network: a seed-style Markdown table, an nftables
//! ruleset, Proxmox VE firewall files, and plain values for a page (`table`). One matrix,
//! enforced by the broker and by the network alike.

mod markdown;
mod nftables;
mod proxmox;
mod requestable;
mod table;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

pub use markdown::markdown;
pub use nftables::nftables;
pub use proxmox::proxmox;
pub use table::{matrix, roles, Matrix, MatrixCell, MatrixRow, RoleSummary};

use crate::model::{Access, Protocol};
use crate::policy::{Cell, Policy, Service, ZoneId};

/// What the network exports need beyond the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// The workers' addresses. A broker-only cell admits its services only from these; when
    /// empty, the broker zone's CIDRs stand in for them.
    pub worker_addrs: Vec<IpAddr>,
    /// Known targets as `(vmid, zone)`: each gets a `<vmid>.fw` in the Proxmox export.
    pub targets: Vec<(u32, String)>,
}

/// The Proxmox VE firewall configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxmoxExport {
    /// `/etc/pve/firewall/cluster.fw`: ipsets and security groups.
    pub cluster_fw: String,
    /// `/etc/pve/firewall/<vmid>.fw` for each known target.
    pub vm_fw: BTreeMap<u32, String>,
}

/// A service a firewall rule opens, over the protocols it opens it for.
pub(crate) struct Opening<'a> {
    pub service: &'a Service,
    pub protocol: Protocol,
}

/// What a cell opens on the network. An allow or mTLS-only cell opens its services as
/// declared. A broker-only cell into `dst` opens, to the workers only, just what a session
/// can carry through it: its services that the broker's own leg to `dst` admits too, over
/// TCP. The controller refuses every other session (docs/policy.md, condition 2), so
/// opening more would let a worker reach what the matrix denies it.
pub(crate) fn openings<'a>(policy: &'a Policy, cell: &Cell, dst: ZoneId) -> Vec<Opening<'a>> {
    let brokered = cell.access == Access::BrokerOnly;
    let broker_leg = policy.cell(policy.broker, dst);
    cell.services
        .iter()
        .filter(|id| !brokered || broker_leg.admits(*id))
        .filter_map(|id| policy.services.get(id))
        .filter_map(|service| {
            let protocol = match (brokered, service.protocol) {
                (false, protocol) => protocol,
                (true, Protocol::Tcp | Protocol::Both) => Protocol::Tcp,
                (true, Protocol::Udp) => return None,
            };
            Some(Opening { service, protocol })
        })
        .collect()
}

/// The addresses that really resolve to `zone`: its CIDRs minus the more specific CIDRs of
/// other zones nested inside them (most-specific-wins, flattened into disjoint prefixes).
pub(crate) fn effective_cidrs(policy: &Policy, zone: ZoneId) -> Vec<IpNet> {
    let Some(z) = policy.zones.get(zone) else {
        return Vec::new();
    };
    let holes = nested_holes(policy, zone);
    let mut out = Vec::new();
    for net in &z.cidrs {
        subtract(*net, &holes, &mut out);
    }
    out
}

/// CIDRs of other zones that lie strictly inside this zone's CIDRs.
pub(crate) fn nested_holes(policy: &Policy, zone: ZoneId) -> Vec<IpNet> {
    let Some(z) = policy.zones.get(zone) else {
        return Vec::new();
    };
    let mut holes = Vec::new();
    for (other, oz) in policy.zones.iter().enumerate() {
        if other == zone {
            continue;
        }
        for hole in &oz.cidrs {
            if z.cidrs.iter().any(|n| n.contains(hole) && n != hole) {
                holes.push(*hole);
            }
        }
    }
    holes
}

fn subtract(net: IpNet, holes: &[IpNet], out: &mut Vec<IpNet>) {
    if holes.iter().any(|h| h.contains(&net)) {
        return;
    }
    if !holes.iter().any(|h| net.contains(h)) {
        out.push(net);
        return;
    }
    match net.subnets(net.prefix_len().saturating_add(1)) {
        Ok(halves) => halves.for_each(|half| subtract(half, holes, out)),
        Err(_) => out.push(net),
    }
}

/// The address block of microsegment `n` of a zone, if the zone has that many.
pub(crate) fn segment_block(policy: &Policy, zone: ZoneId, n: u32) -> Option<IpNet> {
    let z = policy.zones.get(zone)?;
    let prefix_len = z.microsegments?.prefix_len;
    let mut left = n;
    for net in &z.cidrs {
        let count = crate::zones::segment_count(net, prefix_len)?;
        if left < count {
            return net
                .subnets(prefix_len)
                .ok()?
                .nth(usize::try_from(left).ok()?);
        }
        left -= count;
    }
    None
}

/// How many microsegments to spell out for a zone: its VMID blocks when it has VMID
/// ranges, else its address blocks; at most `cap`.
pub(crate) fn segment_count_for_export(policy: &Policy, zone: ZoneId, cap: u32) -> u32 {
    let Some(z) = policy.zones.get(zone) else {
        return 0;
    };
    let Some(ms) = z.microsegments else {
        return 0;
    };
    let by_addr: u32 = z
        .cidrs
        .iter()
        .filter_map(|n| crate::zones::segment_count(n, ms.prefix_len))
        .fold(0u32, u32::saturating_add);
    let by_vmid: u32 = z
        .vmids
        .iter()
        .map(|(s, e)| (e - s) / ms.vmids_per_segment.max(1) + 1)
        .fold(0u32, u32::saturating_add);
    let count = if z.vmids.is_empty() {
        by_addr
    } else {
        by_vmid.min(by_addr)
    };
    count.min(cap)
}

/// Unique identifiers for zones made of `[a-z0-9_-]` (with `sep` for other characters),
/// at most `max` long, falling back to `z<index>` on a collision.
pub(crate) fn zone_idents(policy: &Policy, sep: char, max: usize) -> Vec<String> {
    let mut used = HashSet::new();
    policy
        .zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            let mut ident: String = z
                .name
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { sep })
                .take(max)
                .collect();
            if !ident.starts_with(|c: char| c.is_ascii_alphabetic()) || !used.insert(ident.clone())
            {
                ident = format!("z{i}");
                used.insert(ident.clone());
            }
            ident
        })
        .collect()
}

#[cfg(test)]
mod tests;
