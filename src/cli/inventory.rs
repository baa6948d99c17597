//! `portcullis inventory`: the targets the caller may reach now (`GET /v1/inventory`), as a
//! table, as JSON, or as an Ansible inventory ([`ansible`]; docs/proxmox.md).
//!
//! `--ansible` also writes, for each host it lists, the ssh config that host's
//! `ansible_ssh_common_args` names (`-F FILE`): the blocks `portcullis ssh-config` prints,
//! in the private directory where `portcullis ssh-prepare` keeps that host's session.

mod ansible;
#[cfg(test)]
mod tests;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use portcullis_files::write_private_atomic;
use portcullis_proto::catalog::Inventory;

use super::http::{ApiClient, ClientArgs};
use super::output::{self, Table};
use super::ssh_config::{host_blocks, safe_name, state_root};

const EXAMPLES: &str = "\
Examples:
  portcullis inventory                                  # the targets you may reach now
  portcullis inventory --json | jq -r '.hosts[].name'
  portcullis inventory --ansible                        # only SSH targets: none on `portcullis dev`

  # As an executable inventory script (the inventory-script protocol: --list, --host):
  printf '#!/bin/sh\\nexec portcullis inventory --ansible \"$@\"\\n' > portcullis-inventory
  chmod +x portcullis-inventory
  ./portcullis-inventory --list

In a deployment (with SSH targets):
  ansible-inventory -i <(portcullis inventory --ansible) --graph
  ansible-playbook -i <(portcullis inventory --ansible) site.yml --limit zone_WORKLOADS
  ansible all -i ./portcullis-inventory -m ping

The Ansible inventory lists the hosts Ansible can reach through Portcullis: those whose
service is ssh or whose port is 22. Groups, named as the community.proxmox inventory plugin
names them (characters outside [A-Za-z0-9_] become _): zone_ZONE, tag_TAG, pool_POOL,
node_NODE, and proxmox_CLUSTER or portcullis_manual by where the target came from.
Each host's ansible_ssh_common_args is `-F FILE`, FILE holding the blocks `portcullis
ssh-config` prints for it (written now, next to the host's ssh-prepare session), so each
connection is brokered with a short-lived key and certificate. The controller's address and
your token come from the environment as for every command (PORTCULLIS_ADDR, PORTCULLIS_TOKEN
or `portcullis login`): run Ansible where they are set.";

/// Print the targets you may reach now: a table, JSON, or an Ansible inventory.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub(crate) struct InventoryArgs {
    /// Print an Ansible inventory (JSON in the shape of Ansible's yaml inventory plugin,
    /// for `-i <(portcullis inventory --ansible)`).
    #[arg(long)]
    pub ansible: bool,
    /// With --ansible: answer as an inventory script to `--list` (all groups and hosts).
    #[arg(long, requires = "ansible", conflicts_with = "host")]
    pub list: bool,
    /// With --ansible: answer as an inventory script to `--host NAME` (its variables).
    #[arg(long, requires = "ansible", value_name = "NAME")]
    pub host: Option<String>,
    /// Print the API's Inventory as JSON (every reachable target, not only SSH ones).
    #[arg(long, conflicts_with = "ansible")]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(crate) async fn run(args: InventoryArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let inventory: Inventory = api
        .get("/v1/inventory")
        .await
        .context("cannot read your inventory")?;
    if args.json {
        output::print_json(&inventory)?;
    } else if args.ansible {
        print_ansible(&inventory, args.list, args.host.as_deref())?;
    } else {
        print_table(&inventory)?;
    }
    Ok(0)
}

fn print_ansible(inventory: &Inventory, list: bool, host: Option<&str>) -> anyhow::Result<()> {
    let root = state_root()?;
    let exe = std::env::current_exe().context("cannot find the portcullis executable")?;
    let exe = exe.display().to_string();
    for h in &inventory.hosts {
        if ansible::speaks_ssh(h) && !safe_name(&h.name) {
            eprintln!(
                "warning: {}: not a name ssh can be configured for; left out",
                portcullis_proto::text::escaped(&h.name)
            );
        }
    }
    let wanted = |name: &str| safe_name(name) && host.is_none_or(|h| h == name);
    let built = ansible::build(inventory, &root, wanted)?;
    for name in built.hosts.keys() {
        write_ssh_config(&root, name, &exe)?;
    }
    let value = match host {
        Some(name) => ansible::script_host(&built, name),
        None if list => ansible::script_list(&built),
        None => ansible::yaml_plugin(&built),
    };
    output::print_json(&value)
}

/// Writes the ssh config of `name` (0600, atomically) in its private directory (0700).
fn write_ssh_config(root: &Path, name: &str, exe: &str) -> anyhow::Result<()> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let text = format!(
        "# Written by `portcullis inventory --ansible`: {name} through Portcullis.\n{}",
        host_blocks(name, exe, root)?
    );
    let path = ansible::ssh_config_path(root, name);
    write_private_atomic(&path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_table(inventory: &Inventory) -> anyhow::Result<()> {
    Table::of(
        &inventory.hosts,
        &[
            ("NAME", |h| h.name.clone()),
            ("ZONE", |h| h.zone.clone()),
            ("SERVICE", |h| output::or_dash(h.service.as_deref())),
            ("ADDRESS", |h| h.address.clone()),
            ("SOURCE", |h| {
                h.source.as_ref().map_or_else(
                    || "manual".to_owned(),
                    |s| format!("{}:{}", s.cluster, s.key),
                )
            }),
            ("GROUPS", |h| ansible::groups_of(h).join(",")),
        ],
    )
    .print_or("No target you may reach now.")
}
