use serde_json::json;

use super::*;

const QEMU: &str =
    include_str!("../../../../../tests/fixtures/proxmox/nodes_node_qemu_vmid_config.json");
const CLOUDINIT: &str = include_str!(
    "../../../../../tests/fixtures/proxmox/nodes_node_qemu_vmid_config_cloudinit.json"
);
const LXC: &str =
    include_str!("../../../../../tests/fixtures/proxmox/nodes_node_lxc_vmid_config.json");

fn config(text: &str) -> Map<String, Value> {
    match super::super::wire::envelope(text.as_bytes()).unwrap() {
        Value::Object(map) => map,
        other => panic!("not a config: {other}"),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn a_recorded_vm_without_cloud_init_has_a_nic_and_no_address() {
    let c = configured(GuestType::Qemu, &config(QEMU));
    assert_eq!(
        c.nics[&0],
        Nic {
            mac: Some("BC:24:11:2E:C5:4A".into()),
            bridge: Some("vmbr0".into())
        }
    );
    assert!(c.addresses.is_empty());
    assert!(c.notes.is_empty());
}

#[test]
fn the_recorded_cloud_init_address_is_configured() {
    let c = configured(GuestType::Qemu, &config(CLOUDINIT));
    assert_eq!(
        c.addresses,
        vec![ConfiguredAddress {
            ip: ip("192.168.1.10"),
            nic: "net0".into(),
            origin: AddressOrigin::CloudInit
        }]
    );
}

#[test]
fn the_recorded_container_uses_dhcp_so_has_no_configured_address() {
    let c = configured(GuestType::Lxc, &config(LXC));
    assert!(c.addresses.is_empty());
    assert_eq!(c.hostname.as_deref(), Some("ct-test-2"));
    assert_eq!(c.nics[&0].mac.as_deref(), Some("BC:24:11:2E:C5:7E"));
    assert_eq!(c.nics[&0].bridge.as_deref(), Some("vmbr0"));
}

#[test]
fn static_v4_and_v6_only_in_nic_order_hand_written() {
    // Hand-written configs: the shapes NOTES.md documents.
    let vm = json!({
        "net0": "virtio=bc:24:11:00:00:01,bridge=vmbr0,firewall=1,tag=120",
        "net1": "e1000=BC:24:11:00:00:02,bridge=vnet1",
        "ipconfig1": "ip=10.1.0.5/24,gw=10.1.0.1,ip6=2001:db8::5/64",
        "ipconfig0": "ip=dhcp,ip6=auto",
        "ipconfig2": "ip6=dhcp",
        "ipconfig3": "ip=127.0.0.1/8",
        "ipconfig4": "ip=2001:db8::1/64,ip6=10.0.0.1/24",
        "ipconfig5": "ip=10.0.0.300/24,ip6=fe80::1/200",
        "netx": "virtio=zz",
        "net9999": "virtio=BC:24:11:00:00:03",
        "agent": 1,
    });
    let Value::Object(map) = vm else {
        unreachable!()
    };
    let c = configured(GuestType::Qemu, &map);
    let got: Vec<(IpAddr, &str)> = c.addresses.iter().map(|a| (a.ip, a.nic.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (ip("10.1.0.5"), "net1"),
            (ip("2001:db8::5"), "net1"),
            // The config is the admin's word: loopback is kept for the policy to judge.
            (ip("127.0.0.1"), "net3"),
        ]
    );
    assert_eq!(c.nics[&1].bridge.as_deref(), Some("vnet1"));
    assert_eq!(c.nics[&0].mac.as_deref(), Some("BC:24:11:00:00:01"));
    assert_eq!(c.nics.len(), 2, "net9999 is not a NIC key");
    assert_eq!(c.notes.len(), 4, "{:?}", c.notes);
    assert!(
        c.notes.iter().any(|n| n.contains("ipconfig5 ip=")),
        "{:?}",
        c.notes
    );

    let ct = json!({
        "hostname": "web1",
        "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:2E:C5:7E,ip=10.1.1.3/24,gw=10.1.1.1,ip6=auto,type=veth",
        "net1": "name=eth1,bridge=vmbr1,ip=manual,ip6=fd00::3/64",
        "ipconfig0": "ip=10.9.9.9/24",
    });
    let Value::Object(map) = ct else {
        unreachable!()
    };
    let c = configured(GuestType::Lxc, &map);
    let got: Vec<(IpAddr, AddressOrigin)> = c.addresses.iter().map(|a| (a.ip, a.origin)).collect();
    assert_eq!(
        got,
        vec![
            (ip("10.1.1.3"), AddressOrigin::LxcConfig),
            (ip("fd00::3"), AddressOrigin::LxcConfig)
        ]
    );
}

#[test]
fn property_strings_and_macs() {
    assert_eq!(
        properties("a=1,,b, c=x=y"),
        vec![("a", "1"), ("b", ""), ("c", "x=y")]
    );
    assert_eq!(
        mac("bc-24-11-2e-c5-4a").as_deref(),
        Some("BC:24:11:2E:C5:4A")
    );
    assert_eq!(mac("bc:24:11"), None);
    assert_eq!(cidr_address("10.0.0.1"), Some(ip("10.0.0.1")));
    assert_eq!(cidr_address("10.0.0.1/33"), None);
    assert_eq!(cidr_address("/"), None);
}
