use serde_json::json;

use super::*;

const VNETS: &str = include_str!("../../../../../tests/fixtures/proxmox/cluster_sdn_vnets.json");
const SUBNETS: &str =
    include_str!("../../../../../tests/fixtures/proxmox/cluster_sdn_vnets_vnet_subnets.json");
const ZONES: &str = include_str!("../../../../../tests/fixtures/proxmox/cluster_sdn_zones.json");

fn data(text: &str) -> Value {
    wire::envelope(text.as_bytes()).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn the_recorded_vnets_subnets_and_zones() {
    let (vnets, notes) = vnets(data(VNETS)).unwrap();
    assert!(notes.is_empty());
    assert_eq!(vnets.len(), 5);
    assert_eq!(vnets["user2"].zone, "test3");
    let (subnets, notes) = subnets(data(SUBNETS)).unwrap();
    assert!(notes.is_empty());
    assert_eq!(subnets, ["10.0.0.0/24".parse::<IpNet>().unwrap()]);
    let ipams = zone_ipams(data(ZONES)).unwrap();
    assert_eq!(ipams["test1"], "pve");
    assert_eq!(ipams["test2"], "pve");
}

#[test]
fn an_address_must_lie_in_its_vnets_subnets() {
    let mut sdn = Sdn::default();
    sdn.vnets.insert(
        "user1".into(),
        VNet {
            zone: "test1".into(),
            subnets: vec!["10.0.0.0/24".parse().unwrap(), "fd00::/64".parse().unwrap()],
        },
    );
    sdn.vnets.insert("bare".into(), VNet::default());
    assert_eq!(sdn.fit(Some("user1"), ip("10.0.0.5")), Fit::Inside);
    assert_eq!(sdn.fit(Some("user1"), ip("fd00::5")), Fit::Inside);
    assert!(
        matches!(sdn.fit(Some("user1"), ip("10.0.1.5")), Fit::Outside { vnet, .. } if vnet == "user1")
    );
    assert_eq!(sdn.fit(Some("vmbr0"), ip("10.0.1.5")), Fit::Unchecked);
    assert_eq!(sdn.fit(None, ip("10.0.1.5")), Fit::Unchecked);
    assert_eq!(sdn.fit(Some("bare"), ip("10.0.1.5")), Fit::Unchecked);
}

#[test]
fn ipam_status_hand_written() {
    // Hand-written (no recording exists), in the shape of the PVE API's
    // /cluster/sdn/ipams/{ipam}/status: vmid as a string or a number, gateways without one.
    let answer = json!([
        {"zone": "test1", "vnet": "user1", "subnet": "10.0.0.0/24", "ip": "10.0.0.1", "gateway": 1},
        {"zone": "test1", "vnet": "user1", "subnet": "10.0.0.0/24", "ip": "10.0.0.20",
         "mac": "bc:24:11:00:00:20", "hostname": "web1", "vmid": "120"},
        {"zone": "test1", "vnet": "user1", "subnet": "fd00::/64", "ip": "fd00::20", "vmid": 120},
        {"zone": "test1", "vnet": "user1", "ip": "bogus", "vmid": 121},
        "junk",
    ]);
    let (entries, notes) = ipam_status(answer).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(notes.len(), 2, "{notes:?}");
    let sdn = Sdn {
        ipam: entries.into_iter().rev().collect(),
        ..Sdn::default()
    };
    let mine: Vec<IpAddr> = sdn.ipam_of(120).iter().map(|e| e.ip).collect();
    assert_eq!(mine, [ip("10.0.0.20"), ip("fd00::20")]);
    assert_eq!(
        sdn.ipam_of(120)[0].mac.as_deref(),
        Some("BC:24:11:00:00:20")
    );
    assert!(sdn.ipam_of(7).is_empty());
    assert!(ipam_status(json!({"a": 1})).is_err());
}
