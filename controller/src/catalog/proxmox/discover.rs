//! One sync's reads, in order: `/nodes` (already read by the caller, through the URL that
//! answered), `/cluster/status` (node addresses), `/cluster/resources?type=vm` (the guests),
//! SDN (VNets, subnets, IPAM), then each guest's config and, only for a running guest
//! without a configured address, its agent or container interfaces. The reads go through
//! [`Api`], so that the whole walk is tested against recorded answers without a network.
//!
//! Only `/nodes` and `/cluster/resources` can fail a sync; any other failure is a note
//! (one sentence naming the guest) and the guest is listed with what is known of it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;

use futures_util::StreamExt as _;
use serde_json::Value;

use super::interfaces;
use super::netconf::{self, Configured};
use super::sdn::{self, Fit, Sdn};
use super::wire::{self, Resource};
use super::ProxmoxError;
use crate::catalog::{AddressOrigin, Discovery, FoundAddress, Guest, GuestType, Node};

/// Guests read at the same time (a config call each, and maybe an agent call).
const GUESTS_AT_ONCE: usize = 4;

/// A GET of the API at one URL: `data` of a success answer.
pub(crate) trait Api: Sync {
    fn get(&self, path: &str) -> impl Future<Output = Result<Value, ProxmoxError>> + Send;
}

/// What of the cluster's settings the walk needs.
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    pub cluster: String,
    pub url: String,
    pub guest_agent: bool,
    pub sdn: bool,
}

/// An error as a note says it: the status and Proxmox's words, without the URL.
fn short(e: &ProxmoxError) -> String {
    match e {
        ProxmoxError::Api {
            status, message, ..
        } => format!("HTTP {status}: {message}"),
        ProxmoxError::BadAnswer { message, .. } => format!("unexpected answer: {message}"),
        other => other.to_string(),
    }
}

fn bad_answer(walk: &Walk, path: &str, message: String) -> ProxmoxError {
    ProxmoxError::BadAnswer {
        url: walk.url.clone(),
        method: "GET",
        path: path.to_owned(),
        message,
    }
}

/// The walk, from `/nodes`'s `data` on.
pub(crate) async fn run<A: Api>(
    walk: &Walk,
    api: &A,
    nodes_data: Value,
) -> Result<Discovery, ProxmoxError> {
    let mut notes = Vec::new();
    let (node_entries, node_notes) =
        wire::nodes(nodes_data).map_err(|m| bad_answer(walk, "nodes", m))?;
    notes.extend(node_notes);

    let addresses = match api.get("cluster/status").await {
        Ok(data) => {
            match wire::node_addresses(data) {
                Ok((addresses, more)) => {
                    notes.extend(more);
                    addresses
                }
                Err(m) => {
                    notes.push(format!("/cluster/status was not understood ({m}): nodes are listed without addresses"));
                    BTreeMap::new()
                }
            }
        }
        Err(ProxmoxError::Api {
            status: 403,
            message,
            ..
        }) => {
            notes.push(format!(
                "the token may not read /cluster/status (it needs Sys.Audit on /): nodes are listed without addresses ({message})"
            ));
            BTreeMap::new()
        }
        Err(e) => {
            notes.push(format!(
                "/cluster/status could not be read ({}): nodes are listed without addresses",
                short(&e)
            ));
            BTreeMap::new()
        }
    };
    let nodes: Vec<Node> = node_entries
        .iter()
        .map(|n| Node {
            name: n.name.clone(),
            address: addresses.get(&n.name).copied(),
            online: n.online,
        })
        .collect();

    let path = "cluster/resources?type=vm";
    let (resources, resource_notes) =
        wire::resources(api.get(path).await?).map_err(|m| bad_answer(walk, path, m))?;
    notes.extend(resource_notes);
    let offline: BTreeSet<&str> = node_entries
        .iter()
        .filter(|n| !n.online)
        .map(|n| n.name.as_str())
        .collect();
    let mut listed = Vec::new();
    for r in resources {
        if offline.contains(r.node.as_str()) {
            notes.push(format!(
                "{} {} ({}) was skipped: its node {} is not online",
                r.guest_type.as_str(),
                r.vmid,
                r.name,
                r.node
            ));
        } else {
            listed.push(r);
        }
    }

    let sdn = if walk.sdn {
        read_sdn(api, &mut notes).await
    } else {
        Sdn::default()
    };

    let mut read: Vec<(Guest, Vec<String>)> = futures_util::stream::iter(listed)
        .map(|r| guest(walk, api, &sdn, r))
        .buffer_unordered(GUESTS_AT_ONCE)
        .collect()
        .await;
    read.sort_by_key(|(g, _)| g.vmid);
    let mut guests = Vec::with_capacity(read.len());
    for (g, guest_notes) in read {
        guests.push(g);
        notes.extend(guest_notes);
    }
    Ok(Discovery {
        cluster: walk.cluster.clone(),
        url: walk.url.clone(),
        nodes,
        guests,
        notes,
    })
}

/// The cluster's SDN; none (with a note) when the server has no SDN, the token may not
/// read it, or it is empty.
async fn read_sdn<A: Api>(api: &A, notes: &mut Vec<String>) -> Sdn {
    let mut out = Sdn::default();
    let vnets = match api.get("cluster/sdn/vnets").await {
        Ok(data) => match sdn::vnets(data) {
            Ok((vnets, more)) => {
                notes.extend(more);
                vnets
            }
            Err(m) => {
                notes.push(format!(
                    "SDN VNets were not understood ({m}): SDN is not used"
                ));
                return out;
            }
        },
        Err(
            e @ ProxmoxError::Api {
                status: 403 | 404 | 501,
                ..
            },
        ) => {
            notes.push(format!(
                "no SDN read ({}): guests are placed by their addresses only",
                short(&e)
            ));
            return out;
        }
        Err(e) => {
            notes.push(format!(
                "SDN VNets could not be read ({}): SDN is not used",
                short(&e)
            ));
            return out;
        }
    };
    if vnets.is_empty() {
        notes.push("the cluster has no SDN VNets".into());
        return out;
    }
    out.vnets = vnets;
    for (name, vnet) in out.vnets.iter_mut() {
        match api.get(&format!("cluster/sdn/vnets/{name}/subnets")).await {
            Ok(data) => match sdn::subnets(data) {
                Ok((subnets, more)) => {
                    notes.extend(more);
                    vnet.subnets = subnets;
                }
                Err(m) => notes.push(format!("the subnets of SDN VNet {name} were not understood ({m})")),
            },
            Err(e) => notes.push(format!(
                "the subnets of SDN VNet {name} could not be read ({}): its guests' addresses are not checked against them",
                short(&e)
            )),
        }
    }
    let zone_ipams = match api.get("cluster/sdn/zones").await {
        Ok(data) => sdn::zone_ipams(data).unwrap_or_else(|m| {
            notes.push(format!(
                "SDN zones were not understood ({m}): no IPAM is read"
            ));
            BTreeMap::new()
        }),
        Err(e) => {
            notes.push(format!(
                "SDN zones could not be read ({}): no IPAM is read",
                short(&e)
            ));
            BTreeMap::new()
        }
    };
    let ipams: BTreeSet<&String> = out
        .vnets
        .values()
        .filter_map(|v| zone_ipams.get(&v.zone))
        .collect();
    for ipam in ipams {
        match api.get(&format!("cluster/sdn/ipams/{ipam}/status")).await {
            Ok(data) => match sdn::ipam_status(data) {
                Ok((entries, more)) => {
                    notes.extend(more);
                    out.ipam.extend(entries);
                }
                Err(m) => notes.push(format!("SDN IPAM {ipam} was not understood ({m})")),
            },
            Err(e) => notes.push(format!("SDN IPAM {ipam} could not be read ({})", short(&e))),
        }
    }
    out
}

/// One guest: its config's addresses, else its IPAM entries, else (running, not a
/// template, the agent allowed) what it reports itself.
async fn guest<A: Api>(walk: &Walk, api: &A, sdn: &Sdn, r: Resource) -> (Guest, Vec<String>) {
    let kind = r.guest_type.as_str();
    let label = format!("{kind} {}", r.vmid);
    let mut notes = Vec::new();
    let base = format!("nodes/{}/{kind}/{}", r.node, r.vmid);

    let config = match api.get(&format!("{base}/config")).await {
        Ok(Value::Object(map)) => netconf::configured(r.guest_type, &map),
        Ok(_) => {
            notes.push(format!(
                "{label}: its config is not an object; no configured address"
            ));
            Configured::default()
        }
        Err(e) => {
            notes.push(format!(
                "{label}: its config could not be read ({}); no configured address",
                short(&e)
            ));
            Configured::default()
        }
    };
    notes.extend(config.notes.iter().map(|n| format!("{label}: {n}")));

    // (origin, address, interface, whether a NIC of the config carries it)
    let mut found: Vec<(AddressOrigin, IpAddr, Option<String>, bool)> = Vec::new();
    for a in &config.addresses {
        let bridge = a
            .nic
            .strip_prefix("net")
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(|n| config.nics.get(&n))
            .and_then(|nic| nic.bridge.as_deref());
        match sdn.fit(bridge, a.ip) {
            Fit::Outside { vnet, subnets } => notes.push(format!(
                "{label}: {} address {} lies outside the subnets of its SDN VNet {vnet} ({}): the guest's config disagrees with its network, so the address is dropped",
                a.nic,
                a.ip,
                subnets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )),
            Fit::Inside | Fit::Unchecked => found.push((a.origin, a.ip, Some(a.nic.clone()), true)),
        }
    }
    let macs: Vec<String> = config.nics.values().filter_map(|n| n.mac.clone()).collect();
    if found.is_empty() {
        for entry in sdn.ipam_of(r.vmid) {
            let nic = entry.mac.as_ref().and_then(|m| {
                config
                    .nics
                    .iter()
                    .find(|(_, n)| n.mac.as_ref() == Some(m))
                    .map(|(i, _)| format!("net{i}"))
            });
            found.push((AddressOrigin::SdnIpam, entry.ip, nic, true));
        }
    }
    if found.is_empty() {
        let running = r.status == "running";
        if !walk.guest_agent {
            notes.push(format!("{label}: no configured address (and asking the guest is turned off: guest_agent = false)"));
        } else if r.template {
            notes.push(format!("{label}: a template without a configured address"));
        } else if !running {
            notes.push(format!(
                "{label}: no configured address, and the guest is {}: it was not asked",
                r.status
            ));
        } else {
            let (origin, reported) = match r.guest_type {
                GuestType::Qemu => (
                    AddressOrigin::GuestAgent,
                    reported::agent(api, &base, &label, &mut notes).await,
                ),
                GuestType::Lxc => (
                    AddressOrigin::LxcInterfaces,
                    reported::container(api, &base, &label, &mut notes).await,
                ),
            };
            if let Some(nics) = reported {
                let (usable, skipped) = interfaces::usable(&nics, &macs);
                if usable.is_empty() {
                    let skipped = if skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" (skipped: {})", skipped.join(", "))
                    };
                    notes.push(format!(
                        "{label}: the guest reported no usable address{skipped}"
                    ));
                }
                for u in usable {
                    found.push((origin, u.ip, u.interface, u.matched));
                }
            }
        }
    }
    // Configured, then IPAM, then guest-reported; IPv4 first within each; a NIC of the
    // config before others; the first of each address only.
    found.sort_by_key(|(origin, ip, _, matched)| (rank(*origin), ip.is_ipv6(), !matched));
    let mut addresses: Vec<FoundAddress> = Vec::new();
    for (origin, ip, interface, _) in found {
        if !addresses.iter().any(|a| a.ip == ip) {
            addresses.push(FoundAddress {
                ip,
                origin,
                interface,
            });
        }
    }

    let name = if !r.name.is_empty() {
        r.name.clone()
    } else if let Some(hostname) = config.hostname.clone() {
        hostname
    } else {
        format!("{kind}-{}", r.vmid)
    };
    let guest = Guest {
        guest_type: r.guest_type,
        vmid: r.vmid,
        name,
        node: r.node,
        status: r.status,
        template: r.template,
        tags: r.tags,
        pool: r.pool,
        addresses,
    };
    (guest, notes)
}

fn rank(origin: AddressOrigin) -> u8 {
    match origin {
        AddressOrigin::CloudInit | AddressOrigin::LxcConfig | AddressOrigin::ClusterStatus => 0,
        AddressOrigin::SdnIpam => 1,
        AddressOrigin::GuestAgent | AddressOrigin::LxcInterfaces => 2,
    }
}

mod reported;
#[cfg(test)]
mod tests;
