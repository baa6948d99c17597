//! The Proxmox host catalog end to end (docs/proxmox.md): a real controller (`portcullis
//! dev`) syncs from the fake Proxmox VE API of tests/common/proxmox.rs, which serves the
//! recorded answers of tests/fixtures/proxmox/ over TLS with a CA of its own; and proxmoxer,
//! a real API client, reads the fake to show it speaks the real API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::proxmox::cluster::fixture_data;
use common::proxmox::{FakeProxmox, TOKEN};

/// A Python with proxmoxer and requests, which scripts/test installs (there is no skip: a
/// missing one fails the test).
fn proxmoxer_python() -> PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_PROXMOXER_PYTHON") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path = std::path::Path::new(&home).join(".cache/portcullis-test/proxmoxer/bin/python");
    assert!(
        path.exists(),
        "no Python with proxmoxer at {}: run the suite with scripts/test, which installs it",
        path.display()
    );
    path
}

/// What proxmoxer reads, as JSON: the calls the catalog makes, and an error whose message
/// is only in the reason phrase.
const PROXMOXER_READS: &str = r#"
import json, sys
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
port, user, token_name, token_value, ca = sys.argv[1:6]
pve = ProxmoxAPI("127.0.0.1", port=int(port), user=user, token_name=token_name,
                 token_value=token_value, verify_ssl=ca, service="PVE", timeout=10)
out = {
    "nodes": pve.nodes.get(),
    "status": pve.cluster.status.get(),
    "vms": pve.cluster.resources.get(type="vm"),
    "config": pve.nodes("node2").qemu(100).config.get(),
    "agent": pve.nodes("node3").qemu(110).agent("network-get-interfaces").get(),
    "lxc_interfaces": pve.nodes("node1").lxc(300).interfaces.get(),
}
try:
    pve.nodes("node3").qemu(112).agent("network-get-interfaces").get()
    out["agent_error"] = None
except ResourceException as e:
    out["agent_error"] = {"status": e.status_code, "message": e.content}
print(json.dumps(out))
"#;

/// proxmoxer, a real client of the Proxmox API, verifies the fake's certificate with its CA
/// file, authenticates with the API token, and gets the recorded answers back unwrapped from
/// the `{"data": ...}` envelope; an old server's error (the message only in the reason
/// phrase) reaches it as Proxmox's words.
#[test]
fn proxmoxer_reads_the_recorded_answers_from_the_fake() {
    let fake = FakeProxmox::start();
    let (user, rest) = TOKEN.split_once('!').unwrap();
    let (token_name, token_value) = rest.split_once('=').unwrap();
    let out = Command::new(proxmoxer_python())
        .arg("-c")
        .arg(PROXMOXER_READS)
        .arg(fake.port.to_string())
        .args([user, token_name, token_value])
        .arg(&fake.ca_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "proxmoxer failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["nodes"], fixture_data("nodes.json"));
    assert_eq!(got["status"], fixture_data("cluster_status.json"));
    assert_eq!(
        got["config"],
        fixture_data("nodes_node_qemu_vmid_config_cloudinit.json")
    );
    assert_eq!(
        got["agent"],
        fixture_data("nodes_node_qemu_vmid_agent_network_get_interfaces_minimal.json")
    );
    assert_eq!(
        got["lxc_interfaces"],
        fixture_data("nodes_node_lxc_vmid_interfaces.json")
    );
    let ids: Vec<&str> = got["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"qemu/100") && ids.contains(&"lxc/300"),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .all(|id| id.starts_with("qemu/") || id.starts_with("lxc/")),
        "type=vm lists guests only: {ids:?}"
    );
    assert_eq!(
        got["agent_error"],
        serde_json::json!({"status": 500, "message": "QEMU guest agent is not running"})
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 7, "{requests:?}");
    assert!(
        requests.iter().all(|r| r.method == "GET" && r.authorized),
        "{requests:?}"
    );
    assert!(requests
        .iter()
        .any(|r| r.path == "/cluster/resources?type=vm"));
}
