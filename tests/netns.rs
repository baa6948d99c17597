//! The zone matrix as real network boundaries: each zone is a network namespace behind a
//! router namespace that runs `portcullis policy export --format nftables` of the seed
//! policy. Direct traffic across a deny cell is dropped, a brokered session across a
//! broker-only cell passes, and a worker reaches nothing the matrix denies it: neither on
//! the network nor through the controller.
//!
//! Each check is made first without the ruleset (the traffic passes) and then with it, so a
//! drop is the ruleset's doing. Skipped, with the reason, where namespaces cannot be made.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::cluster::{Controller, Worker};
use common::dev::bin;
use common::netns::{reach, ready_or_skip, Echo, Lab, Reach};
use common::wait::wait_for;

/// How long a probe waits before calling a connection dropped.
const PROBE: Duration = Duration::from_secs(2);

/// The workers' proxy port and the port controllers dial them on (outbound only).
const PROXY_PORT: u16 = 9202;
const CLUSTER_PORT: u16 = 9203;

/// The seed policy, plus two cells:
/// - the one path Portcullis itself needs through a firewall that sits between the admin
///   zone and the workers: clients to the workers' proxy port and the controller dialling
///   the workers' cluster port (the seed's control plane is outbound only);
/// - VAULT's API reachable from the admin zone through a session only (broker-only), while
///   the broker's own leg to VAULT stays closed: the matrix denies it to the workers, so no
///   session can reach it and neither can a worker on its own.
fn policy() -> String {
    let seed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.toml"))
        .unwrap();
    format!(
        "{seed}\n\
         [[service]]\nname = \"portcullis\"\nports = [{PROXY_PORT}, {CLUSTER_PORT}]\n\n\
         [[cell]]\nfrom = \"ON-PREM-ADMIN\"\nto = \"BROKER\"\naccess = \"allow\"\n\
         services = [\"portcullis\"]\nnote = \"Clients and controllers reach the workers\"\n\n\
         [[cell]]\nfrom = \"ON-PREM-ADMIN\"\nto = \"VAULT\"\naccess = \"broker-only\"\n\
         services = [\"vault-api\"]\n"
    )
}

/// `portcullis policy export --format nftables` of the policy at `path`.
fn export(path: &Path, worker: Ipv4Addr) -> String {
    let out = std::process::Command::new(bin())
        .args(["policy", "export", "--format", "nftables", "--policy"])
        .arg(path)
        .args(["--worker-addr", &worker.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn direct_traffic_across_a_deny_cell_is_dropped_by_the_exported_ruleset() {
    if !ready_or_skip("direct_traffic_across_a_deny_cell_is_dropped_by_the_exported_ruleset") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy()).unwrap();

    let mut lab = Lab::new();
    let workloads = lab.zone("workloads", Ipv4Addr::new(10, 40, 0, 10));
    let other_segment = lab.zone("workloads-s1", Ipv4Addr::new(10, 40, 1, 10));
    let mgmt = lab.zone("proxmox-mgmt", Ipv4Addr::new(10, 20, 0, 10));
    let core = lab.zone("core-infra", Ipv4Addr::new(10, 30, 0, 10));
    let proxmox_api = Echo::start(&mgmt, 8006);
    let iam = Echo::start(&core, 443);
    let neighbour_ssh = Echo::start(&other_segment, 22);

    // WORKLOADS -> PROXMOX-MGMT is X; WORKLOADS -> CORE-INFRA admits iam-token (443);
    // WORKLOADS -> WORKLOADS admits ssh within one microsegment only.
    let denied = [proxmox_api.addr, neighbour_ssh.addr];
    for to in denied.iter().chain([&iam.addr]) {
        assert_eq!(
            reach(&workloads, *to, PROBE),
            Reach::Echoed,
            "{to} is unreachable before any ruleset: the lab is broken"
        );
    }

    lab.load_ruleset(&export(&path, Ipv4Addr::new(10, 10, 5, 10)));
    assert!(lab.ruleset().contains("table inet portcullis"));
    for to in denied {
        assert_eq!(
            reach(&workloads, to, PROBE),
            Reach::TimedOut,
            "WORKLOADS reached {to} across a deny cell"
        );
    }
    assert_eq!(
        reach(&workloads, iam.addr, PROBE),
        Reach::Echoed,
        "the allow cell WORKLOADS -> CORE-INFRA (iam-token) was dropped"
    );
}

#[test]
fn a_brokered_session_crosses_a_broker_only_cell_and_the_worker_reaches_nothing_denied() {
    if !ready_or_skip(
        "a_brokered_session_crosses_a_broker_only_cell_and_the_worker_reaches_nothing_denied",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netns-policy.toml");
    std::fs::write(&path, policy()).unwrap();

    let mut lab = Lab::new();
    let admin = lab.zone("on-prem-admin", Ipv4Addr::new(10, 10, 1, 10));
    let broker = lab.zone("broker", Ipv4Addr::new(10, 10, 5, 10));
    let workloads = lab.zone("workloads", Ipv4Addr::new(10, 40, 0, 10));
    let vault = lab.zone("vault", Ipv4Addr::new(10, 10, 6, 10));
    let ssh = Echo::start(&workloads, 22);
    let vault_api = Echo::start(&vault, 8200);
    assert_eq!(reach(&admin, ssh.addr, PROBE), Reach::Echoed);
    assert_eq!(reach(&broker, vault_api.addr, PROBE), Reach::Echoed);

    lab.load_ruleset(&export(&path, Ipv4Addr::new(10, 10, 5, 10)));
    // ON-PREM-ADMIN -> WORKLOADS is broker-only: no direct path for the admin zone.
    assert_eq!(
        reach(&admin, ssh.addr, PROBE),
        Reach::TimedOut,
        "the admin zone reached a workload directly across a broker-only cell"
    );
    // BROKER -> VAULT is not in the matrix (a deny): the worker's own leg is dropped, even
    // though the admin zone's cell to VAULT is broker-only.
    assert_eq!(
        reach(&broker, vault_api.addr, PROBE),
        Reach::TimedOut,
        "the broker zone reached VAULT, which the matrix denies it"
    );

    // A controller in the admin zone dials the worker in the broker zone through the router.
    let c = Controller::start_in(
        &admin,
        &dir.path().join("controller"),
        &format!(
            "sqlite://{}",
            dir.path().join("controller/portcullis.db").display()
        ),
        &format!("dial_workers = [\"{}:{CLUSTER_PORT}\"]", broker.ip),
        "",
    );
    std::fs::copy(&path, c.dir.join("policy.toml")).unwrap();
    let (code, text) = c.curl("POST", "/v1/policy/reload", None);
    assert_eq!(code, 200, "{text}");
    let token = c.join_token();
    let w = Worker::start_in(
        &broker,
        PROXY_PORT,
        &dir.path().join("worker"),
        &[],
        Some(&token),
        &format!("cluster_listen = \"{}:{CLUSTER_PORT}\"", broker.ip),
    )
    .unwrap();
    wait_for("the worker to be active", Duration::from_secs(20), || {
        let (_, text) = c.curl("GET", &format!("/v1/workers/{}", w.id), None);
        text.contains("\"active\"")
    });
    for (name, to, service, zone) in [
        ("app", ssh.addr, "ssh", "WORKLOADS"),
        ("vault", vault_api.addr, "vault-api", "VAULT"),
    ] {
        let body = serde_json::json!({"name": name, "address": to.to_string(), "zone": zone, "service": service}).to_string();
        let (code, text) = c.curl("POST", "/v1/targets", Some(&body));
        assert_eq!(code, 201, "{text}");
    }

    // The brokered session: client (admin zone) -> worker (broker zone) -> target.
    let (code, back, err) = connect_stdio(&c, "app", b"across the broker-only cell");
    assert!(code == Some(0), "connect app failed ({code:?}): {err}");
    assert_eq!(back, b"across the broker-only cell", "{err}");

    // The controller refuses what the matrix denies the worker, naming the broker's leg.
    let (code, back, err) = connect_stdio(&c, "vault", b"never");
    assert_ne!(code, Some(0), "connect vault succeeded");
    assert!(back.is_empty());
    assert!(
        err.contains("denied") && err.contains("BROKER -> VAULT"),
        "{err}"
    );
}

/// `portcullis connect TARGET --stdio` from the controller's place: sends `data`, closes its
/// side, and returns the exit code, what came back and stderr.
fn connect_stdio(c: &Controller, target: &str, data: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = c
        .cli()
        .args(["connect", target, "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&sent);
    });
    let mut back = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut back).unwrap();
    let _ = writer.join();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        back,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
