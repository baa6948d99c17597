//! The walk against recorded answers (tests/fixtures/proxmox) and hand-written ones for the
//! failure modes the recordings lack, through a fake [`Api`] that records what was asked.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../../tests/fixtures/proxmox/", $name))
    };
}

/// Answers by path: `data` or an error (status, Proxmox's words); anything else is a 500.
#[derive(Default)]
struct Fake {
    answers: HashMap<String, Result<Value, (u16, String)>>,
    asked: Mutex<Vec<String>>,
}

impl Fake {
    fn ok(mut self, path: &str, body: &str) -> Self {
        let data = wire::envelope(body.as_bytes()).unwrap();
        self.answers.insert(path.into(), Ok(data));
        self
    }

    fn data(mut self, path: &str, data: Value) -> Self {
        self.answers.insert(path.into(), Ok(data));
        self
    }

    fn err(mut self, path: &str, status: u16, words: &str) -> Self {
        self.answers
            .insert(path.into(), Err((status, words.into())));
        self
    }

    fn asked(&self, path: &str) -> bool {
        self.asked.lock().unwrap().iter().any(|p| p == path)
    }
}

impl Api for Fake {
    async fn get(&self, path: &str) -> Result<Value, ProxmoxError> {
        self.asked.lock().unwrap().push(path.to_owned());
        match self.answers.get(path) {
            Some(Ok(data)) => Ok(data.clone()),
            Some(Err((status, words))) => Err(ProxmoxError::Api {
                url: "https://pve.test:8006/".into(),
                method: "GET",
                path: path.into(),
                status: *status,
                message: super::super::errors::explain(*status, words),
            }),
            None => Err(ProxmoxError::Api {
                url: "https://pve.test:8006/".into(),
                method: "GET",
                path: path.into(),
                status: 500,
                message: format!("no answer for {path} in this test"),
            }),
        }
    }
}

fn walk() -> Walk {
    Walk {
        cluster: "lab".into(),
        url: "https://pve.test:8006/".into(),
        guest_agent: true,
        sdn: true,
    }
}

fn nodes_data() -> Value {
    wire::envelope(fixture!("nodes.json").as_bytes()).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn addresses(g: &Guest) -> Vec<(IpAddr, AddressOrigin)> {
    g.addresses.iter().map(|a| (a.ip, a.origin)).collect()
}

fn run_now(walk: &Walk, api: &Fake, nodes: Value) -> Result<Discovery, ProxmoxError> {
    futures_util::FutureExt::now_or_never(run(walk, api, nodes)).expect("the fake answers at once")
}

fn has_note(d: &Discovery, parts: &[&str]) -> bool {
    d.notes.iter().any(|n| parts.iter().all(|p| n.contains(p)))
}

/// The recorded cluster: four nodes, four VMs.
fn recorded() -> Fake {
    Fake::default()
        .ok("cluster/status", fixture!("cluster_status.json"))
        .ok(
            "cluster/resources?type=vm",
            fixture!("cluster_resources.json"),
        )
        .ok(
            "nodes/node2/qemu/100/config",
            fixture!("nodes_node_qemu_vmid_config.json"),
        )
        .ok(
            "nodes/node2/qemu/100/agent/network-get-interfaces",
            fixture!("nodes_node_qemu_vmid_agent_network_get_interfaces_minimal.json"),
        )
        .ok(
            "nodes/node1/qemu/101/config",
            fixture!("nodes_node_qemu_vmid_config_cloudinit.json"),
        )
        .ok(
            "nodes/node1/qemu/102/config",
            fixture!("nodes_node_qemu_vmid_config.json"),
        )
        .err("nodes/node1/qemu/200/config", 500, "VM 200 does not exist")
        .ok("cluster/sdn/vnets", fixture!("cluster_sdn_vnets.json"))
        .ok(
            "cluster/sdn/vnets/user1/subnets",
            fixture!("cluster_sdn_vnets_vnet_subnets.json"),
        )
        .ok("cluster/sdn/zones", fixture!("cluster_sdn_zones.json"))
}

#[test]
fn the_recorded_cluster_maps_to_nodes_guests_and_addresses() {
    let api = recorded();
    let d = run_now(&walk(), &api, nodes_data()).unwrap();
    assert_eq!(d.cluster, "lab");
    assert_eq!(d.url, "https://pve.test:8006/");
    assert_eq!(d.nodes.len(), 4);
    assert_eq!(
        d.nodes[0],
        Node {
            name: "node1".into(),
            address: Some(ip("192.168.1.1")),
            online: true
        }
    );
    let ids: Vec<u32> = d.guests.iter().map(|g| g.vmid).collect();
    assert_eq!(ids, [100, 101, 102, 200]);
    // 100 runs without cloud-init: its agent's eth0 (lo dropped), its NIC matched by MAC.
    let g = &d.guests[0];
    assert_eq!(g.name, "server1");
    assert_eq!(addresses(g), [(ip("10.0.0.10"), AddressOrigin::GuestAgent)]);
    assert_eq!(g.addresses[0].interface.as_deref(), Some("eth0"));
    // 101 is a template with a cloud-init address: configured, and nobody asked its agent.
    let g = &d.guests[1];
    assert!(g.template);
    assert_eq!(
        addresses(g),
        [(ip("192.168.1.10"), AddressOrigin::CloudInit)]
    );
    assert_eq!(g.addresses[0].interface.as_deref(), Some("net0"));
    assert!(!api.asked("nodes/node1/qemu/101/agent/network-get-interfaces"));
    // 102 is stopped, without a configured address: listed without one, not asked.
    let g = &d.guests[2];
    assert_eq!(g.tags, ["go-proxmox+cloud-init"]);
    assert!(g.addresses.is_empty());
    assert!(!api.asked("nodes/node1/qemu/102/agent/network-get-interfaces"));
    assert!(
        has_note(&d, &["qemu 102", "stopped", "not asked"]),
        "{:?}",
        d.notes
    );
    // 200's config failed: a note naming it, the guest still listed.
    assert_eq!(d.guests[3].name, "VM 200");
    assert!(
        has_note(&d, &["qemu 200", "VM 200 does not exist"]),
        "{:?}",
        d.notes
    );
    // The SDN zones name the IPAM "pve"; it does not answer here: a note.
    assert!(api.asked("cluster/sdn/ipams/pve/status"));
    assert!(has_note(&d, &["IPAM pve"]), "{:?}", d.notes);
}

#[test]
fn only_nodes_and_resources_fail_the_sync() {
    let api = Fake::default().err("cluster/resources?type=vm", 401, "authentication failure");
    let err = run_now(&walk(), &api, nodes_data()).unwrap_err();
    assert!(
        matches!(err, ProxmoxError::Api { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("token was refused"), "{err}");
    let api = Fake::default().data("cluster/resources?type=vm", json!({"not": "a list"}));
    assert!(matches!(
        run_now(&walk(), &api, nodes_data()).unwrap_err(),
        ProxmoxError::BadAnswer { .. }
    ));
    assert!(matches!(
        run_now(&walk(), &Fake::default(), json!("nodes?")).unwrap_err(),
        ProxmoxError::BadAnswer { .. }
    ));
    // Everything else missing (status, SDN): notes, an empty catalog.
    let api = Fake::default()
        .err(
            "cluster/status",
            403,
            "Permission check failed (/, Sys.Audit)",
        )
        .err(
            "cluster/sdn/vnets",
            501,
            "Method 'GET /cluster/sdn/vnets' not implemented",
        )
        .data("cluster/resources?type=vm", json!([]));
    let d = run_now(&walk(), &api, nodes_data()).unwrap();
    assert!(d.nodes.iter().all(|n| n.address.is_none()));
    assert!(
        has_note(&d, &["Sys.Audit", "without addresses"]),
        "{:?}",
        d.notes
    );
    assert!(has_note(&d, &["no SDN", "501"]), "{:?}", d.notes);
    // An empty SDN answer is no SDN either.
    let api = Fake::default()
        .data("cluster/sdn/vnets", json!([]))
        .data("cluster/resources?type=vm", json!([]));
    let d = run_now(&walk(), &api, nodes_data()).unwrap();
    assert!(has_note(&d, &["no SDN VNets"]), "{:?}", d.notes);
}

/// A hand-written cluster for the failure modes NOTES.md documents (no recording exists).
fn hand_written() -> Fake {
    let running = |t: &str, vmid: u32, node: &str| json!({"type": t, "vmid": vmid, "name": format!("g{vmid}"), "node": node, "status": "running", "template": 0});
    let mut ct = running("lxc", 311, "pve1");
    ct["name"] = json!("");
    Fake::default()
        .data("cluster/status", json!([{"type": "node", "name": "pve1", "ip": "10.20.0.11"}]))
        .data(
            "cluster/resources?type=vm",
            json!([
                running("qemu", 301, "pve1"), running("qemu", 302, "pve1"),
                running("qemu", 303, "pve1"), running("qemu", 304, "pve1"),
                running("qemu", 305, "pve1"), running("qemu", 306, "pve1"),
                running("qemu", 307, "pve1"), running("qemu", 308, "pve2"),
                running("lxc", 310, "pve1"), ct, running("lxc", 312, "pve1"),
                running("qemu", 320, "pve1"),
            ]),
        )
        .data("cluster/sdn/vnets", json!([{"vnet": "vnet1", "zone": "z1"}]))
        .data("cluster/sdn/vnets/vnet1/subnets", json!([{"cidr": "10.50.0.0/24"}]))
        .data("cluster/sdn/zones", json!([{"zone": "z1", "type": "simple", "ipam": "pve"}]))
        .data(
            "cluster/sdn/ipams/pve/status",
            json!([{"vmid": "306", "ip": "10.50.0.6", "mac": "bc:24:11:00:03:06", "vnet": "vnet1", "subnet": "10.50.0.0/24", "zone": "z1"}]),
        )
        // 301: cloud-init v6 and v4 on a VNet: v4 first; 302: its address is outside its VNet.
        .data("nodes/pve1/qemu/301/config", json!({"net0": "virtio=BC:24:11:00:03:01,bridge=vnet1", "ipconfig0": "ip6=fd00::1/64,ip=10.50.0.1/24"}))
        .data("nodes/pve1/qemu/302/config", json!({"net0": "virtio=BC:24:11:00:03:02,bridge=vnet1", "ipconfig0": "ip=192.168.9.2/24"}))
        .err("nodes/pve1/qemu/302/agent/network-get-interfaces", 500, "No QEMU guest agent configured")
        // 303: agent not running; 304: an old Windows agent; 305: no privilege.
        .data("nodes/pve1/qemu/303/config", json!({"net0": "virtio=BC:24:11:00:03:03,bridge=vmbr0"}))
        .err("nodes/pve1/qemu/303/agent/network-get-interfaces", 500, "QEMU guest agent is not running")
        .data("nodes/pve1/qemu/304/config", json!({}))
        .data("nodes/pve1/qemu/304/agent/network-get-interfaces", json!({"result": {"error": {"class": "Unsupported", "desc": "this feature or command is not currently supported"}}}))
        .data("nodes/pve1/qemu/305/config", json!({}))
        .err("nodes/pve1/qemu/305/agent/network-get-interfaces", 403, "Permission check failed (/vms/305, VM.GuestAgent.Audit)")
        // 306: no configured address, an IPAM entry (its agent is never asked).
        .data("nodes/pve1/qemu/306/config", json!({"net0": "virtio=BC:24:11:00:03:06,bridge=vnet1"}))
        // 307: stopped between the listing and the call.
        .data("nodes/pve1/qemu/307/config", json!({}))
        .err("nodes/pve1/qemu/307/agent/network-get-interfaces", 500, "VM 307 is not running")
        // 310: newer container interfaces; 311: no name, its hostname; 312: no endpoint.
        .data("nodes/pve1/lxc/310/config", json!({"hostname": "ct310", "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:03:10,ip=dhcp"}))
        .data("nodes/pve1/lxc/310/interfaces", json!([
            {"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"},
            {"name": "docker0", "inet": "172.17.0.1/16"},
            {"name": "eth0", "hardware-address": "bc:24:11:00:03:10", "ip-addresses": [
                {"ip-address": "2001:db8::310", "ip-address-type": "inet6", "prefix": 64},
                {"ip-address": "fe80::310", "ip-address-type": "inet6", "prefix": 64},
                {"ip-address": "10.20.3.10", "ip-address-type": "inet", "prefix": 24}]}
        ]))
        .data("nodes/pve1/lxc/311/config", json!({"hostname": "web311", "net0": "name=eth0,bridge=vmbr0,ip=10.20.3.11/24,ip6=auto"}))
        .data("nodes/pve1/lxc/312/config", json!({}))
        .err("nodes/pve1/lxc/312/interfaces", 501, "Method 'GET /nodes/pve1/lxc/312/interfaces' not implemented")
        // 320: the agent reports only loopback and link-local.
        .data("nodes/pve1/qemu/320/config", json!({}))
        .data("nodes/pve1/qemu/320/agent/network-get-interfaces", json!({"result": [
            {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
            {"name": "eth0", "ip-addresses": [{"ip-address": "fe80::1%2", "ip-address-type": "ipv6", "prefix": 64}]}]}))
}

fn offline_pve2() -> Value {
    json!([
        {"node": "pve1", "status": "online", "ssl_fingerprint": "AA"},
        {"node": "pve2", "status": "offline"},
    ])
}

#[test]
fn failure_modes_become_notes_and_addresses_come_in_order_hand_written() {
    let api = hand_written();
    let d = run_now(&walk(), &api, offline_pve2()).unwrap();
    let by_id = |vmid: u32| d.guests.iter().find(|g| g.vmid == vmid).unwrap();
    let notes = &d.notes;
    // A guest on an offline node is skipped, as the Ansible plugin does.
    assert!(d.guests.iter().all(|g| g.vmid != 308));
    assert!(has_note(&d, &["qemu 308", "not online"]), "{notes:?}");
    assert_eq!(d.nodes[0].address, Some(ip("10.20.0.11")));
    assert!(!d.nodes[1].online);
    // Configured, IPv4 first; in its VNet's subnet (the v6 has no subnet there: dropped).
    assert_eq!(
        addresses(by_id(301)),
        [(ip("10.50.0.1"), AddressOrigin::CloudInit)]
    );
    assert!(
        has_note(&d, &["qemu 301", "fd00::1", "outside", "vnet1"]),
        "{notes:?}"
    );
    assert!(!api.asked("nodes/pve1/qemu/301/agent/network-get-interfaces"));
    // Outside its VNet: dropped, and then the agent (not configured) gives nothing.
    assert!(by_id(302).addresses.is_empty());
    assert!(
        has_note(&d, &["qemu 302", "192.168.9.2", "disagrees"]),
        "{notes:?}"
    );
    assert!(
        has_note(&d, &["qemu 302", "no guest agent is configured"]),
        "{notes:?}"
    );
    assert!(
        has_note(&d, &["qemu 303", "guest agent is not running"]),
        "{notes:?}"
    );
    assert!(has_note(&d, &["qemu 304", "Unsupported"]), "{notes:?}");
    assert!(
        has_note(&d, &["qemu 305", "VM.GuestAgent.Audit", "VM.Monitor"]),
        "{notes:?}"
    );
    assert!(
        has_note(&d, &["qemu 307", "the VM is not running"]),
        "{notes:?}"
    );
    for vmid in [302, 303, 304, 305, 307, 312, 320] {
        assert!(by_id(vmid).addresses.is_empty(), "{vmid}");
    }
    // The IPAM's address, on the NIC with the entry's MAC; the agent never asked.
    assert_eq!(
        addresses(by_id(306)),
        [(ip("10.50.0.6"), AddressOrigin::SdnIpam)]
    );
    assert_eq!(by_id(306).addresses[0].interface.as_deref(), Some("net0"));
    assert!(!api.asked("nodes/pve1/qemu/306/agent/network-get-interfaces"));
    // A running container: its eth0, IPv4 first, loopback, docker and link-local dropped.
    assert_eq!(
        addresses(by_id(310)),
        [
            (ip("10.20.3.10"), AddressOrigin::LxcInterfaces),
            (ip("2001:db8::310"), AddressOrigin::LxcInterfaces)
        ]
    );
    assert_eq!(by_id(310).name, "g310");
    // No name: the hostname; a static ip= on netN.
    assert_eq!(by_id(311).name, "web311");
    assert_eq!(
        addresses(by_id(311)),
        [(ip("10.20.3.11"), AddressOrigin::LxcConfig)]
    );
    assert!(
        has_note(&d, &["lxc 312", "no container interfaces endpoint"]),
        "{notes:?}"
    );
    assert!(
        has_note(
            &d,
            &[
                "qemu 320",
                "no usable address",
                "127.0.0.1 on lo",
                "link-local"
            ]
        ),
        "{notes:?}"
    );
    // Stable order whatever order the guests were read in.
    let ids: Vec<u32> = d.guests.iter().map(|g| g.vmid).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
}

#[test]
fn asking_guests_and_sdn_can_be_turned_off() {
    let api = hand_written();
    let quiet = Walk {
        guest_agent: false,
        sdn: false,
        ..walk()
    };
    let d = run_now(&quiet, &api, offline_pve2()).unwrap();
    let asked = api.asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|p| !p.contains("/agent/") && !p.ends_with("/interfaces") && !p.contains("sdn")),
        "{asked:?}"
    );
    // Without SDN, 302's configured address is kept and 306 has no IPAM address.
    let by_id = |vmid: u32| d.guests.iter().find(|g| g.vmid == vmid).unwrap();
    assert_eq!(
        addresses(by_id(302)),
        [(ip("192.168.9.2"), AddressOrigin::CloudInit)]
    );
    assert!(by_id(306).addresses.is_empty());
    assert!(
        has_note(&d, &["qemu 306", "guest_agent = false"]),
        "{:?}",
        d.notes
    );
}
