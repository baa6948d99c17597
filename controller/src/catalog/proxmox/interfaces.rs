//! Addresses a guest reports itself: the QEMU guest agent's `network-get-interfaces` and a
//! running container's `/interfaces`. Such addresses are chosen by the guest, so they are
//! filtered hard: loopback, link-local (Windows appends `%N`), unspecified and multicast
//! addresses, and the interfaces of containers and bridges inside the guest (docker, veth,
//! CNI...) are dropped. NICs whose MAC matches one of the config's `netN` come first.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::netconf;

/// One interface as the guest reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReportedNic {
    pub name: Option<String>,
    /// Upper case.
    pub mac: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// What the agent call answered with HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentReply {
    Interfaces(Vec<ReportedNic>),
    /// `{"result":{"error":{"class":"Unsupported"|"CommandDisabled",...}}}`: the agent
    /// cannot answer this command (old Windows agents, a disabled command).
    Refused {
        class: String,
        desc: Option<String>,
    },
}

#[derive(Deserialize)]
struct RawAgentNic {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "hardware-address")]
    hardware_address: Option<String>,
    #[serde(default, rename = "ip-addresses")]
    ip_addresses: Option<Vec<RawAddress>>,
}

#[derive(Deserialize)]
struct RawAddress {
    #[serde(rename = "ip-address")]
    ip_address: String,
    #[serde(default, rename = "ip-address-type")]
    ip_address_type: Option<String>,
}

/// The `data` of `GET .../agent/network-get-interfaces`: `{"result": [...]}` or
/// `{"result": {"error": {...}}}`.
pub(crate) fn agent(data: &Value) -> Result<AgentReply, String> {
    let result = data.get("result").ok_or("the answer has no `result`")?;
    if let Some(error) = result.get("error") {
        let class = error
            .get("class")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let desc = error.get("desc").and_then(Value::as_str).map(str::to_owned);
        return Ok(AgentReply::Refused { class, desc });
    }
    let Value::Array(items) = result else {
        return Err("`result` is neither a list of interfaces nor an error".into());
    };
    let mut nics = Vec::new();
    for item in items {
        let raw: RawAgentNic = serde_json::from_value(item.clone())
            .map_err(|e| format!("an interface is not what the agent documents: {e}"))?;
        nics.push(ReportedNic {
            name: raw.name,
            mac: raw.hardware_address.as_deref().and_then(netconf::mac),
            addresses: addresses(raw.ip_addresses.unwrap_or_default()),
        });
    }
    Ok(AgentReply::Interfaces(nics))
}

#[derive(Deserialize)]
struct RawLxcNic {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    hwaddr: Option<String>,
    #[serde(default, rename = "hardware-address")]
    hardware_address: Option<String>,
    #[serde(default)]
    inet: Option<Value>,
    #[serde(default)]
    inet6: Option<Value>,
    #[serde(default, rename = "ip-addresses")]
    ip_addresses: Option<Vec<RawAddress>>,
}

/// The `data` of `GET .../lxc/{vmid}/interfaces`: null or empty when the container is
/// stopped; entries with legacy `inet`/`inet6` (CIDR strings) and, from pve-container
/// 5.2.6, `ip-addresses[]` (whose type is `inet`/`inet6`, not `ipv4`/`ipv6`).
pub(crate) fn lxc(data: &Value) -> Result<Vec<ReportedNic>, String> {
    let items = match data {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err("the answer is not a list of interfaces".into()),
    };
    let mut nics = Vec::new();
    for item in items {
        let raw: RawLxcNic = serde_json::from_value(item.clone())
            .map_err(|e| format!("an interface is not what pve-container documents: {e}"))?;
        let mut found = match raw.ip_addresses {
            Some(list) if !list.is_empty() => addresses(list),
            _ => Vec::new(),
        };
        for legacy in [raw.inet, raw.inet6].into_iter().flatten() {
            for ip in legacy_addresses(&legacy) {
                if !found.contains(&ip) {
                    found.push(ip);
                }
            }
        }
        nics.push(ReportedNic {
            name: raw.name,
            mac: raw
                .hardware_address
                .or(raw.hwaddr)
                .as_deref()
                .and_then(netconf::mac),
            addresses: found,
        });
    }
    Ok(nics)
}

/// `inet`/`inet6`: a CIDR string (some versions: several, separated by spaces or commas).
fn legacy_addresses(value: &Value) -> Vec<IpAddr> {
    let texts: Vec<&str> = match value {
        Value::String(s) => s.split([' ', ',']).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    texts.into_iter().filter_map(parse_reported).collect()
}

fn addresses(list: Vec<RawAddress>) -> Vec<IpAddr> {
    list.into_iter()
        .filter(|a| {
            matches!(
                a.ip_address_type.as_deref(),
                None | Some("ipv4" | "ipv6" | "inet" | "inet6")
            )
        })
        .filter_map(|a| parse_reported(&a.ip_address))
        .collect()
}

/// An address as a guest writes it: maybe with a prefix, maybe with a `%zone`.
fn parse_reported(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text.split_once('/').map_or(text, |(a, _)| a);
    let text = text.split_once('%').map_or(text, |(a, _)| a);
    text.parse().ok()
}

/// A usable address the guest reported, with its interface and whether that interface's
/// MAC is one of the config's NICs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Usable {
    pub ip: IpAddr,
    pub interface: Option<String>,
    pub matched: bool,
}

/// The usable addresses of `nics`, NICs with one of `config_macs` first (then in the
/// guest's order), and what was skipped and why (one phrase each).
pub(crate) fn usable(nics: &[ReportedNic], config_macs: &[String]) -> (Vec<Usable>, Vec<String>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for nic in nics {
        let name = nic.name.as_deref().unwrap_or("?");
        if let Some(why) = skipped_interface(name) {
            if !nic.addresses.is_empty() {
                let addresses: Vec<String> =
                    nic.addresses.iter().map(ToString::to_string).collect();
                skipped.push(format!("{} on {name} ({why})", addresses.join(", ")));
            }
            continue;
        }
        let matched = nic
            .mac
            .as_ref()
            .is_some_and(|m| config_macs.iter().any(|c| c.eq_ignore_ascii_case(m)));
        for ip in &nic.addresses {
            match skipped_address(*ip) {
                Some(why) => skipped.push(format!("{ip} on {name} ({why})")),
                None => kept.push(Usable {
                    ip: *ip,
                    interface: nic.name.clone(),
                    matched,
                }),
            }
        }
    }
    kept.sort_by_key(|u| !u.matched);
    (kept, skipped)
}

/// Why an interface's addresses are not the guest's own, if they are not.
fn skipped_interface(name: &str) -> Option<&'static str> {
    if name == "lo" || name.starts_with("Loopback Pseudo-Interface") {
        return Some("loopback");
    }
    const VIRTUAL: [&str; 7] = [
        "docker",
        "veth",
        "br-",
        "vEthernet",
        "cni",
        "flannel",
        "cali",
    ];
    VIRTUAL
        .iter()
        .any(|p| name.starts_with(p))
        .then_some("a container or bridge interface inside the guest")
}

/// Why an address cannot reach the guest from outside, if it cannot.
pub(crate) fn skipped_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || v4.is_broadcast() {
                Some("unspecified")
            } else if v4.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return skipped_address(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
