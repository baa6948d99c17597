//! A guest's configured network, from its config (`GET .../qemu/{vmid}/config`,
//! `GET .../lxc/{vmid}/config`): the NICs (`netN`: MAC and bridge) and the addresses the
//! admin set, cloud-init's `ipconfigN` for a VM, `netN ip=`/`ip6=` for a container. Only
//! static addresses count: `dhcp`, `auto` and `manual` name none. Loopback is kept: the
//! config is the admin's word, and the policy decides.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::catalog::{AddressOrigin, GuestType};

/// A NIC of the config: `net0` with its MAC (upper case) and bridge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Nic {
    pub mac: Option<String>,
    pub bridge: Option<String>,
}

/// An address the config gives, on the NIC `netN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfiguredAddress {
    pub ip: IpAddr,
    pub nic: String,
    pub origin: AddressOrigin,
}

/// What a guest's config says of its network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Configured {
    /// By NIC key (`net0`...), in index order.
    pub nics: BTreeMap<u32, Nic>,
    /// In NIC order, IPv4 before IPv6 of the same NIC.
    pub addresses: Vec<ConfiguredAddress>,
    /// A container's `hostname`.
    pub hostname: Option<String>,
    /// Values that are not what Proxmox writes, skipped.
    pub notes: Vec<String>,
}

/// `key=value,key=value` as Proxmox writes property strings (a bare word is a key with an
/// empty value).
pub(crate) fn properties(text: &str) -> Vec<(&str, &str)> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// `NAME<digits>` → the digits.
fn index(key: &str, prefix: &str) -> Option<u32> {
    let digits = key.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `BC:24:11:2E:C5:4A` (any case) → upper case; none if it is not a MAC.
pub(crate) fn mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_uppercase())
}

/// Reads the network of a guest's config (`data` of the config call).
pub(crate) fn configured(guest_type: GuestType, config: &Map<String, Value>) -> Configured {
    let mut out = Configured::default();
    let origin = match guest_type {
        GuestType::Qemu => AddressOrigin::CloudInit,
        GuestType::Lxc => AddressOrigin::LxcConfig,
    };
    // ipconfigN of a VM, by N; a container's addresses are in its netN.
    let mut statics: BTreeMap<u32, (String, &str)> = BTreeMap::new();
    for (key, value) in config {
        let Value::String(text) = value else {
            continue;
        };
        if let Some(n) = index(key, "net") {
            let props = properties(text);
            let nic = match guest_type {
                // `virtio=MAC,bridge=...`: the model=MAC pair comes first (or `macaddr=`).
                GuestType::Qemu => Nic {
                    mac: props
                        .first()
                        .and_then(|(_, v)| mac(v))
                        .or_else(|| lookup(&props, "macaddr").and_then(mac)),
                    bridge: lookup(&props, "bridge").map(str::to_owned),
                },
                GuestType::Lxc => Nic {
                    mac: lookup(&props, "hwaddr").and_then(mac),
                    bridge: lookup(&props, "bridge").map(str::to_owned),
                },
            };
            out.nics.insert(n, nic);
            if guest_type == GuestType::Lxc {
                statics.insert(n, (key.clone(), text));
            }
        } else if let Some(n) = index(key, "ipconfig") {
            if guest_type == GuestType::Qemu {
                statics.insert(n, (key.clone(), text));
            }
        } else if key == "hostname" && guest_type == GuestType::Lxc {
            let name = text.trim();
            if !name.is_empty() {
                out.hostname = Some(name.to_owned());
            }
        }
    }
    for (n, (key, text)) in statics {
        let props = properties(text);
        for (prop, want_v4) in [("ip", true), ("ip6", false)] {
            let Some(value) = lookup(&props, prop) else {
                continue;
            };
            if matches!(value, "dhcp" | "auto" | "manual" | "") {
                continue;
            }
            match cidr_address(value) {
                Some(ip) if ip.is_ipv4() == want_v4 => out.addresses.push(ConfiguredAddress {
                    ip,
                    nic: format!("net{n}"),
                    origin,
                }),
                _ => out.notes.push(format!(
                    "{key} {prop}={value:?} is not an {} address in CIDR form; skipped",
                    if want_v4 { "IPv4" } else { "IPv6" }
                )),
            }
        }
    }
    out
}

fn lookup<'a>(props: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    props.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// `10.0.0.5/24` (or a bare address) → the address; none when the prefix does not fit.
pub(crate) fn cidr_address(text: &str) -> Option<IpAddr> {
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    if let Some(prefix) = prefix {
        let bits: u8 = prefix.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return None;
        }
    }
    Some(ip)
}

#[cfg(test)]
mod tests;
