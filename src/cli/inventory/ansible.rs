//! The Ansible inventory of the hosts the caller may reach, in the two shapes Ansible reads.
//! Pure: built from the API's [`Inventory`] and the path of each host's ssh config.
//!
//! - [`yaml_plugin`]: what `portcullis inventory --ansible` prints. Ansible reads a file given
//!   with `-i`, such as `-i <(portcullis inventory --ansible)`, with its `yaml` inventory
//!   plugin (JSON is YAML), which wants `all: {hosts: {NAME: VARS}, children: {GROUP: ...}}`
//!   and refuses inventory-script JSON.
//! - [`script_list`] and [`script_host`]: the inventory-script protocol (`--list`, `--host
//!   NAME`), for `portcullis inventory --ansible` behind an executable wrapper given to `-i`.
//!
//! Only hosts Ansible can reach are listed: a target whose service is `ssh` or whose port is
//! 22 (Ansible speaks SSH). Each host's `ansible_ssh_common_args` is `-F FILE`, FILE holding
//! the blocks `portcullis ssh-config` prints for it: ssh then runs `portcullis ssh-prepare`
//! before it loads any key, and its `ProxyCommand` joins the prepared session, so the
//! connection goes through Portcullis with that session's key and certificate. The options
//! cannot be given on ssh's command line instead: `Match exec` (the step before the key is
//! loaded) is a configuration-file directive only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portcullis_proto::catalog::{Inventory, InventoryHost};
use serde_json::{json, Map, Value};

/// The inventory: each host's variables and each group's hosts, in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AnsibleInventory {
    pub hosts: BTreeMap<String, Map<String, Value>>,
    pub groups: BTreeMap<String, BTreeSet<String>>,
}

/// Whether Ansible can reach the host: its service is `ssh`, or its port is 22.
pub(crate) fn speaks_ssh(host: &InventoryHost) -> bool {
    host.service.as_deref() == Some("ssh")
        || host
            .address
            .rsplit_once(':')
            .is_some_and(|(_, port)| port == "22")
}

/// A group name as the community.proxmox inventory plugin makes one (`to_safe`): spaces
/// dropped, every other character outside `[A-Za-z0-9_]` replaced by `_`. Unlike the plugin
/// it keeps the case, so `zone_WORKLOADS` names the policy's zone `WORKLOADS`.
pub(crate) fn to_safe(word: &str) -> String {
    word.chars()
        .filter(|c| *c != ' ')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The groups a host belongs to: `zone_Z`, `tag_T` per tag, `pool_P`, `node_N`, and by
/// source `portcullis_manual` (hand-made) or `proxmox_CLUSTER` (discovered).
pub(crate) fn groups_of(host: &InventoryHost) -> Vec<String> {
    let mut groups = vec![to_safe(&format!("zone_{}", host.zone))];
    groups.extend(host.tags.iter().map(|t| to_safe(&format!("tag_{t}"))));
    if let Some(pool) = &host.pool {
        groups.push(to_safe(&format!("pool_{pool}")));
    }
    if let Some(node) = host.source.as_ref().and_then(|s| s.node.as_ref()) {
        groups.push(to_safe(&format!("node_{node}")));
    }
    groups.push(match &host.source {
        None => "portcullis_manual".to_owned(),
        Some(source) => to_safe(&format!("proxmox_{}", source.cluster)),
    });
    groups
}

/// The ssh config file of one host: `ROOT/NAME/ssh_config`, beside the files
/// `portcullis ssh-prepare` keeps for it.
pub(crate) fn ssh_config_path(root: &Path, name: &str) -> PathBuf {
    root.join(name).join("ssh_config")
}

/// The variables of one host. `ssh_config` is the file [`ssh_config_path`] names.
pub(crate) fn hostvars(
    host: &InventoryHost,
    ssh_config: &Path,
) -> anyhow::Result<Map<String, Value>> {
    let config = super::super::connect::ssh::shell_quote(&ssh_config.display().to_string())?;
    let mut vars = Map::new();
    vars.insert("ansible_host".into(), json!(host.name));
    vars.insert(
        "ansible_ssh_common_args".into(),
        json!(format!("-F {config}")),
    );
    vars.insert("portcullis_zone".into(), json!(host.zone));
    if let Some(service) = &host.service {
        vars.insert("portcullis_service".into(), json!(service));
    }
    vars.insert("portcullis_address".into(), json!(host.address));
    vars.insert(
        "portcullis_source".into(),
        json!(host
            .source
            .as_ref()
            .map_or("manual", |s| s.cluster.as_str())),
    );
    if let Some(vmid) = host.vmid {
        vars.insert("proxmox_vmid".into(), json!(vmid));
    }
    if let Some(source) = &host.source {
        if let Some(node) = &source.node {
            vars.insert("proxmox_node".into(), json!(node));
        }
        vars.insert("proxmox_type".into(), json!(source.guest_type));
    }
    if let Some(pool) = &host.pool {
        vars.insert("proxmox_pool".into(), json!(pool));
    }
    if !host.tags.is_empty() {
        vars.insert("proxmox_tags".into(), json!(host.tags));
    }
    Ok(vars)
}

/// The SSH hosts of `inventory` whose names `keep` accepts, grouped, with their variables;
/// each host's ssh config lives under `root` ([`ssh_config_path`]).
pub(crate) fn build(
    inventory: &Inventory,
    root: &Path,
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<AnsibleInventory> {
    let mut out = AnsibleInventory::default();
    for host in inventory
        .hosts
        .iter()
        .filter(|h| speaks_ssh(h) && keep(&h.name))
    {
        let vars = hostvars(host, &ssh_config_path(root, &host.name))?;
        out.hosts.insert(host.name.clone(), vars);
        for group in groups_of(host) {
            out.groups
                .entry(group)
                .or_default()
                .insert(host.name.clone());
        }
    }
    Ok(out)
}

/// The shape Ansible's `yaml` inventory plugin reads: every host with its variables under
/// `all.hosts`, every group under `all.children` naming its hosts.
pub(crate) fn yaml_plugin(inventory: &AnsibleInventory) -> Value {
    let hosts: Map<String, Value> = inventory
        .hosts
        .iter()
        .map(|(name, vars)| (name.clone(), Value::Object(vars.clone())))
        .collect();
    let children: Map<String, Value> = inventory
        .groups
        .iter()
        .map(|(group, members)| {
            let members: Map<String, Value> =
                members.iter().map(|h| (h.clone(), json!({}))).collect();
            (group.clone(), json!({ "hosts": members }))
        })
        .collect();
    json!({ "all": { "hosts": hosts, "children": children } })
}

/// The inventory-script answer to `--list`: each group with its hosts, and every host's
/// variables under `_meta.hostvars` (so Ansible never asks `--host`).
pub(crate) fn script_list(inventory: &AnsibleInventory) -> Value {
    let mut out = Map::new();
    let hostvars: Map<String, Value> = inventory
        .hosts
        .iter()
        .map(|(name, vars)| (name.clone(), Value::Object(vars.clone())))
        .collect();
    out.insert("_meta".into(), json!({ "hostvars": hostvars }));
    for (group, members) in &inventory.groups {
        out.insert(group.clone(), json!({ "hosts": members }));
    }
    out.insert(
        "all".into(),
        json!({ "children": inventory.groups.keys().collect::<Vec<_>>() }),
    );
    Value::Object(out)
}

/// The inventory-script answer to `--host NAME`: its variables, `{}` for a host not listed.
pub(crate) fn script_host(inventory: &AnsibleInventory, name: &str) -> Value {
    inventory
        .hosts
        .get(name)
        .map_or_else(|| json!({}), |vars| Value::Object(vars.clone()))
}
