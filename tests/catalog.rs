//! The Proxmox host catalog end to end (docs/proxmox.md): a real controller (`portcullis
//! dev`) syncs from the fake Proxmox VE API of tests/common/proxmox.rs, which serves the
//! recorded answers of tests/fixtures/proxmox/ over TLS with a CA of its own; and proxmoxer,
//! a real API client, reads the fake to show it speaks the real API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::Write as _;
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

/// `curl` against the fake: (status line, body) of `GET PATH` with `token` (none: no
/// Authorization header), verifying the fake's certificate with its CA file.
fn curl_fake(
    fake: &FakeProxmox,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(&fake.ca_file)
        .args(["-X", method])
        .arg(format!("{}/api2/json{path}", fake.url()));
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: PVEAPIToken={t}"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The fake itself: a refused token is answered 401 only after the configured delay, and
/// the delay holds back that request alone; only GET is served; an error's message can be
/// in the reason phrase alone; and an outage closes the port until it resumes on the same
/// one. The fake's certificate is the one its fingerprint names.
#[test]
fn the_fake_delays_refusals_serves_only_get_and_goes_dark_in_an_outage() {
    let mut fake = FakeProxmox::start();
    fake.with(|s| s.unauthorized_delay = std::time::Duration::from_millis(1500));
    let (status, body) = curl_fake(&fake, "GET", "/nodes", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"], fixture_data("nodes.json"));

    // A wrong token waits out the delay; a good request meanwhile does not.
    let wrong = std::thread::spawn({
        let url = fake.url();
        let ca = fake.ca_file.clone();
        move || {
            let start = std::time::Instant::now();
            let out = Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(ca)
                .args([
                    "-H",
                    "Authorization: PVEAPIToken=portcullis@pve!discovery=wrong",
                ])
                .arg(format!("{url}/api2/json/nodes"))
                .output()
                .unwrap();
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                start.elapsed(),
            )
        }
    });
    let start = std::time::Instant::now();
    while !fake.requests().iter().any(|r| !r.authorized) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the wrong token's request never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let quick = std::time::Instant::now();
    let (status, _) = curl_fake(&fake, "GET", "/cluster/status", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        quick.elapsed() < std::time::Duration::from_millis(1000),
        "{:?}",
        quick.elapsed()
    );
    let (code, took) = wrong.join().unwrap();
    assert_eq!(code, "401");
    assert!(took >= std::time::Duration::from_millis(1500), "{took:?}");
    let (status, _) = curl_fake(&fake, "GET", "/nodes", None);
    assert_eq!(status, "HTTP/1.1 401 No ticket");

    let (status, _) = curl_fake(
        &fake,
        "POST",
        "/nodes/node1/qemu/100/status/start",
        Some(TOKEN),
    );
    assert!(status.starts_with("HTTP/1.1 405"), "{status}");
    let (status, body) = curl_fake(
        &fake,
        "GET",
        "/nodes/node3/qemu/112/agent/network-get-interfaces",
        Some(TOKEN),
    );
    assert_eq!(status, "HTTP/1.1 500 QEMU guest agent is not running");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, serde_json::json!({ "data": null }));
    let (status, _) = curl_fake(&fake, "GET", "/nodes/node9/qemu/999/config", Some(TOKEN));
    assert!(status.starts_with("HTTP/1.1 501 Method 'GET"), "{status}");

    // The certificate served is the one `fingerprint` pins.
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", fake.port))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    x509.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let said = String::from_utf8_lossy(&x509.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        said.contains(&fake.fingerprint),
        "{said} vs {}",
        fake.fingerprint
    );

    fake.pause();
    let refused = std::net::TcpStream::connect(("127.0.0.1", fake.port));
    assert!(refused.is_err(), "the port still accepts during the outage");
    fake.resume();
    let (status, _) = curl_fake(&fake, "GET", "/nodes", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let methods: Vec<String> = fake.requests().iter().map(|r| r.method.clone()).collect();
    assert!(methods.contains(&"POST".to_owned()), "{methods:?}");
}
