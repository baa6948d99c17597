//! Proxmox SDN: VNets (a guest attached to one has `netN bridge=<vnet>`), their subnets,
//! and the IPAM's entries. A configured address of a NIC on a VNet with subnets must lie
//! in one of them (otherwise the guest's config disagrees with its network and the address
//! is dropped); an IPAM entry gives an address to a guest whose config has none.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::netconf;
use super::wire::{self, Flex};

/// A VNet: its zone and subnets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct VNet {
    pub zone: String,
    pub subnets: Vec<IpNet>,
}

/// An IPAM entry of a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IpamEntry {
    pub vmid: u32,
    pub ip: IpAddr,
    /// Upper case.
    pub mac: Option<String>,
    pub vnet: Option<String>,
}

/// What SDN the cluster has, as far as the token may read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Sdn {
    pub vnets: BTreeMap<String, VNet>,
    pub ipam: Vec<IpamEntry>,
}

/// Whether a configured address fits the network of its NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fit {
    /// The NIC is not on a VNet, or the VNet's subnets are not known: nothing to check.
    Unchecked,
    Inside,
    /// Outside every subnet of the VNet.
    Outside {
        vnet: String,
        subnets: Vec<IpNet>,
    },
}

impl Sdn {
    pub(crate) fn fit(&self, bridge: Option<&str>, ip: IpAddr) -> Fit {
        let Some((name, vnet)) = bridge.and_then(|b| self.vnets.get_key_value(b)) else {
            return Fit::Unchecked;
        };
        if vnet.subnets.is_empty() {
            return Fit::Unchecked;
        }
        if vnet.subnets.iter().any(|s| s.contains(&ip)) {
            Fit::Inside
        } else {
            Fit::Outside {
                vnet: name.clone(),
                subnets: vnet.subnets.clone(),
            }
        }
    }

    /// The IPAM's addresses of `vmid`, IPv4 first.
    pub(crate) fn ipam_of(&self, vmid: u32) -> Vec<&IpamEntry> {
        let mut entries: Vec<&IpamEntry> = self.ipam.iter().filter(|e| e.vmid == vmid).collect();
        entries.sort_by_key(|e| e.ip.is_ipv6());
        entries
    }
}

#[derive(Deserialize)]
struct RawVNet {
    vnet: String,
    #[serde(default)]
    zone: Option<String>,
}

/// `GET /cluster/sdn/vnets`: VNet name → zone.
pub(crate) fn vnets(data: Value) -> Result<(BTreeMap<String, VNet>, Vec<String>), String> {
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    for entry in wire::list(data)? {
        match serde_json::from_value::<RawVNet>(entry) {
            Ok(raw) if wire::is_name(&raw.vnet) => {
                out.insert(
                    raw.vnet,
                    VNet {
                        zone: raw.zone.unwrap_or_default(),
                        subnets: Vec::new(),
                    },
                );
            }
            Ok(raw) => notes.push(format!(
                "SDN VNet {:?} was skipped: not a VNet name",
                raw.vnet
            )),
            Err(e) => notes.push(format!("an entry of /cluster/sdn/vnets was skipped: {e}")),
        }
    }
    Ok((out, notes))
}

#[derive(Deserialize)]
struct RawSubnet {
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    subnet: Option<String>,
}

/// `GET /cluster/sdn/vnets/{vnet}/subnets`: the subnets (as networks: host bits cleared).
pub(crate) fn subnets(data: Value) -> Result<(Vec<IpNet>, Vec<String>), String> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for entry in wire::list(data)? {
        let raw = serde_json::from_value::<RawSubnet>(entry).ok();
        let text = raw.and_then(|r| r.cidr.or(r.subnet)).unwrap_or_default();
        match text.trim().parse::<IpNet>() {
            Ok(net) => out.push(net.trunc()),
            Err(_) => notes.push(format!("an SDN subnet {text:?} was skipped: not a CIDR")),
        }
    }
    Ok((out, notes))
}

#[derive(Deserialize)]
struct RawZone {
    zone: String,
    #[serde(default)]
    ipam: Option<String>,
}

/// `GET /cluster/sdn/zones`: zone → the IPAM it names.
pub(crate) fn zone_ipams(data: Value) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for entry in wire::list(data)? {
        if let Ok(RawZone {
            zone,
            ipam: Some(ipam),
        }) = serde_json::from_value::<RawZone>(entry)
        {
            if wire::is_name(&ipam) {
                out.insert(zone, ipam);
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RawIpam {
    #[serde(default)]
    vmid: Option<Flex>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    vnet: Option<String>,
}

/// `GET /cluster/sdn/ipams/{ipam}/status`: entries `{vmid, ip, mac, hostname, vnet, subnet,
/// zone}` (gateways and entries without a guest are skipped).
pub(crate) fn ipam_status(data: Value) -> Result<(Vec<IpamEntry>, Vec<String>), String> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for entry in wire::list(data)? {
        let Ok(raw) = serde_json::from_value::<RawIpam>(entry) else {
            notes.push("an IPAM entry was skipped: not an object".into());
            continue;
        };
        let Some(vmid) = raw.vmid.as_ref().and_then(Flex::as_u32) else {
            continue;
        };
        let text = raw.ip.unwrap_or_default();
        match netconf::cidr_address(&text) {
            Some(ip) => out.push(IpamEntry {
                vmid,
                ip,
                mac: raw.mac.as_deref().and_then(netconf::mac),
                vnet: raw.vnet,
            }),
            None => notes.push(format!(
                "the IPAM entry of guest {vmid} was skipped: {text:?} is not an address"
            )),
        }
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests;
