#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use portcullis_proto::catalog::{Inventory, InventoryHost, TargetSource};
use serde_json::json;

use super::ansible::{self, build, script_host, script_list, to_safe, yaml_plugin};

fn manual(name: &str, address: &str, service: Option<&str>) -> InventoryHost {
    InventoryHost {
        name: name.into(),
        zone: "LOCAL".into(),
        service: service.map(Into::into),
        address: address.into(),
        tags: Vec::new(),
        pool: None,
        vmid: None,
        source: None,
    }
}

fn discovered() -> InventoryHost {
    InventoryHost {
        name: "web-01".into(),
        zone: "WORKLOADS".into(),
        service: Some("ssh".into()),
        address: "10.40.0.5:22".into(),
        tags: vec!["web".into(), "debian 12".into()],
        pool: Some("prod-eu".into()),
        vmid: Some(100),
        source: Some(TargetSource {
            kind: "proxmox".into(),
            cluster: "home-lab".into(),
            key: "qemu/100".into(),
            node: Some("pve1".into()),
            guest_type: "qemu".into(),
            status: "running".into(),
            address_origin: Some("cloud-init".into()),
            overrides: Vec::new(),
            seen_at: 0,
        }),
    }
}

fn inventory() -> Inventory {
    Inventory {
        hosts: vec![
            discovered(),
            manual("db", "127.0.0.1:2222", Some("ssh")),
            manual("legacy", "10.0.0.9:22", None),
            manual("pve1", "10.20.0.11:8006", Some("proxmox-api")),
            manual("echo", "127.0.0.1:7", Some("echo")),
        ],
    }
}

const ROOT: &str = "/run/user/1000/portcullis/ssh";

#[test]
fn group_names_are_sanitised_as_the_proxmox_plugin_does() {
    assert_eq!(to_safe("tag_foo-bar baz"), "tag_foo_barbaz");
    assert_eq!(to_safe("zone_WORKLOADS"), "zone_WORKLOADS");
    assert_eq!(to_safe("pool_prod.eu/1"), "pool_prod_eu_1");
    assert_eq!(to_safe("tag_é"), "tag__");
    assert_eq!(
        ansible::groups_of(&discovered()),
        [
            "zone_WORKLOADS",
            "tag_web",
            "tag_debian12",
            "pool_prod_eu",
            "node_pve1",
            "proxmox_home_lab"
        ]
    );
    assert_eq!(
        ansible::groups_of(&manual("db", "h:22", None)),
        ["zone_LOCAL", "portcullis_manual"]
    );
}

#[test]
fn only_ssh_hosts_are_listed() {
    let built = build(&inventory(), Path::new(ROOT), |_| true).unwrap();
    assert_eq!(
        built.hosts.keys().collect::<Vec<_>>(),
        ["db", "legacy", "web-01"],
        "ssh by service or by port 22; not proxmox-api or echo"
    );
    let none = build(&inventory(), Path::new(ROOT), |name| name == "db").unwrap();
    assert_eq!(none.hosts.keys().collect::<Vec<_>>(), ["db"]);
}

#[test]
fn hostvars_send_ssh_through_portcullis_and_say_what_proxmox_knows() {
    let built = build(&inventory(), Path::new("/tmp/with space"), |_| true).unwrap();
    assert_eq!(
        serde_json::Value::Object(built.hosts["web-01"].clone()),
        json!({
            "ansible_host": "web-01",
            "ansible_ssh_common_args": "-F '/tmp/with space/web-01/ssh_config'",
            "portcullis_zone": "WORKLOADS",
            "portcullis_service": "ssh",
            "portcullis_address": "10.40.0.5:22",
            "portcullis_source": "home-lab",
            "proxmox_vmid": 100,
            "proxmox_node": "pve1",
            "proxmox_type": "qemu",
            "proxmox_pool": "prod-eu",
            "proxmox_tags": ["web", "debian 12"],
        })
    );
    assert_eq!(
        serde_json::Value::Object(built.hosts["legacy"].clone()),
        json!({
            "ansible_host": "legacy",
            "ansible_ssh_common_args": "-F '/tmp/with space/legacy/ssh_config'",
            "portcullis_zone": "LOCAL",
            "portcullis_address": "10.0.0.9:22",
            "portcullis_source": "manual",
        })
    );
    // Ansible splits the args as a shell would: one -F, one path.
    let args = built.hosts["web-01"]["ansible_ssh_common_args"]
        .as_str()
        .unwrap();
    assert_eq!(
        shlex::split(args).unwrap(),
        ["-F", "/tmp/with space/web-01/ssh_config"]
    );
}

#[test]
fn the_yaml_plugin_shape_holds_hosts_once_and_groups_by_name() {
    let built = build(&inventory(), Path::new(ROOT), |_| true).unwrap();
    let value = yaml_plugin(&built);
    let all = &value["all"];
    assert_eq!(
        all["hosts"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["db", "legacy", "web-01"]
    );
    assert_eq!(
        all["hosts"]["db"]["ansible_ssh_common_args"],
        format!("-F {ROOT}/db/ssh_config")
    );
    assert_eq!(
        all["children"]["portcullis_manual"],
        json!({"hosts": {"db": {}, "legacy": {}}})
    );
    assert_eq!(
        all["children"]["zone_WORKLOADS"],
        json!({"hosts": {"web-01": {}}})
    );
    assert_eq!(
        all["children"]["node_pve1"],
        json!({"hosts": {"web-01": {}}})
    );
    assert!(value.get("_meta").is_none());
}

#[test]
fn the_script_shape_answers_list_and_host() {
    let built = build(&inventory(), Path::new(ROOT), |_| true).unwrap();
    let list = script_list(&built);
    assert_eq!(list["zone_LOCAL"], json!({"hosts": ["db", "legacy"]}));
    assert_eq!(list["tag_web"], json!({"hosts": ["web-01"]}));
    assert_eq!(list["proxmox_home_lab"], json!({"hosts": ["web-01"]}));
    assert_eq!(
        list["_meta"]["hostvars"]["web-01"]["proxmox_vmid"],
        json!(100)
    );
    assert_eq!(
        list["_meta"]["hostvars"].as_object().unwrap().len(),
        3,
        "every listed host has its variables, so Ansible never asks --host"
    );
    assert!(list["all"]["children"]
        .as_array()
        .unwrap()
        .contains(&json!("pool_prod_eu")));
    assert_eq!(script_host(&built, "db")["portcullis_zone"], "LOCAL");
    assert_eq!(script_host(&built, "nope"), json!({}));
}

#[test]
fn an_empty_inventory_is_still_an_inventory() {
    let built = build(&Inventory { hosts: vec![] }, Path::new(ROOT), |_| true).unwrap();
    assert_eq!(
        yaml_plugin(&built),
        json!({"all": {"hosts": {}, "children": {}}})
    );
    assert_eq!(
        script_list(&built),
        json!({"_meta": {"hostvars": {}}, "all": {"children": []}})
    );
}

#[test]
fn flags() {
    use clap::Parser as _;
    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: super::InventoryArgs,
    }
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("inventory").chain(args.iter().copied()))
    };
    let cli = parse(&["--ansible", "--host", "web-01"]).unwrap();
    assert_eq!(cli.args.host.as_deref(), Some("web-01"));
    assert!(parse(&["--ansible", "--list"]).unwrap().args.list);
    assert!(parse(&["--list"]).is_err(), "--list needs --ansible");
    assert!(parse(&["--ansible", "--list", "--host", "x"]).is_err());
    assert!(parse(&["--ansible", "--json"]).is_err());
}
