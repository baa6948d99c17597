//! From addresses and Proxmox attributes to zones and microsegments.
//!
//! Zones come from addresses, never from labels: the target's resolved IP decides its zone;
//! the VMID, tags and pool must agree with it when they select a zone at all, and so must a
//! declared zone. Nested CIDRs resolve to the most specific zone.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::policy::{Policy, Zone, ZoneId};
use crate::request::TargetFacts;

/// Why a target has no zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("the address {0} is in no zone")]
    AddressInNoZone(IpAddr),
    #[error("the target's {selector} puts it in zone {selected}, but its address {ip} is in zone {by_address}")]
    SelectorDisagrees {
        selector: String,
        selected: String,
        ip: IpAddr,
        by_address: String,
    },
    #[error("the target declares zone {declared}, but its address {ip} is in zone {by_address}")]
    DeclaredZoneDisagrees {
        declared: String,
        ip: IpAddr,
        by_address: String,
    },
    #[error("the target's VMID {vmid} is in microsegment {by_vmid} of {zone}, but its address {ip} is in microsegment {by_address}")]
    MicrosegmentDisagrees {
        zone: String,
        vmid: u32,
        by_vmid: u32,
        ip: IpAddr,
        by_address: u32,
    },
}

/// The zone of an address, by the most specific CIDR that contains it.
pub fn zone_of_addr(policy: &Policy, ip: IpAddr) -> Option<&str> {
    policy.addresses.lookup(ip).map(|id| policy.zone_name(id))
}

/// The zone of a target: by its address, checked against its other selectors.
pub fn zone_of_target(policy: &Policy, target: &TargetFacts) -> Result<String, ZoneError> {
    locate_target(policy, target).map(|at| policy.zone_name(at.zone).to_owned())
}

/// A resolved place: a zone, and the microsegment within it when the zone has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub zone: ZoneId,
    pub microsegment: Option<u32>,
}

pub(crate) fn locate_addr(policy: &Policy, ip: IpAddr) -> Option<Place> {
    let ip = ip.to_canonical();
    let zone = policy.addresses.lookup(ip)?;
    let microsegment = policy.zones.get(zone).and_then(|z| segment_of_addr(z, ip));
    Some(Place { zone, microsegment })
}

pub(crate) fn locate_target(policy: &Policy, target: &TargetFacts) -> Result<Place, ZoneError> {
    let ip = target.ip.to_canonical();
    let place = locate_addr(policy, ip).ok_or(ZoneError::AddressInNoZone(ip))?;
    let by_address = || policy.zone_name(place.zone).to_owned();
    let disagree = |selector: String, selected: ZoneId| ZoneError::SelectorDisagrees {
        selector,
        selected: policy.zone_name(selected).to_owned(),
        ip,
        by_address: by_address(),
    };
    if let Some(vmid) = target.vmid {
        if let Some(zone) = zone_of_vmid(policy, vmid) {
            if zone != place.zone {
                return Err(disagree(format!("VMID {vmid}"), zone));
            }
            let zone_def = policy.zones.get(zone);
            let by_vmid = zone_def.and_then(|z| segment_of_vmid(z, vmid));
            if let (Some(by_vmid), Some(by_address)) = (by_vmid, place.microsegment) {
                if by_vmid != by_address {
                    return Err(ZoneError::MicrosegmentDisagrees {
                        zone: by_address_name(policy, place.zone),
                        vmid,
                        by_vmid,
                        ip,
                        by_address,
                    });
                }
            }
        }
    }
    for tag in &target.tags {
        if let Some(&zone) = policy.tags.get(tag) {
            if zone != place.zone {
                return Err(disagree(format!("tag `{tag}`"), zone));
            }
        }
    }
    if let Some(pool) = &target.pool {
        if let Some(&zone) = policy.pools.get(pool) {
            if zone != place.zone {
                return Err(disagree(format!("pool `{pool}`"), zone));
            }
        }
    }
    if let Some(declared) = &target.declared_zone {
        if policy.zone_id(declared) != Some(place.zone) {
            return Err(ZoneError::DeclaredZoneDisagrees {
                declared: declared.clone(),
                ip,
                by_address: by_address(),
            });
        }
    }
    Ok(place)
}

fn by_address_name(policy: &Policy, zone: ZoneId) -> String {
    policy.zone_name(zone).to_owned()
}

/// The zone whose VMID ranges hold `vmid`, if any.
pub(crate) fn zone_of_vmid(policy: &Policy, vmid: u32) -> Option<ZoneId> {
    let idx = policy.vmids.partition_point(|(start, _, _)| *start <= vmid);
    let (start, end, zone) = policy.vmids.get(idx.checked_sub(1)?)?;
    (*start..=*end).contains(&vmid).then_some(*zone)
}

/// The place of a VMID alone (for `explain --to vmid:N`).
pub(crate) fn locate_vmid(policy: &Policy, vmid: u32) -> Option<Place> {
    let zone = zone_of_vmid(policy, vmid)?;
    let microsegment = policy
        .zones
        .get(zone)
        .and_then(|z| segment_of_vmid(z, vmid));
    Some(Place { zone, microsegment })
}

/// Microsegment of a VMID: blocks counted through the zone's VMID ranges in order.
pub(crate) fn segment_of_vmid(zone: &Zone, vmid: u32) -> Option<u32> {
    let size = zone.microsegments?.vmids_per_segment.max(1);
    let mut before: u32 = 0;
    for (start, end) in &zone.vmids {
        if (*start..=*end).contains(&vmid) {
            return before.checked_add((vmid - start) / size);
        }
        let blocks = (end - start) / size + 1;
        before = before.checked_add(blocks)?;
    }
    None
}

/// Microsegment of an address: `/prefix_len` blocks counted through the zone's CIDRs.
pub(crate) fn segment_of_addr(zone: &Zone, ip: IpAddr) -> Option<u32> {
    let prefix_len = zone.microsegments?.prefix_len;
    let mut before: u32 = 0;
    for net in &zone.cidrs {
        let host_bits = u32::from(net.max_prefix_len().checked_sub(prefix_len)?);
        if net.contains(&ip) {
            let offset = addr_bits(ip).checked_sub(addr_bits(net.network()))?;
            let index = offset.checked_shr(host_bits).unwrap_or(0);
            return before.checked_add(u32::try_from(index).ok()?);
        }
        before = before.checked_add(segment_count(net, prefix_len)?)?;
    }
    None
}

/// How many `/prefix_len` blocks a CIDR holds; `None` when too many to count in a u32.
pub(crate) fn segment_count(net: &IpNet, prefix_len: u8) -> Option<u32> {
    let bits = u32::from(prefix_len.checked_sub(net.prefix_len())?);
    1u32.checked_shl(bits).filter(|_| bits < 32)
}

fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Longest-prefix match over every zone CIDR. A linear scan over entries sorted from the
/// most to the least specific: a homelab has tens of CIDRs, and this costs nanoseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrefixTable {
    v4: Vec<(u32, u32, ZoneId)>,
    v6: Vec<(u128, u128, ZoneId)>,
}

impl PrefixTable {
    pub(crate) fn build(entries: impl IntoIterator<Item = (IpNet, ZoneId)>) -> PrefixTable {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (net, zone) in entries {
            match net {
                IpNet::V4(n) => v4.push((
                    u32::from(n.network()),
                    u32::from(n.netmask()),
                    zone,
                    n.prefix_len(),
                )),
                IpNet::V6(n) => v6.push((
                    u128::from(n.network()),
                    u128::from(n.netmask()),
                    zone,
                    n.prefix_len(),
                )),
            }
        }
        v4.sort_by_key(|e| std::cmp::Reverse(e.3));
        v6.sort_by_key(|e| std::cmp::Reverse(e.3));
        PrefixTable {
            v4: v4.into_iter().map(|(n, m, z, _)| (n, m, z)).collect(),
            v6: v6.into_iter().map(|(n, m, z, _)| (n, m, z)).collect(),
        }
    }

    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<ZoneId> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4
                    .iter()
                    .find(|(net, mask, _)| a & mask == *net)
                    .map(|e| e.2)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6
                    .iter()
                    .find(|(net, mask, _)| a & mask == *net)
                    .map(|e| e.2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Microsegments;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|_| panic!("bad test cidr {s}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test ip {s}"))
    }

    #[test]
    fn most_specific_prefix_wins() {
        let table = PrefixTable::build([
            (net("10.0.0.0/8"), 0),
            (net("10.1.0.0/16"), 1),
            (net("10.1.2.0/24"), 2),
            (net("fd00::/8"), 3),
        ]);
        assert_eq!(table.lookup(ip("10.9.9.9")), Some(0));
        assert_eq!(table.lookup(ip("10.1.9.9")), Some(1));
        assert_eq!(table.lookup(ip("10.1.2.3")), Some(2));
        assert_eq!(table.lookup(ip("::ffff:10.1.2.3")), Some(2));
        assert_eq!(table.lookup(ip("fd12::1")), Some(3));
        assert_eq!(table.lookup(ip("192.168.1.1")), None);
    }

    #[test]
    fn microsegments_pair_vmid_blocks_with_address_blocks() {
        let zone = Zone {
            name: "WORKLOADS".into(),
            description: None,
            trust: None,
            cidrs: vec![net("10.40.0.0/22"), net("10.50.0.0/24")],
            vmids: vec![(4000, 4399), (6000, 6099)],
            tags: vec![],
            pools: vec![],
            microsegments: Some(Microsegments {
                vmids_per_segment: 100,
                prefix_len: 24,
            }),
            ssh_mode: crate::ssh::SshMode::Certificate,
            recording: crate::recording::ZoneRecording::default(),
            guest_reported_addresses: false,
        };
        assert_eq!(segment_of_vmid(&zone, 4000), Some(0));
        assert_eq!(segment_of_vmid(&zone, 4099), Some(0));
        assert_eq!(segment_of_vmid(&zone, 4100), Some(1));
        assert_eq!(segment_of_vmid(&zone, 6050), Some(4));
        assert_eq!(segment_of_vmid(&zone, 5000), None);
        assert_eq!(segment_of_addr(&zone, ip("10.40.0.7")), Some(0));
        assert_eq!(segment_of_addr(&zone, ip("10.40.3.7")), Some(3));
        assert_eq!(segment_of_addr(&zone, ip("10.50.0.9")), Some(4));
        assert_eq!(segment_of_addr(&zone, ip("10.60.0.9")), None);
    }
}
