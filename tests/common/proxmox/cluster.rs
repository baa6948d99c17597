//! The fake's default cluster: the recorded answers of tests/fixtures/proxmox/ (README.md
//! there says where each comes from), composed into one small cluster, plus hand-written
//! entries for the cases the recordings lack. Every hand-written answer keeps to the shapes
//! the Proxmox API documents (the project's Proxmox notes), and is marked HAND-WRITTEN.
//!
//! | guest | node | what it is | address the catalog should find |
//! |---|---|---|---|
//! | qemu/100 `server1` | node2 | recorded; running; recorded cloud-init config | 192.168.1.10 (cloud-init) |
//! | qemu/101 `leap154` | node1 | recorded; a template | 192.168.1.11 (cloud-init, HAND-WRITTEN config) |
//! | qemu/102 `machine-test` | node1 | recorded; stopped | 192.168.1.12 (cloud-init, HAND-WRITTEN config) |
//! | qemu/200 `VM 200` | node1 | recorded; stopped; no ipconfig; agent: `VM 200 is not running` (reason phrase only) | none |
//! | qemu/110 `agent-vm` | node3 | HAND-WRITTEN; agent answers the recorded interfaces | 10.0.0.10 (guest-agent) |
//! | qemu/111 `agent-elsewhere` | node3 | HAND-WRITTEN; agent reports 10.0.1.20 | 10.0.1.20 (guest-agent), in a zone that does not take guest-reported addresses |
//! | qemu/112 `agent-down` | node3 | HAND-WRITTEN; agent 500 `QEMU guest agent is not running`, reason phrase only | none |
//! | qemu/113 `agent-missing` | node3 | HAND-WRITTEN; agent 500 `No QEMU guest agent configured`, message in the body | none |
//! | qemu/114 `agent-windows` | node3 | HAND-WRITTEN; agent 200 with `result.error.class = Unsupported` | none |
//! | qemu/120 `tagged-secure` | node2 | HAND-WRITTEN; cloud-init 192.168.1.20 but tagged `secure` | refused: the tag is another zone's |
//! | qemu/121 `pooled-vm` | node2 | HAND-WRITTEN; in pool `test-pool`, tags `prod;web` | 192.168.1.21 (cloud-init) |
//! | lxc/300 `ct-test-1` | node1 | HAND-WRITTEN entry; recorded config (`ip=dhcp`) and recorded interfaces (legacy `inet`) | 192.168.3.95 (lxc-interfaces) |
//! | lxc/301 `ct-test-3` | node1 | HAND-WRITTEN; config `ip=192.168.3.50/24` | 192.168.3.50 (lxc-config) |
//! | lxc/302 `ct-test-4` | node4 | HAND-WRITTEN; `ip=dhcp`; interfaces in the pve-container 5.2.6 shape (`ip-addresses[]`, types `inet`/`inet6`) and a docker0 | 192.168.3.96 (lxc-interfaces) |
//!
//! Nodes: node1..node4 of the recorded /nodes and /cluster/status (192.168.1.1-4).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Answer;

/// A recorded answer, as it is.
pub(crate) fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/proxmox/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A recorded answer's `data`.
pub(crate) fn fixture_data(name: &str) -> Value {
    let v: Value = serde_json::from_str(&fixture(name)).expect("a fixture is JSON");
    v["data"].clone()
}

/// The recorded QEMU config without cloud-init (`nodes_node_qemu_vmid_config.json`) with
/// `changes` applied: a HAND-WRITTEN variant.
pub(crate) fn qemu_config(changes: Value) -> Value {
    let mut config = fixture_data("nodes_node_qemu_vmid_config.json");
    for (k, v) in changes.as_object().expect("changes are an object") {
        config[k] = v.clone();
    }
    config
}

/// A `/cluster/resources` entry of a guest, in the recorded entries' shape.
pub(crate) fn guest_entry(
    kind: &str,
    vmid: u32,
    name: &str,
    node: &str,
    status: &str,
    tags: Option<&str>,
    pool: Option<&str>,
) -> Value {
    let running = status == "running";
    let mut e = json!({
        "id": format!("{kind}/{vmid}"),
        "type": kind,
        "vmid": vmid,
        "name": name,
        "node": node,
        "status": status,
        "template": 0,
        "uptime": if running { 3600 } else { 0 },
        "cpu": 0.01, "maxcpu": 2, "mem": 536870912, "maxmem": 2147483648u64,
        "disk": 0, "maxdisk": 10737418240u64, "diskread": 0, "diskwrite": 0,
        "netin": 0, "netout": 0,
    });
    if let Some(tags) = tags {
        e["tags"] = json!(tags);
    }
    if let Some(pool) = pool {
        e["pool"] = json!(pool);
    }
    e
}

/// The agent's interface list with one `eth0` address (the recorded minimal answer's shape).
pub(crate) fn agent_interfaces(ip: &str, mac: &str) -> Value {
    json!({ "result": [
        { "name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
            { "ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8 } ] },
        { "name": "eth0", "hardware-address": mac, "ip-addresses": [
            { "ip-address": ip, "ip-address-type": "ipv4", "prefix": 24 } ] },
    ]})
}

fn config_path(kind: &str, node: &str, vmid: u32) -> String {
    format!("/nodes/{node}/{kind}/{vmid}/config")
}

pub(crate) fn agent_path(node: &str, vmid: u32) -> String {
    format!("/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces")
}

pub(crate) fn interfaces_path(node: &str, vmid: u32) -> String {
    format!("/nodes/{node}/lxc/{vmid}/interfaces")
}

/// The default cluster: `/cluster/resources` entries and every other route.
pub(crate) fn default_cluster() -> (Vec<Value>, BTreeMap<String, Answer>) {
    let mut routes = BTreeMap::new();
    let mut route = |path: String, answer: Answer| {
        routes.insert(path, answer);
    };
    // Recorded: nodes, the cluster's members, pools, SDN.
    route("/nodes".into(), Answer::recorded(fixture("nodes.json")));
    route(
        "/cluster/status".into(),
        Answer::recorded(fixture("cluster_status.json")),
    );
    for node in ["node1", "node2", "node3", "node4"] {
        route(
            format!("/nodes/{node}/network"),
            Answer::recorded(fixture("nodes_node_network.json")),
        );
    }
    route("/pools".into(), Answer::recorded(fixture("pools.json")));
    route(
        "/pools/test-pool".into(),
        Answer::recorded(fixture("pools_poolid.json")),
    );
    // HAND-WRITTEN: the newer form of a pool's members (an array of pools), with the
    // default cluster's pooled guest.
    route(
        "/pools?poolid=test-pool".into(),
        Answer::data(
            json!([{ "poolid": "test-pool", "comment": "Test pool", "members": [
                guest_entry("qemu", 121, "pooled-vm", "node2", "running", Some("prod;web"), Some("test-pool"))
            ]}]),
        ),
    );
    route(
        "/cluster/sdn/zones".into(),
        Answer::recorded(fixture("cluster_sdn_zones.json")),
    );
    route(
        "/cluster/sdn/vnets".into(),
        Answer::recorded(fixture("cluster_sdn_vnets.json")),
    );
    for vnet in fixture_data("cluster_sdn_vnets.json")
        .as_array()
        .expect("vnets")
    {
        let name = vnet["vnet"].as_str().expect("vnet name");
        let answer = if name == "user1" {
            Answer::recorded(fixture("cluster_sdn_vnets_vnet_subnets.json"))
        } else {
            // HAND-WRITTEN: a VNet without subnets.
            Answer::data(json!([]))
        };
        route(format!("/cluster/sdn/vnets/{name}/subnets"), answer);
    }

    // Recorded guests (and nodes and storage) as /cluster/resources lists them.
    let mut resources: Vec<Value> = fixture_data("cluster_resources.json")
        .as_array()
        .expect("resources")
        .clone();
    route(
        config_path("qemu", "node2", 100),
        Answer::recorded(fixture("nodes_node_qemu_vmid_config_cloudinit.json")),
    );
    route(
        config_path("qemu", "node1", 101),
        Answer::data(qemu_config(json!({
            "name": "leap154", "vmid": 101, "template": 1,
            "ipconfig0": "ip=192.168.1.11/24,gw=192.168.1.1" }))),
    );
    route(
        agent_path("node1", 101),
        Answer::reason_only(500, "VM 101 is not running"),
    );
    route(
        config_path("qemu", "node1", 102),
        Answer::data(qemu_config(json!({
            "name": "machine-test", "vmid": 102, "agent": "1",
            "tags": "go-proxmox+cloud-init",
            "ipconfig0": "ip=192.168.1.12/24,gw=192.168.1.1" }))),
    );
    route(
        agent_path("node1", 102),
        Answer::reason_only(500, "VM 102 is not running"),
    );
    route(
        config_path("qemu", "node1", 200),
        Answer::recorded(fixture("nodes_node_qemu_vmid_config.json")),
    );
    route(
        agent_path("node1", 200),
        Answer::reason_only(500, "VM 200 is not running"),
    );

    // HAND-WRITTEN guests: the agent's answers and failures.
    let agent_vm = |vmid: u32, name: &str| {
        (
            guest_entry("qemu", vmid, name, "node3", "running", None, None),
            qemu_config(json!({ "name": name, "vmid": vmid, "agent": "1",
                "net0": format!("virtio=BC:24:11:00:01:{:02X},bridge=vmbr0", vmid % 256) })),
        )
    };
    for (vmid, name, agent) in [
        (
            110,
            "agent-vm",
            Answer::recorded(fixture(
                "nodes_node_qemu_vmid_agent_network_get_interfaces_minimal.json",
            )),
        ),
        (
            111,
            "agent-elsewhere",
            Answer::data(agent_interfaces("10.0.1.20", "BC:24:11:00:01:6F")),
        ),
        (
            112,
            "agent-down",
            Answer::reason_only(500, "QEMU guest agent is not running"),
        ),
        (
            113,
            "agent-missing",
            Answer::with_message(500, "No QEMU guest agent configured"),
        ),
        (
            114,
            "agent-windows",
            Answer::data(json!({ "result": { "error": {
                "class": "Unsupported",
                "desc": "this feature or command is not currently supported" } } })),
        ),
    ] {
        let (entry, config) = agent_vm(vmid, name);
        resources.push(entry);
        route(config_path("qemu", "node3", vmid), Answer::data(config));
        route(agent_path("node3", vmid), agent);
    }

    // HAND-WRITTEN guests: a tag of another zone, and a pool.
    resources.push(guest_entry(
        "qemu",
        120,
        "tagged-secure",
        "node2",
        "running",
        Some("secure"),
        None,
    ));
    route(
        config_path("qemu", "node2", 120),
        Answer::data(qemu_config(json!({ "name": "tagged-secure", "vmid": 120,
            "tags": "secure", "ipconfig0": "ip=192.168.1.20/24,gw=192.168.1.1" }))),
    );
    resources.push(guest_entry(
        "qemu",
        121,
        "pooled-vm",
        "node2",
        "running",
        Some("prod;web"),
        Some("test-pool"),
    ));
    route(
        config_path("qemu", "node2", 121),
        Answer::data(qemu_config(json!({ "name": "pooled-vm", "vmid": 121,
            "tags": "prod;web", "ipconfig0": "ip=192.168.1.21/24,gw=192.168.1.1" }))),
    );

    // HAND-WRITTEN entries of containers (the recorded resources have none).
    resources.push(guest_entry(
        "lxc",
        300,
        "ct-test-1",
        "node1",
        "running",
        Some("prod;web"),
        None,
    ));
    route(
        config_path("lxc", "node1", 300),
        Answer::recorded(fixture("nodes_node_lxc_vmid_config.json")),
    );
    route(
        interfaces_path("node1", 300),
        Answer::recorded(fixture("nodes_node_lxc_vmid_interfaces.json")),
    );
    resources.push(guest_entry(
        "lxc",
        301,
        "ct-test-3",
        "node1",
        "running",
        None,
        None,
    ));
    route(
        config_path("lxc", "node1", 301),
        Answer::data(json!({
            "arch": "amd64", "cores": 1, "hostname": "ct-test-3", "memory": 512,
            "net0": "name=eth0,bridge=vmbr0,firewall=1,gw=192.168.3.1,hwaddr=BC:24:11:2E:C5:7F,ip=192.168.3.50/24,type=veth",
            "ostype": "debian", "rootfs": "local-lvm:vm-301-disk-0,size=8G", "swap": 256,
            "digest": "0123456789abcdef" })),
    );
    resources.push(guest_entry(
        "lxc",
        302,
        "ct-test-4",
        "node4",
        "running",
        None,
        None,
    ));
    route(
        config_path("lxc", "node4", 302),
        Answer::data(json!({
            "arch": "amd64", "cores": 1, "hostname": "ct-test-4", "memory": 512,
            "net0": "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:2E:C5:80,ip=dhcp,type=veth",
            "ostype": "debian", "rootfs": "local-lvm:vm-302-disk-0,size=8G", "swap": 256,
            "digest": "fedcba9876543210" })),
    );
    route(
        interfaces_path("node4", 302),
        Answer::data(json!([
            { "name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128",
              "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
                { "ip-address": "127.0.0.1", "ip-address-type": "inet", "prefix": 8 },
                { "ip-address": "::1", "ip-address-type": "inet6", "prefix": 128 } ] },
            { "name": "docker0", "hwaddr": "02:42:ac:11:00:01", "inet": "172.17.0.1/16",
              "hardware-address": "02:42:ac:11:00:01", "ip-addresses": [
                { "ip-address": "172.17.0.1", "ip-address-type": "inet", "prefix": 16 } ] },
            { "name": "eth0", "hwaddr": "bc:24:11:2e:c5:80", "inet": "192.168.3.96/24",
              "inet6": "fe80::be24:11ff:fe2e:c580/64",
              "hardware-address": "bc:24:11:2e:c5:80", "ip-addresses": [
                { "ip-address": "192.168.3.96", "ip-address-type": "inet", "prefix": 24 },
                { "ip-address": "fe80::be24:11ff:fe2e:c580", "ip-address-type": "inet6", "prefix": 64 } ] },
        ])),
    );
    (resources, routes)
}

/// A running QEMU guest (HAND-WRITTEN) whose cloud-init `ipconfig0` is `ip`: the entry and
/// its config's route, for a test to add with [`super::FakeProxmox::put_guest`].
pub(crate) fn cloud_init_guest(
    vmid: u32,
    name: &str,
    node: &str,
    ip: &str,
    tags: Option<&str>,
) -> (Value, String, Answer) {
    let mut changes = json!({ "name": name, "vmid": vmid,
        "ipconfig0": format!("ip={ip}/24") });
    if let Some(tags) = tags {
        changes["tags"] = json!(tags);
    }
    (
        guest_entry("qemu", vmid, name, node, "running", tags, None),
        config_path("qemu", node, vmid),
        Answer::data(qemu_config(changes)),
    )
}
