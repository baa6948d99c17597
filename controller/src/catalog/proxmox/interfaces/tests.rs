use serde_json::json;

use super::*;

const AGENT: &str = include_str!(
    "../../../../../tests/fixtures/proxmox/nodes_node_qemu_vmid_agent_network_get_interfaces_minimal.json"
);
const LXC: &str =
    include_str!("../../../../../tests/fixtures/proxmox/nodes_node_lxc_vmid_interfaces.json");

fn data(text: &str) -> Value {
    super::super::wire::envelope(text.as_bytes()).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn ips(usable: &[Usable]) -> Vec<IpAddr> {
    usable.iter().map(|u| u.ip).collect()
}

#[test]
fn the_recorded_agent_answer_gives_eth0_not_lo() {
    let AgentReply::Interfaces(nics) = agent(&data(AGENT)).unwrap() else {
        panic!("not interfaces");
    };
    assert_eq!(nics.len(), 2);
    assert_eq!(nics[1].mac.as_deref(), Some("BC:24:11:2E:C5:4A"));
    let (usable, skipped) = usable(&nics, &["bc:24:11:2e:c5:4a".into()]);
    assert_eq!(ips(&usable), [ip("10.0.0.10")]);
    assert!(usable[0].matched, "the MAC matches whatever its case");
    assert_eq!(usable[0].interface.as_deref(), Some("eth0"));
    assert!(skipped.is_empty(), "lo had no address: {skipped:?}");
}

#[test]
fn the_recorded_legacy_lxc_answer_drops_loopback_and_link_local() {
    let nics = lxc(&data(LXC)).unwrap();
    let (usable, skipped) = usable(&nics, &[]);
    assert_eq!(ips(&usable), [ip("192.168.3.95")]);
    assert_eq!(
        skipped,
        [
            "127.0.0.1, ::1 on lo (loopback)",
            "fe80::be24:11ff:fe89:6707 on eth0 (link-local)"
        ]
    );
}

#[test]
fn newer_lxc_entries_use_inet_types_hand_written() {
    // Hand-written: pve-container >= 5.2.6 adds hardware-address and ip-addresses[] whose
    // type is inet/inet6.
    let answer = json!([{
        "name": "eth0", "hwaddr": "bc:24:11:89:67:07", "hardware-address": "bc:24:11:89:67:07",
        "inet": "192.168.3.95/22", "inet6": "fe80::be24:11ff:fe89:6707/64",
        "ip-addresses": [
            {"ip-address": "192.168.3.95", "ip-address-type": "inet", "prefix": 22},
            {"ip-address": "2001:db8::95", "ip-address-type": "inet6", "prefix": 64},
            {"ip-address": "10.9.9.9", "ip-address-type": "ipv4", "prefix": 8},
        ]
    }]);
    let nics = lxc(&answer).unwrap();
    assert_eq!(
        nics[0].addresses,
        [
            ip("192.168.3.95"),
            ip("2001:db8::95"),
            ip("10.9.9.9"),
            ip("fe80::be24:11ff:fe89:6707")
        ]
    );
    assert_eq!(lxc(&Value::Null).unwrap(), vec![]);
    assert_eq!(lxc(&json!([])).unwrap(), vec![]);
    assert!(lxc(&json!({"x": 1})).is_err());
    assert!(lxc(&json!([{"name": 5}])).is_err());
}

#[test]
fn a_windows_agent_and_guest_side_interfaces_hand_written() {
    // Hand-written in the shape of a Windows guest with Hyper-V and docker inside.
    let answer = json!({"result": [
        {"name": "Loopback Pseudo-Interface 1", "ip-addresses": [
            {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
            {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
        {"name": "vEthernet (WSL)", "ip-addresses": [
            {"ip-address": "172.29.0.1", "ip-address-type": "ipv4", "prefix": 20}]},
        {"name": "docker0", "ip-addresses": [
            {"ip-address": "172.17.0.1", "ip-address-type": "ipv4", "prefix": 16}]},
        {"name": "tun0", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
            {"ip-address": "10.8.0.2", "ip-address-type": "ipv4", "prefix": 24}]},
        {"name": "Ethernet", "hardware-address": "bc:24:11:aa:bb:cc", "ip-addresses": [
            {"ip-address": "fe80::1c2:3%4", "ip-address-type": "ipv6", "prefix": 64},
            {"ip-address": "169.254.10.1", "ip-address-type": "ipv4", "prefix": 16},
            {"ip-address": "2001:db8::7", "ip-address-type": "ipv6", "prefix": 64},
            {"ip-address": "10.0.0.7", "ip-address-type": "ipv4", "prefix": 24},
            {"ip-address": "224.0.0.1", "ip-address-type": "ipv4", "prefix": 4},
            {"ip-address": "0.0.0.0", "ip-address-type": "ipv4", "prefix": 0},
            {"ip-address": "not-an-ip", "ip-address-type": "ipv4", "prefix": 0}]},
    ]});
    let AgentReply::Interfaces(nics) = agent(&answer).unwrap() else {
        panic!("not interfaces");
    };
    let (usable, skipped) = usable(&nics, &["BC:24:11:AA:BB:CC".into()]);
    // The NIC of the config first, then the others in the guest's order.
    assert_eq!(
        ips(&usable),
        [ip("2001:db8::7"), ip("10.0.0.7"), ip("10.8.0.2")]
    );
    // An address the guest garbled is not an address: it is not listed at all.
    assert_eq!(skipped.len(), 7, "{skipped:?}");
    assert!(skipped
        .iter()
        .any(|s| s.contains("fe80::1c2:3 on Ethernet (link-local)")));
}

#[test]
fn agent_refusals_and_bad_shapes() {
    // Hand-written: an old Windows agent's answer (HTTP 200).
    let answer = json!({"result": {"error": {"class": "Unsupported", "desc": "this feature or command is not currently supported"}}});
    assert_eq!(
        agent(&answer).unwrap(),
        AgentReply::Refused {
            class: "Unsupported".into(),
            desc: Some("this feature or command is not currently supported".into())
        }
    );
    let answer = json!({"result": {"error": {"class": "CommandDisabled"}}});
    assert!(
        matches!(agent(&answer).unwrap(), AgentReply::Refused { class, .. } if class == "CommandDisabled")
    );
    assert!(agent(&Value::Null).is_err());
    assert!(agent(&json!({"result": 5})).is_err());
    assert!(agent(&json!({"result": [{"ip-addresses": [{"prefix": 1}]}]})).is_err());
    let AgentReply::Interfaces(nics) = agent(&json!({"result": [{}]})).unwrap() else {
        panic!()
    };
    assert_eq!(nics, [ReportedNic::default()]);
}

#[test]
fn addresses_that_cannot_reach_the_guest() {
    for (text, why) in [
        ("127.0.0.5", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("239.1.1.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
    ] {
        assert_eq!(skipped_address(ip(text)), Some(why), "{text}");
    }
    for text in ["10.0.0.1", "2001:db8::1", "fec0::1", "192.168.1.1"] {
        assert_eq!(skipped_address(ip(text)), None, "{text}");
    }
}
