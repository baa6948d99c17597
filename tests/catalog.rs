//! The Proxmox host catalog end to end (docs/proxmox.md): a real controller (`portcullis
//! dev`) syncs from the fake Proxmox VE API of tests/common/proxmox.rs, which serves the
//! recorded answers of tests/fixtures/proxmox/ over TLS with a CA of its own; and proxmoxer,
//! a real API client, reads the fake to show it speaks the real API. The set-up (the fake,
//! an sshd, the dev stack, the policy) is tests/common/catalog.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::catalog::{
    catalog_config, changes, cluster_of, policy, Lab, Trust, CLUSTER, SSH_GUESTS,
};
use common::cluster::Controller;
use common::dev::curl;
use common::netns::Place;
use common::proxmox::cluster::{cloud_init_guest, fixture_data};
use common::proxmox::{FakeProxmox, TOKEN};
use common::sshd::login_user;
use common::wait::poll;

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
/// in the reason phrase alone; and an outage drops open connections and closes new ones
/// until it ends. The fake's certificate is the one its fingerprint names.
#[test]
fn the_fake_delays_refusals_serves_only_get_and_goes_dark_in_an_outage() {
    let mut fake = FakeProxmox::start();
    fake.with(|s| s.unauthorized_delay = Duration::from_secs(2));
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
    poll(
        "the wrong token's request to reach the fake",
        Duration::from_secs(10),
        || {
            if fake.requests().iter().any(|r| !r.authorized) {
                Ok(())
            } else {
                Err("not yet")
            }
        },
    );
    let (status, _) = curl_fake(&fake, "GET", "/cluster/status", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        !wrong.is_finished(),
        "the good request was answered only after the refused one"
    );
    let (code, took) = wrong.join().unwrap();
    assert_eq!(code, "401");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    fake.with(|s| s.unauthorized_delay = Duration::ZERO);
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

    // An outage: an open connection (here in its TLS handshake) is dropped, and a new one
    // closed before TLS.
    let mut open = std::net::TcpStream::connect(("127.0.0.1", fake.port)).unwrap();
    open.write_all(b"\x16\x03\x01").unwrap();
    fake.pause();
    common::client::closes_within(&mut open, Duration::from_secs(10));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&fake.ca_file)
        .arg(format!("{}/api2/json/nodes", fake.url()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "curl reached the fake during an outage"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("timed out"), "{said}");
    let requests = fake.requests().len();
    fake.resume();
    let (status, _) = curl_fake(&fake, "GET", "/nodes", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        fake.requests().len(),
        requests + 1,
        "a request came in during the outage"
    );
    let methods: Vec<String> = fake.requests().iter().map(|r| r.method.clone()).collect();
    assert!(methods.contains(&"POST".to_owned()), "{methods:?}");
}

/// Runs `connect NAME --exec true`, which must be refused; its stderr.
fn connect_refused(lab: &Lab, name: &str) -> String {
    let (ok, stdout, stderr) = lab.run(&["connect", name, "--exec", "true"]);
    assert!(!ok, "connect {name} was allowed:\n{stdout}\n{stderr}");
    stderr
}

/// The fixtures' guests become targets with the address their config gives (cloud-init,
/// LXC `ip=`), or, only in a zone with `guest_reported_addresses = true`, the one their
/// agent or container interfaces report (legacy `inet` and 5.2.6 `ip-addresses[]` shapes,
/// loopback, link-local and docker skipped); the zone always from the address. Agent
/// failures (not running as a reason phrase only, not configured as a body message,
/// `Unsupported`) leave the guest without an address, refused with a reason; a tag of
/// another zone is refused and audited; templates and stopped guests are listed
/// unavailable and refused at connect; the nodes are `proxmox-api` targets.
#[test]
fn the_fixtures_guests_map_to_targets_addresses_and_zones() {
    let lab = Lab::start(Trust::CaFile);
    let report = lab.sync();
    assert_eq!(report["outcome"], "ok", "{report}");
    let found = lab.discovered();
    let ssh = lab.sshd.port;
    let expect = |key: &str, ip: &str, zone: &str, origin: &str, status: &str, available: bool| {
        let t = found
            .get(key)
            .unwrap_or_else(|| panic!("no target for {key}; the discovered: {:?}", found.keys()));
        let port = if key.starts_with("node/") { 8006 } else { ssh };
        assert_eq!(t["address"], format!("{ip}:{port}"), "{key}: {t}");
        assert_eq!(t["zone"], zone, "{key}: {t}");
        assert_eq!(t["source"]["cluster"], CLUSTER, "{key}: {t}");
        assert_eq!(t["source"]["address_origin"], origin, "{key}: {t}");
        assert_eq!(t["source"]["status"], status, "{key}: {t}");
        assert_eq!(t["available"], available, "{key}: {t}");
        t.clone()
    };
    let server1 = expect(
        "qemu/100",
        "192.168.1.10",
        "LAB",
        "cloud-init",
        "running",
        true,
    );
    assert_eq!(server1["name"], "server1");
    assert_eq!(server1["service"], "ssh");
    assert_eq!(server1["vmid"], 100);
    assert_eq!(server1["source"]["node"], "node2");
    expect(
        "qemu/101",
        "192.168.1.11",
        "LAB",
        "cloud-init",
        "template",
        false,
    );
    expect(
        "qemu/102",
        "192.168.1.12",
        "LAB",
        "cloud-init",
        "stopped",
        false,
    );
    expect(
        "qemu/110",
        "10.0.0.10",
        "AGENT",
        "guest-agent",
        "running",
        true,
    );
    let pooled = expect(
        "qemu/121",
        "192.168.1.21",
        "LAB",
        "cloud-init",
        "running",
        true,
    );
    assert_eq!(pooled["pool"], "test-pool");
    assert_eq!(pooled["tags"], serde_json::json!(["prod", "web"]));
    let ct = expect(
        "lxc/300",
        "192.168.3.95",
        "CT",
        "lxc-interfaces",
        "running",
        true,
    );
    assert_eq!(ct["name"], "ct-test-1");
    assert_eq!(ct["source"]["guest_type"], "lxc");
    expect(
        "lxc/301",
        "192.168.3.50",
        "CT",
        "lxc-config",
        "running",
        true,
    );
    expect(
        "lxc/302",
        "192.168.3.96",
        "CT",
        "lxc-interfaces",
        "running",
        true,
    );
    expect(
        "qemu/130",
        "127.0.0.3",
        "LOCAL",
        "cloud-init",
        "running",
        true,
    );
    for n in 1..=4 {
        let node = expect(
            &format!("node/node{n}"),
            &format!("192.168.1.{n}"),
            "PVE-MGMT",
            "cluster-status",
            "online",
            true,
        );
        assert_eq!(node["service"], "proxmox-api", "{node}");
        assert_eq!(node["source"]["guest_type"], "node", "{node}");
    }
    // Refused: no target, a reason in the catalog.
    let refused = [
        "qemu/111", "qemu/112", "qemu/113", "qemu/114", "qemu/120", "qemu/200",
    ];
    for key in refused {
        assert!(
            !found.contains_key(key),
            "{key} became a target: {}",
            found[key]
        );
    }
    let status = lab.catalog();
    assert_eq!(status["stale"], false, "{status}");
    let reasons = status["refused"].as_object().unwrap();
    for key in refused {
        let reason = reasons
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no refusal of {key} in {status}"));
        assert!(!reason.is_empty(), "{key}");
    }
    assert!(
        reasons["qemu/111"]
            .as_str()
            .unwrap()
            .contains("guest_reported_addresses"),
        "{status}"
    );
    assert!(
        reasons["qemu/120"].as_str().unwrap().contains("secure"),
        "{status}"
    );
    for key in ["qemu/112", "qemu/113", "qemu/114", "qemu/200"] {
        assert!(
            reasons[key].as_str().unwrap().contains("no address"),
            "{key}: {status}"
        );
    }
    // The agent's failures are told apart by Proxmox's words: in the reason phrase alone
    // (an old server), in the body's message (a newer one), and the agent's error class.
    let notes: Vec<String> = report["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("no notes in {report}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_lowercase())
        .collect();
    for (guest, words) in [
        ("qemu 112", "not running"),
        ("qemu 113", "configured"),
        ("qemu 114", "unsupported"),
    ] {
        assert!(
            notes.iter().any(|n| n.contains(guest) && n.contains(words)),
            "no note says {guest}: {words}: {notes:?}"
        );
    }
    let catalog_targets = status["targets"].as_array().unwrap();
    assert_eq!(catalog_targets.len(), found.len(), "{status}");

    // Every refusal is audited once, with its reason.
    let events = lab.audit("catalog_guest_refused");
    for key in refused {
        let n = events
            .iter()
            .filter(|e| e["details"]["source_key"] == key)
            .count();
        assert_eq!(n, 1, "{key}: {events:?}");
    }
    let tagged = events
        .iter()
        .find(|e| e["details"]["source_key"] == "qemu/120")
        .unwrap();
    assert!(
        tagged["reason"].as_str().unwrap().contains("secure"),
        "{tagged}"
    );
    assert_eq!(tagged["details"]["address"], "192.168.1.20", "{tagged}");
    // Each target added is audited too.
    let added: BTreeSet<String> = lab
        .audit("catalog_target_added")
        .iter()
        .map(|e| e["details"]["source_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(added, found.keys().cloned().collect(), "added events");

    // A second sync changes nothing and audits no refusal again.
    let again = lab.sync();
    assert_eq!(again["changes"], serde_json::json!([]), "{again}");
    assert_eq!(lab.audit("catalog_guest_refused").len(), events.len());

    // Templates and stopped guests are listed, not connectable; a running one is.
    for (name, why) in [("leap154", "template"), ("machine-test", "stopped")] {
        let said = connect_refused(&lab, name);
        assert!(said.contains(why), "{name}: {said}");
    }
    let denied = lab.audit("session_denied");
    for why in ["template", "stopped"] {
        assert!(
            denied
                .iter()
                .any(|e| e["reason"].as_str().unwrap_or("").contains(why)),
            "{denied:?}"
        );
    }
    let (ok, stdout, stderr) = lab.run(&["connect", "web-1", "--exec", "true"]);
    assert!(ok, "connect web-1:\n{stdout}\n{stderr}");

    // `targets list --source` tells discovered and hand-made targets apart.
    let by_cluster: Value =
        serde_json::from_str(&lab.ok(&["targets", "list", "--source", CLUSTER, "--json"])).unwrap();
    assert_eq!(by_cluster.as_array().unwrap().len(), found.len());
    let manual: Value =
        serde_json::from_str(&lab.ok(&["targets", "list", "--source", "manual", "--json"]))
            .unwrap();
    assert!(
        manual
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["source"].is_null()),
        "{manual}"
    );
}

/// `catalog sync --dry-run` prints what a sync would change (a guest gone, one new, an
/// address changed) and changes nothing: the targets and the audit log stay as they were.
/// The real sync then makes exactly those changes. (The controller pins the fake's
/// certificate by its fingerprint here.)
#[test]
fn a_dry_run_prints_the_diff_and_changes_nothing() {
    let lab = Lab::start(Trust::Fingerprint);
    assert_eq!(lab.sync()["outcome"], "ok");
    let before = lab.targets();
    let events = lab.audit_count();

    lab.fake.remove_resource("qemu/121");
    lab.fake.put_guest(cloud_init_guest(
        140,
        "new-vm",
        "node2",
        "192.168.1.40",
        None,
    ));
    lab.fake.set(
        "/nodes/node2/qemu/100/config",
        common::proxmox::Answer::data(common::proxmox::cluster::qemu_config(serde_json::json!({
            "name": "server1", "ipconfig0": "ip=192.168.1.15/24,gw=192.168.1.1" }))),
    );

    let (ok, text, stderr) = lab.run(&["catalog", "sync", "--dry-run"]);
    assert!(ok, "{text}\n{stderr}");
    for word in ["pooled-vm", "new-vm", "server1", "192.168.1.15"] {
        assert!(
            text.contains(word),
            "the dry run's diff lacks {word}:\n{text}"
        );
    }
    let dry: Value = serde_json::from_str(&lab.ok(&[
        "catalog",
        "sync",
        "--dry-run",
        "--cluster",
        CLUSTER,
        "--json",
    ]))
    .unwrap();
    assert_eq!(dry["dry_run"], true, "{dry}");
    let dry = cluster_of(&dry);
    assert_eq!(
        changes(&dry, "removed"),
        BTreeSet::from(["qemu/121".to_owned()]),
        "{dry}"
    );
    assert_eq!(
        changes(&dry, "added"),
        BTreeSet::from(["qemu/140".to_owned()]),
        "{dry}"
    );
    assert_eq!(
        changes(&dry, "changed"),
        BTreeSet::from(["qemu/100".to_owned()]),
        "{dry}"
    );
    assert_eq!(lab.targets(), before, "a dry run changed the targets");
    assert_eq!(
        lab.audit_count(),
        events,
        "a dry run wrote to the audit log"
    );

    let real = lab.sync();
    assert_eq!(
        changes(&real, "removed"),
        changes(&dry, "removed"),
        "{real}"
    );
    assert_eq!(changes(&real, "added"), changes(&dry, "added"), "{real}");
    assert_eq!(
        changes(&real, "changed"),
        changes(&dry, "changed"),
        "{real}"
    );
    let found = lab.discovered();
    assert!(!found.contains_key("qemu/121"));
    assert_eq!(
        found["qemu/140"]["address"],
        format!("192.168.1.40:{}", lab.sshd.port)
    );
    assert_eq!(
        found["qemu/100"]["address"],
        format!("192.168.1.15:{}", lab.sshd.port)
    );
    let changed = lab.audit("catalog_target_changed");
    assert!(
        changed
            .iter()
            .any(|e| e["details"]["source_key"] == "qemu/100"),
        "{changed:?}"
    );
    let removed = lab.audit("catalog_target_removed");
    let gone = removed
        .iter()
        .find(|e| e["details"]["source_key"] == "qemu/121")
        .unwrap_or_else(|| panic!("{removed:?}"));
    assert_eq!(gone["reason"], "gone", "{gone}");
}

/// A guest that disappears from the cluster, or moves to a zone the user may not reach,
/// ends its live session at the next sync, as a policy change does (`policy_changed`);
/// other sessions stay.
#[test]
fn a_removed_guests_live_session_ends() {
    let lab = Lab::start(Trust::CaFile);
    assert_eq!(lab.sync()["outcome"], "ok");
    let listener = common::client::listen(lab.cli(), "web-1");
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", listener.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 8];
    std::io::Read::read_exact(&mut conn, &mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-", "the sshd behind web-1 answers");
    // The other guest's session stays.
    let other = common::client::listen(lab.cli(), "web-2");

    lab.fake.remove_resource("qemu/130");
    let report = lab.sync();
    assert_eq!(
        changes(&report, "removed"),
        BTreeSet::from(["qemu/130".to_owned()]),
        "{report}"
    );
    assert_eq!(report["sessions_ended"], 1, "{report}");
    let token = lab.dev.var("PORTCULLIS_TOKEN");
    let session = |id: &str| -> Value {
        let (_, text) = curl(
            &lab.dev,
            "GET",
            &format!("/v1/sessions/{id}"),
            Some(&token),
            None,
        );
        serde_json::from_str(&text).unwrap()
    };
    let ended = poll(
        "the removed guest's session to end",
        Duration::from_secs(30),
        || {
            let s = session(&listener.session_id);
            match s["state"].as_str() {
                Some("pending" | "active") | None => Err(s.to_string()),
                Some(_) => Ok(s),
            }
        },
    );
    assert_eq!(ended["termination_reason"], "policy_changed", "{ended}");
    common::client::closes_within(&mut conn, Duration::from_secs(30));
    let kept = session(&other.session_id);
    assert!(
        matches!(kept["state"].as_str(), Some("pending" | "active")),
        "{kept}"
    );
    assert!(
        lab.targets().iter().all(|t| t["name"] != "web-1"),
        "web-1 is still a target"
    );

    // The other guest moves to an address in a zone no cell leads to: its session ends too.
    lab.fake
        .put_guest(cloud_init_guest(131, "web-2", "node1", "192.0.2.10", None));
    let report = lab.sync();
    assert_eq!(
        changes(&report, "changed"),
        BTreeSet::from(["qemu/131".to_owned()]),
        "{report}"
    );
    assert_eq!(report["sessions_ended"], 1, "{report}");
    let moved = poll(
        "the moved guest's session to end",
        Duration::from_secs(30),
        || {
            let s = session(&other.session_id);
            match s["state"].as_str() {
                Some("pending" | "active") | None => Err(s.to_string()),
                Some(_) => Ok(s),
            }
        },
    );
    assert_eq!(moved["termination_reason"], "policy_changed", "{moved}");
    let web2 = &lab.discovered()["qemu/131"];
    assert_eq!(web2["zone"], "DENIED", "{web2}");
}

/// An outage keeps the last good catalog and says so: the sync fails (non-zero exit, the
/// error printed), the targets stay, `catalog list` shows the catalog stale with the error,
/// `catalog_sync_failed` is audited; once the API is back a sync succeeds again.
#[test]
fn an_outage_keeps_the_last_good_catalog_and_says_so() {
    let mut lab = Lab::start(Trust::CaFile);
    assert_eq!(lab.sync()["outcome"], "ok");
    let before = lab.targets();
    lab.fake.pause();

    let (ok, stdout, stderr) = lab.run(&["catalog", "sync"]);
    assert!(
        !ok,
        "a sync during an outage succeeded:\n{stdout}\n{stderr}"
    );
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains(&lab.fake.url()) || said.contains("no Proxmox API answered"),
        "{said}"
    );
    assert_eq!(lab.targets(), before, "the outage changed the targets");
    let status = lab.catalog();
    assert_eq!(status["stale"], true, "{status}");
    let error = status["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status}"));
    assert!(error.contains("no Proxmox API answered"), "{error}");
    assert!(status["last_success_at"].is_u64(), "{status}");
    let failed = lab.audit("catalog_sync_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["details"]["cluster"], CLUSTER);
    assert_eq!(
        failed[0]["details"]["kept_targets"].as_u64(),
        Some(lab.discovered().len() as u64),
        "{}",
        failed[0]
    );
    let (text_ok, list, _) = lab.run(&["catalog", "list"]);
    assert!(text_ok);
    assert!(list.to_lowercase().contains("stale"), "{list}");

    lab.fake.resume();
    let report = lab.sync();
    assert_eq!(report["outcome"], "ok", "{report}");
    assert_eq!(report["changes"], serde_json::json!([]), "{report}");
    let status = lab.catalog();
    assert_eq!(status["stale"], false, "{status}");
    assert!(status["last_error"].is_null(), "{status}");
}

/// The API is never used unverified: with another cluster's CA, or another node's pinned
/// fingerprint, the sync fails at TLS with a sentence saying so, the fake never sees a
/// request (the token is not sent to a server that did not prove itself), and nothing is
/// discovered.
#[test]
fn an_api_whose_certificate_does_not_verify_never_sees_the_token() {
    for trust in [Trust::OtherCa, Trust::OtherFingerprint] {
        let lab = Lab::start(trust);
        let (ok, stdout, stderr) = lab.run(&["catalog", "sync"]);
        assert!(!ok, "{trust:?}: a sync succeeded:\n{stdout}");
        let said = format!("{stdout}{stderr}").to_lowercase();
        assert!(
            said.contains("certificate") || said.contains("fingerprint"),
            "{trust:?}: {said}"
        );
        assert!(
            lab.fake.requests().is_empty(),
            "{trust:?}: the fake got requests: {:?}",
            lab.fake.requests()
        );
        assert!(lab.discovered().is_empty(), "{trust:?}");
        let status = lab.catalog();
        assert!(status["last_error"].is_string(), "{trust:?}: {status}");
        assert!(status["last_success_at"].is_null(), "{trust:?}: {status}");
    }
}

/// The controller syncs on its own every `interval`: a guest gone from the cluster goes
/// from the targets without anyone asking, audited as the system's doing; a sync of a
/// cluster that is not configured is refused, naming the configured ones.
#[test]
fn the_controller_syncs_every_interval_on_its_own() {
    let lab = Lab::start_every(Trust::CaFile, "2s");
    assert!(lab.discovered().contains_key("qemu/121"));
    lab.fake.remove_resource("qemu/121");
    poll(
        "the periodic sync to remove the gone guest",
        Duration::from_secs(30),
        || {
            let found = lab.discovered();
            if found.contains_key("qemu/121") {
                Err(format!("{:?}", found.keys()))
            } else {
                Ok(())
            }
        },
    );
    let removed = lab.audit("catalog_target_removed");
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["details"]["source_key"], "qemu/121");
    assert!(
        removed[0]["actor"].to_string().contains("system"),
        "{}",
        removed[0]
    );
    assert!(lab.audit("catalog_synced").len() >= 2);

    let (ok, stdout, stderr) = lab.run(&["catalog", "sync", "--cluster", "nope"]);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("nope") && stderr.contains(CLUSTER),
        "{stderr}"
    );
}

/// `catalog sync --json` on `c`: its report of [`CLUSTER`], whatever the exit code.
fn sync_on(c: &Controller) -> Value {
    let out = c
        .cli()
        .args(["catalog", "sync", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    cluster_of(&report)
}

/// With several controllers on one store, one syncs a cluster at a time (the store's
/// lease): while one waits on Proxmox, a sync asked of the other is `busy` and changes
/// nothing; once the first is done, the other syncs.
#[test]
fn several_controllers_sync_a_cluster_one_at_a_time() {
    let fake = FakeProxmox::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, self::policy(22)).unwrap();
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::pg::fresh_database());
    let catalog = catalog_config(
        &fake,
        &dir.path().join("proxmox.token"),
        Trust::CaFile,
        "1h",
    );
    let start = |name: &str| {
        Controller::start_policy(
            &Place::host(),
            &dir.path().join(name),
            &url,
            &policy,
            "",
            &format!("\n{catalog}"),
        )
    };
    let a = start("a");
    let synced = |c: &Controller| -> Value {
        let out = c
            .cli()
            .args(["catalog", "list", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster_of(&serde_json::from_slice(&out.stdout).unwrap())
    };
    poll(
        "the first controller's first sync",
        Duration::from_secs(60),
        || {
            let status = synced(&a);
            if status["last_success_at"].is_u64() {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    );
    let b = start("b");
    let targets = synced(&b)["targets"].clone();
    assert!(!targets.as_array().unwrap().is_empty());

    // Proxmox holds a refused token's answer back for 3 s: a's sync holds the lease so long.
    fake.with(|s| s.token = "portcullis@pve!discovery=00000000-0000-0000-0000-000000000000".into());
    fake.clear_requests();
    let slow = a
        .cli()
        .args(["catalog", "sync", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    poll("a's sync to reach Proxmox", Duration::from_secs(10), || {
        if fake.requests().is_empty() {
            Err("not yet")
        } else {
            Ok(())
        }
    });
    let busy = sync_on(&b);
    let out = slow.wait_with_output().unwrap();
    let failed = cluster_of(&serde_json::from_slice(&out.stdout).unwrap());
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert_eq!(busy["outcome"], "busy", "{busy}");
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.path == "/nodes")
            .count(),
        1,
        "b asked Proxmox too: {:?}",
        fake.requests()
    );
    assert_eq!(synced(&b)["targets"], targets);

    fake.with(|s| s.token = TOKEN.into());
    let ok = sync_on(&b);
    assert_eq!(ok["outcome"], "ok", "{ok}");
    assert_eq!(synced(&a)["stale"], false);
}

/// Discovery only reads: every request the controller sent was a GET carrying the
/// discovery token. A token Proxmox refuses fails the sync with a sentence about the token,
/// after Proxmox's 3 s delay, which holds up nothing else (the API answers meanwhile);
/// nothing changes but the audited failure, which does not carry the secret.
#[test]
fn discovery_only_reads_with_the_token_and_a_refused_token_changes_nothing() {
    let lab = Lab::start(Trust::CaFile);
    assert_eq!(lab.sync()["outcome"], "ok");
    let requests = lab.fake.requests();
    assert!(
        requests.iter().all(|r| r.method == "GET" && r.authorized),
        "{requests:?}"
    );
    for path in ["/cluster/resources?type=vm", "/nodes/node2/qemu/100/config"] {
        assert!(
            requests.iter().any(|r| r.path == path),
            "no GET {path}: {requests:?}"
        );
    }

    let before = lab.targets();
    let events = lab.audit_count();
    // Proxmox no longer accepts the controller's token (revoked, expired).
    lab.fake
        .with(|s| s.token = "portcullis@pve!discovery=00000000-0000-0000-0000-000000000000".into());
    lab.fake.clear_requests();
    let started = std::time::Instant::now();
    let sync = lab
        .cli()
        .args(["catalog", "sync"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the sync waits out the delayed 401, the controller goes on answering.
    poll("the sync's first request", Duration::from_secs(10), || {
        if lab.fake.requests().is_empty() {
            Err("none yet")
        } else {
            Ok(())
        }
    });
    assert_eq!(lab.targets(), before);
    let answered = started.elapsed();
    let out = sync.wait_with_output().unwrap();
    let took = started.elapsed();
    assert!(
        answered < took,
        "the API answered only after the sync ended ({answered:?}, {took:?})"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("401") && said.to_lowercase().contains("token"),
        "{said}"
    );
    assert!(
        took >= Duration::from_secs(3),
        "the 401 came back in {took:?}"
    );
    let requests = lab.fake.requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.method == "GET" && !r.authorized),
        "{requests:?}"
    );
    assert_eq!(lab.targets(), before);
    let failed = lab.audit("catalog_sync_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("401"),
        "{}",
        failed[0]
    );
    assert_eq!(
        lab.audit_count(),
        events + 1,
        "only catalog_sync_failed is new"
    );
    assert!(
        !failed[0].to_string().contains("5f0c2b7e"),
        "the token's secret is in an event"
    );
}

/// The directory of Ansible's commands (scripts/test installs ansible-core and exports
/// `PORTCULLIS_TEST_ANSIBLE_PLAYBOOK`).
fn ansible_bin() -> PathBuf {
    let playbook = std::env::var("PORTCULLIS_TEST_ANSIBLE_PLAYBOOK").map_or_else(
        |_| {
            let home = std::env::var("HOME").unwrap();
            std::path::Path::new(&home).join(".cache/portcullis-test/ansible/bin/ansible-playbook")
        },
        PathBuf::from,
    );
    assert!(
        playbook.exists(),
        "ansible-playbook not found at {}: run the suite with scripts/test, which installs ansible-core",
        playbook.display()
    );
    playbook.parent().unwrap().to_owned()
}

/// `bash -c LINE` with the dev stack's environment, `portcullis` on PATH and Ansible's
/// settings under `dir`; (success, stdout, stderr).
fn bash(lab: &Lab, dir: &std::path::Path, line: &str) -> (bool, String, String) {
    let portcullis_dir = std::path::Path::new(common::dev::bin()).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        ansible_bin().display(),
        portcullis_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(line)
        .envs(lab.dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORTCULLIS_LOG", "warn")
        .env("PATH", path)
        .env("XDG_RUNTIME_DIR", dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The hosts of an `ansible-inventory --list` group.
fn group(listed: &Value, name: &str) -> BTreeSet<String> {
    listed[name]["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no group {name} in {listed}"))
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

/// `ansible-inventory -i <(portcullis inventory --ansible) --list` accepts the inventory
/// and groups the discovered guests by zone, tag, pool, node and cluster; a playbook given
/// the same inventory runs a command on two discovered guests through Portcullis (sshd
/// names the session certificates, the connections come from the worker). What an admin
/// set on discovered targets by hand (pinned host keys, tags) survives the next sync.
#[test]
fn ansible_reads_the_inventory_and_runs_a_playbook_on_discovered_guests() {
    let lab = Lab::start(Trust::CaFile);
    assert_eq!(lab.sync()["outcome"], "ok");
    for (_, name, _) in SSH_GUESTS {
        lab.ok(&[
            "targets",
            "update",
            name,
            "--ssh-host-key",
            &lab.sshd.host_key_pub,
        ]);
    }
    // A field the sync owns, changed by hand, is an override.
    lab.ok(&["targets", "update", "server1", "--tag", "pinned-by-hand"]);
    let report = lab.sync();
    assert_eq!(report["changes"], serde_json::json!([]), "{report}");
    let found = lab.discovered();
    let web1 = &found["qemu/130"];
    assert_eq!(
        web1["ssh_host_keys"],
        serde_json::json!([lab.sshd.host_key_pub]),
        "{web1}"
    );
    let server1 = &found["qemu/100"];
    assert_eq!(
        server1["tags"],
        serde_json::json!(["pinned-by-hand"]),
        "{server1}"
    );
    assert_eq!(
        server1["source"]["overrides"],
        serde_json::json!(["tags"]),
        "{server1}"
    );

    let dir = lab.work.path().join("ansible");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(
        dir.join("ansible.cfg"),
        "[defaults]\nforks = 2\nhost_key_checking = True\n\
         [ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPersist=no\npipelining = True\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = bash(
        &lab,
        &dir,
        "ansible-inventory -i <(portcullis inventory --ansible) --list",
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("[WARNING]"),
        "Ansible warned about the inventory:\n{stderr}"
    );
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    let hostvars = listed["_meta"]["hostvars"].as_object().unwrap();
    for host in [
        "web-1",
        "web-2",
        "server1",
        "pooled-vm",
        "ct-test-1",
        "agent-vm",
    ] {
        assert!(
            hostvars.contains_key(host),
            "{host} is not in the inventory: {stdout}"
        );
        let args = hostvars[host]["ansible_ssh_common_args"]
            .as_str()
            .unwrap_or_default();
        assert!(args.contains("-F "), "{host}: {args}");
    }
    assert!(
        !hostvars.contains_key("tagged-secure"),
        "a refused guest is listed"
    );
    assert_eq!(
        group(&listed, "zone_LOCAL"),
        BTreeSet::from(["web-1".into(), "web-2".into()])
    );
    let lab_zone = group(&listed, "zone_LAB");
    assert!(
        lab_zone.contains("server1") && lab_zone.contains("pooled-vm"),
        "{lab_zone:?}"
    );
    assert!(group(&listed, "zone_CT").contains("ct-test-1"));
    let prod = group(&listed, "tag_prod");
    assert!(
        prod.contains("pooled-vm") && prod.contains("ct-test-1"),
        "{prod:?}"
    );
    assert_eq!(
        group(&listed, "pool_test_pool"),
        BTreeSet::from(["pooled-vm".into()])
    );
    assert!(group(&listed, "node_node1").contains("web-1"));
    assert!(group(&listed, "node_node2").contains("server1"));
    let all_discovered: BTreeSet<String> = listed["proxmox_lab"]["hosts"]
        .as_array()
        .map(|a| a.iter().map(|h| h.as_str().unwrap().to_owned()).collect())
        .unwrap_or_else(|| group(&listed, "proxmox_lab"));
    assert!(all_discovered.contains("web-2"), "{all_discovered:?}");

    std::fs::write(
        dir.join("play.yml"),
        "- hosts: zone_LOCAL\n  gather_facts: false\n  tasks:\n\
         \x20   - command: echo {{ inventory_hostname }}\n      register: out\n\
         \x20   - assert:\n        that: out.stdout == inventory_hostname\n",
    )
    .unwrap();
    let user = login_user();
    let (ok, stdout, stderr) = bash(
        &lab,
        &dir,
        &format!(
            "ansible-playbook -i <(portcullis inventory --ansible) -u {user} \
             -e ansible_python_interpreter=/usr/bin/python3 play.yml"
        ),
    );
    assert!(ok, "{stdout}\n{stderr}\nsshd:\n{}", lab.sshd.log());
    for host in ["web-1", "web-2"] {
        let recap = stdout
            .lines()
            .find(|l| l.starts_with(host) && l.contains("ok="))
            .unwrap_or_else(|| panic!("no recap of {host}:\n{stdout}"));
        assert!(
            recap.contains("ok=2") && recap.contains("failed=0"),
            "{recap}"
        );
    }
    // Through Portcullis: session certificates, from the worker's address.
    let log = lab.sshd.log();
    let sessions: BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey") && l.contains("from 127.0.0.2"))
        .filter_map(|l| l.split("ID ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert!(sessions.len() >= 2, "{log}");
}
