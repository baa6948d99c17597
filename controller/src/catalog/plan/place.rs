//! Where a guest or node is: the first of its addresses the policy places in a zone
//! (from the address only; a disagreeing VMID, tag or pool refuses it, never remaps it),
//! and that zone. An address the guest reported itself counts only in a zone with
//! `guest_reported_addresses = true`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{zone_of_target, Policy, TargetFacts};

use super::found::guest_key;
use super::Seen;
use crate::catalog::{AddressOrigin, FoundAddress};
use crate::store::targets::TargetRecord;

/// Where a guest or node is: its address and the zone of that address.
pub(super) struct Placed {
    pub address: FoundAddress,
    pub zone: String,
}

/// The first address whose zone checks pass (and, for an address the guest reported
/// itself, whose zone accepts such addresses), or why none does.
pub(super) fn place(
    policy: &Policy,
    addresses: &[FoundAddress],
    facts: impl Fn(IpAddr) -> TargetFacts,
) -> Result<Placed, String> {
    let mut reasons = Vec::new();
    for found in addresses {
        let ip = found.ip.to_canonical();
        match zone_of_target(policy, &facts(ip)) {
            Err(err) => reasons.push(err.to_string()),
            Ok(zone)
                if found.origin.guest_reported()
                    && !policy.zone_accepts_guest_reported_addresses(&zone) =>
            {
                reasons.push(format!(
                    "the address {ip} was reported by the guest ({}), and zone {zone} does not \
                     accept guest-reported addresses (set guest_reported_addresses = true on \
                     the zone to allow them, or configure the address in Proxmox)",
                    found.origin.as_str()
                ));
            }
            Ok(zone) => {
                return Ok(Placed {
                    address: FoundAddress {
                        ip,
                        ..found.clone()
                    },
                    zone,
                })
            }
        }
    }
    Err(summarise(reasons))
}

/// One refusal sentence from the reasons each address was refused.
fn summarise(reasons: Vec<String>) -> String {
    const SHOWN: usize = 3;
    match reasons.len() {
        0 => no_guest_address(true),
        1 => reasons.into_iter().next().unwrap_or_default(),
        n => {
            let mut text = format!(
                "none of its {n} addresses is usable: {}",
                reasons[..SHOWN.min(n)].join("; ")
            );
            if n > SHOWN {
                text.push_str(&format!("; and {} more", n - SHOWN));
            }
            text
        }
    }
}

/// Why a guest without an address is refused.
pub(super) fn no_guest_address(running: bool) -> String {
    let mut text =
        "no address: give it a cloud-init ipconfig0 / lxc net0 ip=, or enable the agent".to_owned();
    if !running {
        text.push_str(" (it is not running: its agent cannot be asked)");
    }
    text
}

/// The address each stored guest last had (guest key → address), from what the last sync
/// saw of its first target.
pub(super) fn last_seen_addresses(current: &[TargetRecord]) -> BTreeMap<&str, FoundAddress> {
    let mut out = BTreeMap::new();
    for t in current {
        let Some(key) = t.source_key.as_deref() else {
            continue;
        };
        let Some(seen) = Seen::of(t) else {
            continue;
        };
        let Ok(address) = seen.address.parse::<SocketAddr>() else {
            continue;
        };
        let origin = seen.address_origin.as_deref().and_then(origin_named);
        if let Some(origin) = origin {
            out.entry(guest_key(key)).or_insert(FoundAddress {
                ip: address.ip(),
                origin,
                interface: None,
            });
        }
    }
    out
}

fn origin_named(name: &str) -> Option<AddressOrigin> {
    [
        AddressOrigin::CloudInit,
        AddressOrigin::LxcConfig,
        AddressOrigin::SdnIpam,
        AddressOrigin::GuestAgent,
        AddressOrigin::LxcInterfaces,
        AddressOrigin::ClusterStatus,
    ]
    .into_iter()
    .find(|o| o.as_str() == name)
}
