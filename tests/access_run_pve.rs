//! `portcullis run` with the Proxmox API listener (issue 25): under one approved run, the
//! command starts `portcullis connect pve-1 --exec` and a Terraform-like sequence of reads
//! and one write goes through loopback HTTPS with the local secret, then `connect pve-1` on
//! its default unix socket serves one more read; both sessions are the run's, the fake
//! Proxmox API sees only the tokens the controller minted for them (the command holds no
//! Proxmox secret and no Portcullis token), and a target outside the run is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use common::catalog::{catalog_config, cluster_of, Trust, CLUSTER};
use common::console::{enrol_for_token, stack_with};
use common::dev::{bin, curl, Dev};
use common::proxmox::access::{MANAGEMENT_TOKEN, SERVICE_USER};
use common::proxmox::{FakeProxmox, TOKEN};
use common::wait::poll;

/// The run's target, and one on the same fake that the run does not list.
const TARGET: &str = "pve-1";
const OUTSIDE: &str = "pve-2";

/// Role `terraform` (Proxmox identity `svc-terraform`, PVEVMAdmin on /vms) is requestable
/// only: the dev identity (group `admins`) gets its grant through a request a lead approves.
fn policy(pve_port: u16) -> String {
    format!(
        r#"[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
trust = "high"
cidrs = ["127.0.0.0/8"]

[[service]]
name = "proxmox-api"
ports = [{pve_port}]

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["proxmox-api"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "workers:admin", "sessions:read-all", "sessions:cancel-any", "audit:read"]

[[role]]
name = "terraform"
groups = ["admins"]
proxmox = {{ user = "svc-terraform", roles = ["PVEVMAdmin"], paths = ["/vms"] }}
[[role.grant]]
zones = ["LOCAL"]
services = ["proxmox-api"]
[role.requestable]
approvers = ["leads"]
max_duration = "1h"
"#
    )
}

/// What the `--exec` command runs: a provider's configure (version, nodes), the next free
/// id, one create, and a read back; each answer in OUT/NAME.json. It also records whether a
/// Portcullis token reached its environment.
const TERRAFORM_LIKE: &str = r#"set -e
out="$1"
api="${PROXMOX_VE_ENDPOINT}api2/json"
c() { curl -sSf --max-time 30 -H "Authorization: PVEAPIToken=$PROXMOX_VE_API_TOKEN" "$@"; }
c "$api/version" > "$out/version.json"
c "$api/nodes" > "$out/nodes.json"
c "$api/cluster/nextid" > "$out/nextid.json"
vmid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"])' "$out/nextid.json")
c -X POST --data "vmid=$vmid&name=tf-vm&cores=1&memory=512" "$api/nodes/node1/qemu" > "$out/create.json"
c "$api/nodes/node1/qemu/$vmid/config" > "$out/config.json"
if env | grep -q '^PORTCULLIS_TOKEN='; then echo token > "$out/leak"; fi
"#;

/// The run's command: the sequence through `connect --exec`, a read through the default
/// socket of `connect pve-1` (its listening line read from a fifo: the socket is there once
/// it is printed), then `connect pve-2`, which must be refused.
const RUN_SCRIPT: &str = r#"set -e
pc="$1"; out="$2"
"$pc" connect pve-1 --exec sh -- "$out/tf.sh" "$out"
mkfifo "$out/line"
"$pc" connect pve-1 --json > "$out/line" &
pid=$!
exec 3< "$out/line"
read -r line <&3
printf '%s\n' "$line" > "$out/listening.json"
curl -sSf --max-time 30 --unix-socket "$XDG_RUNTIME_DIR/portcullis/pve-1.sock" \
  http://pve/api2/json/cluster/resources > "$out/resources.json"
kill -TERM "$pid"
wait "$pid"
if "$pc" connect pve-2 --exec true 2> "$out/outside.err"; then exit 11; fi
exit 0
"#;

struct Lab {
    fake: FakeProxmox,
    dev: Dev,
    work: tempfile::TempDir,
    lead: String,
}

impl Lab {
    fn start() -> Lab {
        let fake = FakeProxmox::start();
        fake.with(|s| s.unauthorized_delay = Duration::ZERO);
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        let manage = w.join("pve-sessions.token");
        std::fs::write(&manage, format!("{MANAGEMENT_TOKEN}\n")).unwrap();
        std::fs::set_permissions(&manage, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = catalog_config(&fake, &w.join("proxmox.token"), Trust::CaFile, "1h")
            + &format!(
                "\n[catalog.proxmox.sessions]\nrealm = \"pve\"\ntoken_file = \"{}\"\npaths = [\"/vms\"]\n",
                manage.display()
            );
        for dir in ["config", "cache", "run", "out"] {
            std::fs::create_dir(w.join(dir)).unwrap();
            std::fs::set_permissions(w.join(dir), std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let dev = stack_with(w, &config, &policy(fake.port), &[("lead1", "leads")], &[]);
        let lab = Lab {
            fake,
            dev,
            work,
            lead: String::new(),
        };
        poll(
            "the first sync of the fake cluster",
            Duration::from_secs(60),
            || {
                let v: Value = serde_json::from_str(&lab.ok(&["catalog", "list", "--json"]))
                    .map_err(|e| e.to_string())?;
                let status = cluster_of(&v);
                if status["last_attempt_at"].is_u64() {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            },
        );
        let address = format!("127.0.0.1:{}", lab.fake.port);
        for name in [TARGET, OUTSIDE] {
            lab.ok(&[
                "targets",
                "create",
                name,
                "--address",
                &address,
                "--service",
                "proxmox-api",
                "--proxmox-cluster",
                CLUSTER,
            ]);
        }
        let lead = enrol_for_token(&lab.dev, "lead1").2;
        Lab { lead, ..lab }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `portcullis` as the dev identity, with the CLI's directories under `work`.
    fn cli(&self) -> std::process::Command {
        let mut cmd = self.dev.cli();
        cmd.env("XDG_CONFIG_HOME", self.dir("config"))
            .env("XDG_CACHE_HOME", self.dir("cache"))
            .env("XDG_RUNTIME_DIR", self.dir("run"));
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "portcullis {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn as_lead(&self, method: &str, path: &str) -> Value {
        let (status, text) = curl(&self.dev, method, path, Some(&self.lead), Some("{}"));
        assert!((200..300).contains(&status), "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// The file's JSON `data`.
fn data(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Value>(&text).unwrap()["data"].clone()
}

/// Regular files under `dir` whose bytes contain `needle` (the fifo is left alone).
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file()
            && std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_terraform_like_sequence_runs_through_the_pve_listener_under_one_approved_run() {
    let lab = Lab::start();
    let out = lab.dir("out");
    std::fs::write(out.join("tf.sh"), TERRAFORM_LIKE).unwrap();
    // In a file: the request records the command line, which may hold no newline.
    std::fs::write(out.join("run.sh"), RUN_SCRIPT).unwrap();
    let log = lab.dir("run.stderr");
    let mut run = lab
        .cli()
        .args([
            "run",
            "--role",
            "terraform",
            "--targets",
            TARGET,
            "--for",
            "10m",
            "--reason",
            "tf apply",
            "--",
            "sh",
        ])
        .arg(out.join("run.sh"))
        .arg(bin())
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    let id = poll(
        "the run's request to be pending",
        Duration::from_secs(30),
        || {
            let list = lab.as_lead("GET", "/v1/requests?state=pending");
            list["items"][0]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("none yet: {list}\nrun:\n{}", said()))
        },
    );
    lab.as_lead("POST", &format!("/v1/requests/{id}/approve"));
    let status = common::cluster::wait_exit(&mut run, Duration::from_secs(120));
    assert!(status.success(), "{status}\nrun:\n{}", said());

    // The command's sequence got Proxmox's answers.
    assert!(data(&out.join("version.json"))["version"].is_string());
    assert!(data(&out.join("nodes.json"))
        .as_array()
        .is_some_and(|n| !n.is_empty()));
    let upid = data(&out.join("create.json"));
    assert!(
        upid.as_str().is_some_and(|u| u.starts_with("UPID:")),
        "{upid}"
    );
    assert_eq!(data(&out.join("config.json"))["name"], "tf-vm");
    assert!(data(&out.join("resources.json")).is_array());
    assert!(
        !out.join("leak").exists(),
        "a Portcullis token reached the command"
    );
    let listening: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("listening.json")).unwrap())
            .unwrap();
    let outside = std::fs::read_to_string(out.join("outside.err")).unwrap();
    assert!(
        outside.contains("pve-2 is not one of this run's targets"),
        "{outside}"
    );

    // Both sessions are the run's, and the run finished with the command's 0.
    let request = lab.as_lead("GET", &format!("/v1/requests/{id}"));
    let run_view = &request["run"];
    assert_eq!(run_view["exit_status"], 0, "{request}");
    let sessions: Vec<String> = run_view["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sessions.len(), 2, "{request}");
    assert!(
        sessions
            .iter()
            .any(|s| listening["session_id"] == s.as_str()),
        "{listening} {sessions:?}"
    );
    let audit = lab.ok(&["audit", "list", "--run", &id, "--json"]);
    assert_eq!(audit.matches("\"run_finished\"").count(), 1, "{audit}");

    // Proxmox saw only the tokens minted for the run's sessions, on every request of the
    // command, and the local secret never reached it.
    let minted: Vec<String> = sessions
        .iter()
        .map(|s| portcullis_proto::pve::token_id_for(SERVICE_USER, s))
        .collect();
    let controllers: Vec<&str> = [TOKEN, MANAGEMENT_TOKEN]
        .iter()
        .filter_map(|t| t.rsplit_once('=').map(|(id, _)| id))
        .collect();
    let seen: Vec<_> = lab
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.token_id
                .as_deref()
                .is_none_or(|id| !controllers.contains(&id))
        })
        .collect();
    let paths: Vec<String> = seen
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for expected in [
        "GET /version",
        "GET /nodes",
        "GET /cluster/nextid",
        "POST /nodes/node1/qemu",
        "GET /cluster/resources",
    ] {
        assert!(paths.iter().any(|p| p == expected), "{expected}: {paths:?}");
    }
    for r in &seen {
        assert!(r.authorized, "{r:?}");
        assert!(
            r.token_id.as_ref().is_some_and(|t| minted.contains(t)),
            "{r:?} {minted:?}"
        );
        assert!(
            r.header(portcullis_proto::pve::LOCAL_SECRET_HEADER)
                .is_none(),
            "{r:?}"
        );
        // The injected secret is nowhere the command or the CLI wrote.
        let secret = r
            .authorization
            .as_deref()
            .unwrap()
            .rsplit('=')
            .next()
            .unwrap();
        assert!(
            files_containing(lab.work.path(), secret).is_empty(),
            "{r:?}"
        );
    }
    // No session to the target outside the run.
    let admin = lab.dev.var("PORTCULLIS_TOKEN");
    let (_, listed) = curl(
        &lab.dev,
        "GET",
        "/v1/sessions?limit=500",
        Some(&admin),
        None,
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let outside_sessions = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["target_name"] == OUTSIDE)
        .count();
    assert_eq!(outside_sessions, 0, "{listed}");
    // The run ended its sessions: their tokens are gone from Proxmox.
    poll(
        "the run's tokens to be gone",
        Duration::from_secs(30),
        || {
            let left: Vec<String> = lab
                .fake
                .tokens()
                .into_keys()
                .filter(|t| minted.contains(t))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
}
