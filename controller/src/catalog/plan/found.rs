//! From what a sync found to the targets it asks for: each guest's services, its address
//! and zone (from the address only), its availability; each node as a `proxmox-api`
//! target. What cannot become a target becomes a [`Refusal`] with a sentence saying why
//! and what to do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{Policy, TargetFacts};

use super::names::sanitise;
use super::place::{last_seen_addresses, no_guest_address, place};
use super::{PlanInput, Seen};
use crate::catalog::{AddressOrigin, FoundAddress, Guest, Node};

/// The service a node becomes and its port (pveproxy's, whatever else the policy lists).
const NODE_SERVICE: &str = "proxmox-api";
const NODE_PORT: u16 = 8006;

const NO_NODE_ADDRESS: &str = "no address: give the discovery token Sys.Audit for /cluster/status";

/// One target the discovery asks for, before it is named and merged with what is stored.
#[derive(Debug, Clone)]
pub(super) struct Wanted {
    pub key: String,
    /// The sanitised Proxmox name: the start of the target's name.
    pub stem: String,
    /// What sets the name apart from a namesake: the VMID, or `node`.
    pub discriminator: String,
    /// The service, for a guest's further services (`web-rdp`).
    pub further_service: Option<String>,
    /// What the sync sees (its `name` is filled in by the naming).
    pub seen: Seen,
    /// The name as Proxmox has it, for a refusal's event.
    pub proxmox_name: String,
}

/// A guest, a service of one, or a node that cannot become a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub key: String,
    pub name: String,
    pub reason: String,
    pub vmid: Option<u32>,
    pub node: Option<String>,
    pub address: Option<String>,
    pub address_origin: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Found {
    /// By key, each key once.
    pub wanted: Vec<Wanted>,
    pub refusals: Vec<Refusal>,
    /// Keys of guests and nodes refused as a whole: their stored targets, every service
    /// of them, go as `refused`, not `gone`.
    pub refused_guests: BTreeSet<String>,
}

/// The key of the guest or node a target key belongs to (`qemu/100#rdp` → `qemu/100`).
pub(super) fn guest_key(key: &str) -> &str {
    key.split_once('#').map_or(key, |(guest, _)| guest)
}

pub(super) fn collect(input: &PlanInput<'_>) -> Found {
    let mut found = Found::default();
    let mut seen_keys = BTreeSet::new();
    let last_seen = last_seen_addresses(input.current);
    for guest in &input.found.guests {
        let key = format!("{}/{}", guest.guest_type.as_str(), guest.vmid);
        // Proxmox keeps VMIDs unique in a cluster; a repeat is ignored, not trusted.
        if seen_keys.insert(key.clone()) {
            collect_guest(input, guest, key, &last_seen, &mut found);
        }
    }
    if input.cluster.node_targets {
        for node in &input.found.nodes {
            let key = format!("node/{}", node.name);
            if seen_keys.insert(key.clone()) {
                collect_node(input, node, key, &mut found);
            }
        }
    }
    found.wanted.sort_by(|a, b| a.key.cmp(&b.key));
    found.wanted.dedup_by(|a, b| a.key == b.key);
    found.refusals.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

fn collect_guest(
    input: &PlanInput<'_>,
    guest: &Guest,
    key: String,
    last_seen: &BTreeMap<&str, FoundAddress>,
    found: &mut Found,
) {
    let policy = input.policy;
    let refusal = |key: &str, reason: String, address: Option<&FoundAddress>| Refusal {
        key: key.to_owned(),
        name: guest.name.clone(),
        reason,
        vmid: Some(guest.vmid),
        node: Some(guest.node.clone()),
        address: address.map(|a| a.ip.to_canonical().to_string()),
        address_origin: address.map(|a| a.origin.as_str().to_owned()),
    };
    let running = guest.status == "running" && !guest.template;
    // A guest that is not running has no agent to ask: without a configured address it
    // keeps the one it last had. If that no longer places it, it is refused for want of an
    // address, as it will be at the next sync (which no longer remembers one).
    let remembered = last_seen
        .get(key.as_str())
        .filter(|_| guest.addresses.is_empty() && !running);
    let addresses = match remembered {
        Some(last) => std::slice::from_ref(last),
        None => &guest.addresses[..],
    };
    let tagged = tagged_services(policy, &input.cluster.service_tag_prefix, &guest.tags);
    let first = tagged.first().map(String::as_str);
    let facts = |ip: IpAddr| TargetFacts {
        ip,
        port: first.and_then(|s| policy.service_port(s)).unwrap_or(0),
        vmid: Some(guest.vmid),
        tags: guest.tags.clone(),
        pool: guest.pool.clone(),
        declared_zone: None,
        service: first.map(str::to_owned),
    };
    // The zone depends on the address, VMID, tags and pool, not on the service: a guest is
    // placed once, for all its services (the default ones depend on the zone).
    let placed = match place(policy, addresses, facts) {
        Ok(placed) => placed,
        Err(reason) => {
            let reason = if guest.addresses.is_empty() {
                no_guest_address(running)
            } else {
                reason
            };
            found
                .refusals
                .push(refusal(&key, reason, guest.addresses.first()));
            found.refused_guests.insert(key);
            return;
        }
    };
    let services = if tagged.is_empty() {
        default_services(input, &placed.zone)
    } else {
        Ok(tagged)
    };
    let services = match services {
        Ok(services) => services,
        Err(reason) => {
            found
                .refusals
                .push(refusal(&key, reason, Some(&placed.address)));
            found.refused_guests.insert(key);
            return;
        }
    };
    let stem = match sanitise(&guest.name) {
        stem if stem.is_empty() => match guest.guest_type {
            crate::catalog::GuestType::Qemu => format!("vm-{}", guest.vmid),
            crate::catalog::GuestType::Lxc => format!("ct-{}", guest.vmid),
        },
        stem => stem,
    };
    for (i, service) in services.iter().enumerate() {
        let target_key = if i == 0 {
            key.clone()
        } else {
            format!("{key}#{service}")
        };
        let Some(port) = policy.service_port(service) else {
            let reason = no_single_port(service);
            found
                .refusals
                .push(refusal(&target_key, reason, Some(&placed.address)));
            continue;
        };
        let seen = Seen {
            name: String::new(),
            address: SocketAddr::new(placed.address.ip, port).to_string(),
            zone: placed.zone.clone(),
            service: Some(service.clone()),
            vmid: Some(guest.vmid),
            tags: guest.tags.clone(),
            pool: guest.pool.clone(),
            node: Some(guest.node.clone()),
            guest_type: guest.guest_type.as_str().to_owned(),
            status: if guest.template {
                "template".to_owned()
            } else {
                guest.status.clone()
            },
            address_origin: Some(placed.address.origin.as_str().to_owned()),
            available: running,
            seen_at: input.now,
        };
        found.wanted.push(Wanted {
            key: target_key,
            stem: stem.clone(),
            discriminator: guest.vmid.to_string(),
            further_service: (i > 0).then(|| service.clone()),
            seen,
            proxmox_name: guest.name.clone(),
        });
    }
}

fn collect_node(input: &PlanInput<'_>, node: &Node, key: String, found: &mut Found) {
    let policy = input.policy;
    let address = node.address.map(|ip| FoundAddress {
        ip,
        origin: AddressOrigin::ClusterStatus,
        interface: None,
    });
    let placed = if !knows_service(policy, NODE_SERVICE) {
        Err(format!(
            "the policy has no service `{NODE_SERVICE}`: add one (ports = [{NODE_PORT}]) to \
             list the nodes, or set node_targets = false on the cluster"
        ))
    } else {
        let addresses: Vec<FoundAddress> = address.iter().cloned().collect();
        place(policy, &addresses, |ip| TargetFacts {
            ip,
            port: NODE_PORT,
            vmid: None,
            tags: Vec::new(),
            pool: None,
            declared_zone: None,
            service: Some(NODE_SERVICE.to_owned()),
        })
        .map_err(|reason| {
            if node.address.is_none() {
                NO_NODE_ADDRESS.to_owned()
            } else {
                reason
            }
        })
    };
    let placed = match placed {
        Ok(placed) => placed,
        Err(reason) => {
            found.refusals.push(Refusal {
                key: key.clone(),
                name: node.name.clone(),
                reason,
                vmid: None,
                node: Some(node.name.clone()),
                address: node.address.map(|ip| ip.to_canonical().to_string()),
                address_origin: address.map(|a| a.origin.as_str().to_owned()),
            });
            found.refused_guests.insert(key);
            return;
        }
    };
    let stem = match sanitise(&node.name) {
        stem if stem.is_empty() => "node".to_owned(),
        stem => stem,
    };
    let seen = Seen {
        name: String::new(),
        address: SocketAddr::new(placed.address.ip, NODE_PORT).to_string(),
        zone: placed.zone,
        service: Some(NODE_SERVICE.to_owned()),
        vmid: None,
        tags: Vec::new(),
        pool: None,
        node: Some(node.name.clone()),
        guest_type: "node".to_owned(),
        status: if node.online { "online" } else { "offline" }.to_owned(),
        address_origin: Some(placed.address.origin.as_str().to_owned()),
        available: node.online,
        seen_at: input.now,
    };
    found.wanted.push(Wanted {
        key,
        stem,
        discriminator: "node".to_owned(),
        further_service: None,
        seen,
        proxmox_name: node.name.clone(),
    });
}

/// The services a guest's tags name (`PREFIX<service>`, a service the policy knows), in
/// tag order, each once.
fn tagged_services(policy: &Policy, prefix: &str, tags: &[String]) -> Vec<String> {
    let mut services: Vec<String> = Vec::new();
    for tag in tags {
        let Some(name) = tag.strip_prefix(prefix) else {
            continue;
        };
        if knows_service(policy, name) && !services.iter().any(|s| s == name) {
            services.push(name.to_owned());
        }
    }
    services
}

/// The cluster's `default_services` for `zone` (else `"*"`) that the policy knows.
fn default_services(input: &PlanInput<'_>, zone: &str) -> Result<Vec<String>, String> {
    let defaults = &input.cluster.default_services;
    let listed = defaults.get(zone).or_else(|| defaults.get("*"));
    let mut services: Vec<String> = Vec::new();
    for name in listed.into_iter().flatten() {
        if knows_service(input.policy, name) && !services.contains(name) {
            services.push(name.clone());
        }
    }
    if !services.is_empty() {
        return Ok(services);
    }
    let prefix = &input.cluster.service_tag_prefix;
    Err(match listed {
        Some(names) if !names.is_empty() => format!(
            "no service: the default services for zone {zone} ({}) are not in the policy; \
             tag the guest with a service the policy knows (e.g. `{prefix}ssh`)",
            names.join(", ")
        ),
        _ => format!(
            "no service: tag the guest with a service the policy knows (e.g. `{prefix}ssh`), \
             or list services for zone {zone} in the cluster's default_services"
        ),
    })
}

fn no_single_port(service: &str) -> String {
    format!(
        "the service `{service}` has no single port (its ports are `any`): give it a port in \
         the policy, or do not tag the guest with it"
    )
}

fn knows_service(policy: &Policy, name: &str) -> bool {
    policy.service_names().any(|s| s == name)
}
