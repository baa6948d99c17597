use serde_json::json;

use super::*;

const NODES: &str = include_str!("../../../../../tests/fixtures/proxmox/nodes.json");
const STATUS: &str = include_str!("../../../../../tests/fixtures/proxmox/cluster_status.json");
const RESOURCES: &str =
    include_str!("../../../../../tests/fixtures/proxmox/cluster_resources.json");

fn data(text: &str) -> Value {
    envelope(text.as_bytes()).unwrap()
}

#[test]
fn the_recorded_nodes_are_read() {
    let (nodes, notes) = nodes(data(NODES)).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3", "node4"]);
    assert!(nodes.iter().all(|n| n.online));
    assert_eq!(
        nodes[0].ssl_fingerprint.as_deref(),
        Some("80:D4:F2:DF:64:95:CD:8D:A0:82:82:AC:48:BA:C0:7A:1B:6B:87:8B:FE:B9:83:1C:95:4E:79:58:77:99:69:F5")
    );
}

#[test]
fn the_recorded_cluster_status_gives_node_addresses() {
    let (addresses, notes) = node_addresses(data(STATUS)).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(addresses.len(), 4);
    assert_eq!(addresses["node1"], "192.168.1.1".parse::<IpAddr>().unwrap());
    assert_eq!(addresses["node4"], "192.168.1.4".parse::<IpAddr>().unwrap());
}

#[test]
fn the_recorded_resources_give_the_qemu_guests_only() {
    // This recording has no type filter: node and storage entries are in it too.
    let (guests, notes) = resources(data(RESOURCES)).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    let ids: Vec<u32> = guests.iter().map(|g| g.vmid).collect();
    assert_eq!(ids, [100, 101, 102, 200]);
    assert_eq!(guests[0].name, "server1");
    assert_eq!(guests[0].node, "node2");
    assert_eq!(guests[0].status, "running");
    assert!(!guests[0].template);
    assert!(guests[1].template, "leap154 is a template");
    assert_eq!(guests[2].tags, ["go-proxmox+cloud-init"]);
    assert_eq!(guests[3].name, "VM 200");
    assert!(guests
        .iter()
        .all(|g| g.guest_type == GuestType::Qemu && g.pool.is_none()));
}

#[test]
fn lxc_entries_pools_and_tags_hand_written() {
    // Hand-written: no permissively licensed recording of type=vm with lxc or pool entries.
    let answer = json!([
        {"type": "lxc", "vmid": "105", "name": "ct1", "node": "pve1", "status": "running",
         "template": "0", "tags": "web;db, ssh  prod", "pool": "lab"},
        {"type": "qemu", "vmid": 104, "node": "pve1", "template": true, "pool": ""},
        {"type": "openvz", "vmid": 1, "node": "pve1"},
        {"type": "qemu", "node": "pve1"},
        {"type": "qemu", "vmid": -3, "node": "pve1"},
        {"type": "qemu", "vmid": 106, "node": "../etc"},
        {"type": "qemu", "vmid": 107, "node": "pve1", "name": 12},
        "not an object",
    ]);
    let (guests, notes) = resources(answer).unwrap();
    assert_eq!(guests.len(), 2, "{guests:?}");
    assert_eq!(guests[0].vmid, 104);
    assert!(guests[0].template);
    assert_eq!(guests[0].pool, None);
    assert_eq!(guests[0].status, "unknown");
    assert_eq!(guests[1].guest_type, GuestType::Lxc);
    assert_eq!(guests[1].tags, ["web", "db", "ssh", "prod"]);
    assert_eq!(guests[1].pool.as_deref(), Some("lab"));
    assert_eq!(notes.len(), 5, "{notes:?}");
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    assert!(envelope(b"not json").is_err());
    assert!(envelope(b"[1]").is_err());
    assert_eq!(envelope(b"{}").unwrap(), Value::Null);
    assert!(resources(json!({"a": 1})).is_err());
    assert!(nodes(json!("x")).is_err());
    assert_eq!(resources(Value::Null).unwrap().0, vec![]);
    let (addresses, notes) =
        node_addresses(json!([{"type": "node", "name": "n", "ip": "nope"}, 7])).unwrap();
    assert!(addresses.is_empty());
    assert_eq!(notes.len(), 2, "{notes:?}");
    let (nodes, notes) = nodes(json!([{"node": "a b"}, {"status": "online"}])).unwrap();
    assert!(nodes.is_empty());
    assert_eq!(notes.len(), 2);
}
