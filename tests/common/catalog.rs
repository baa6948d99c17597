//! The catalog's end-to-end set-up (tests/catalog.rs): the fake Proxmox API
//! ([`super::proxmox`]), an sshd at the loopback addresses of two of its guests, and
//! `portcullis dev` whose controller syncs the fake, with a policy whose zones match the
//! fake cluster's addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::dev::{curl, Dev};
use super::proxmox::cluster::cloud_init_guest;
use super::proxmox::{FakeProxmox, TOKEN};
use super::sshd::{login_user, Sshd};
use super::wait::poll;

/// The cluster's name in `[[catalog.proxmox]]`.
pub(crate) const CLUSTER: &str = "lab";

/// Guests at loopback addresses where the lab's sshd listens: targets sessions can reach.
pub(crate) const SSH_GUESTS: [(u32, &str, &str); 2] =
    [(130, "web-1", "127.0.0.3"), (131, "web-2", "127.0.0.4")];

/// How the controller checks the fake's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// The fake's CA file.
    CaFile,
    /// The fake's certificate's fingerprint.
    Fingerprint,
    /// Another cluster's CA: the fake's certificate does not verify.
    OtherCa,
    /// Another node's fingerprint (node1's in the recorded /nodes): the fake's does not match.
    OtherFingerprint,
}

/// The zones of the fake cluster's addresses (tests/common/proxmox/cluster.rs), and a
/// loopback zone for the client, the worker and the sshd guests. `ssh` is the sshd's port.
pub(crate) fn policy(ssh_port: u16) -> String {
    format!(
        r#"[settings]
description = "catalog tests: the fake Proxmox cluster's zones"
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
trust = "high"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "PVE-MGMT"
trust = "medium"
cidrs = ["192.168.1.0/29"]

[[zone]]
name = "LAB"
trust = "low"
cidrs = ["192.168.1.0/24"]
pools = ["test-pool"]

[[zone]]
name = "SECURE"
trust = "high"
cidrs = ["10.99.0.0/16"]
tags = ["secure"]

[[zone]]
name = "AGENT"
trust = "low"
cidrs = ["10.0.0.0/24"]
guest_reported_addresses = true

[[zone]]
name = "NOAGENT"
trust = "low"
cidrs = ["10.0.1.0/24"]

[[zone]]
name = "CT"
trust = "low"
cidrs = ["192.168.3.0/24"]
guest_reported_addresses = true

[[zone]]
name = "DENIED"
description = "No cell leads here"
trust = "low"
cidrs = ["192.0.2.0/24"]

[[service]]
name = "ssh"
ports = [{ssh_port}]

[[service]]
name = "proxmox-api"
ports = [8006]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["ssh", "echo"]

{cells}
[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "workers:admin", "sessions:read-all", "sessions:cancel-any", "policy:reload", "audit:read", "users:revoke"]

[[role.grant]]
zones = ["*"]
services = ["*"]
logins = ["{{{{preferred_username}}}}"]
"#,
        cells = ["PVE-MGMT", "LAB", "SECURE", "AGENT", "NOAGENT", "CT"]
            .iter()
            .map(|z| format!(
                "[[cell]]\nfrom = \"LOCAL\"\nto = \"{z}\"\naccess = \"allow\"\nservices = [\"ssh\", \"proxmox-api\"]\n\n"
            ))
            .collect::<String>()
    )
}

/// The fake, an sshd at the loopback guests' addresses, and `portcullis dev` whose
/// controller syncs the fake (`[[catalog.proxmox]]`, every hour: the tests sync on demand).
pub(crate) struct Lab {
    pub fake: FakeProxmox,
    pub dev: Dev,
    pub sshd: Sshd,
    pub work: tempfile::TempDir,
}

impl Lab {
    pub(crate) fn start(trust: Trust) -> Lab {
        Lab::start_every(trust, "1h")
    }

    /// Like [`Lab::start`], the controller syncing every `interval` on its own.
    pub(crate) fn start_every(trust: Trust, interval: &str) -> Lab {
        let fake = FakeProxmox::start();
        for (vmid, name, ip) in SSH_GUESTS {
            fake.put_guest(cloud_init_guest(vmid, name, "node1", ip, None));
        }
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        // sshd first (its port is the policy's ssh port), trusting a throw-away CA until
        // the controller's exists: sshd reads its CA file at each login.
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(w.join("placeholder_ca"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let placeholder = std::fs::read_to_string(w.join("placeholder_ca.pub")).unwrap();
        let user = login_user();
        let listen: String = SSH_GUESTS
            .iter()
            .map(|(_, _, ip)| format!("ListenAddress {ip}\n"))
            .collect();
        let sshd = Sshd::start_configured(&placeholder, &[&user], None, &listen);
        std::fs::write(w.join("policy.toml"), policy(sshd.port)).unwrap();
        // The nodes' zone gets no guest service: a guest there is refused.
        let catalog = catalog_config(&fake, &w.join("proxmox.token"), trust, interval)
            + "default_services = { \"*\" = [\"ssh\"], \"PVE-MGMT\" = [] }\n";
        std::fs::write(w.join("controller.toml"), catalog).unwrap();
        let dev = Dev::start(&[
            "--user",
            &user,
            "--worker-egress",
            "127.0.0.2",
            "--policy",
            w.join("policy.toml").to_str().unwrap(),
            "--config",
            w.join("controller.toml").to_str().unwrap(),
        ]);
        let (code, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
        assert_eq!(code, 200, "{ca}");
        std::fs::write(sshd.path("ca.pub"), format!("{}\n", ca.trim())).unwrap();
        let lab = Lab {
            fake,
            dev,
            sshd,
            work,
        };
        // The controller syncs once as it starts: let that finish, so that each test's own
        // syncs are not refused as busy.
        poll(
            "the controller's first sync of the fake cluster",
            Duration::from_secs(60),
            || {
                let status = lab.catalog();
                if status["last_attempt_at"].is_u64() {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            },
        );
        lab
    }

    /// A `portcullis` command of the dev stack's user.
    pub(crate) fn cli(&self) -> Command {
        self.dev.cli()
    }

    /// Runs `portcullis ARGS`: (success, stdout, stderr).
    pub(crate) fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.cli().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `portcullis ARGS`, which must succeed; its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "portcullis {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    /// `portcullis catalog sync --json`, which must succeed: this cluster's report.
    pub(crate) fn sync(&self) -> Value {
        let report: Value = serde_json::from_str(&self.ok(&["catalog", "sync", "--json"])).unwrap();
        cluster_of(&report)
    }

    /// `portcullis targets list --json`.
    pub(crate) fn targets(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["targets", "list", "--json"])).unwrap();
        v.as_array().unwrap().clone()
    }

    /// The discovered targets, by source key.
    pub(crate) fn discovered(&self) -> BTreeMap<String, Value> {
        self.targets()
            .into_iter()
            .filter_map(|t| {
                let key = t["source"]["key"].as_str()?.to_owned();
                Some((key, t))
            })
            .collect()
    }

    /// `portcullis catalog list --json`: this cluster's status.
    pub(crate) fn catalog(&self) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["catalog", "list", "--json"])).unwrap();
        cluster_of(&v)
    }

    /// Audit events of `kind`, newest first, through the API.
    pub(crate) fn audit(&self, kind: &str) -> Vec<Value> {
        let token = self.dev.var("PORTCULLIS_TOKEN");
        let (code, text) = curl(
            &self.dev,
            "GET",
            &format!("/v1/audit?limit=1000&type={kind}"),
            Some(&token),
            None,
        );
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["items"].as_array().unwrap().clone()
    }

    /// How many audit events there are.
    pub(crate) fn audit_count(&self) -> usize {
        let token = self.dev.var("PORTCULLIS_TOKEN");
        let (code, text) = curl(&self.dev, "GET", "/v1/audit?limit=1000", Some(&token), None);
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["items"].as_array().unwrap().len()
    }
}

/// The entry of [`CLUSTER`] in a `clusters` list (a sync report, the catalog's status).
pub(crate) fn cluster_of(v: &Value) -> Value {
    v["clusters"]
        .as_array()
        .unwrap_or_else(|| panic!("no clusters in {v}"))
        .iter()
        .find(|c| c["cluster"] == CLUSTER)
        .unwrap_or_else(|| panic!("no cluster {CLUSTER} in {v}"))
        .clone()
}

/// The changes of `kind` in a sync report, by key.
pub(crate) fn changes(report: &Value, kind: &str) -> BTreeSet<String> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect()
}

/// The `[[catalog.proxmox]]` of the fake, for a controller's config, with its token
/// written to `token_file` (0600).
pub(crate) fn catalog_config(
    fake: &FakeProxmox,
    token_file: &std::path::Path,
    trust: Trust,
    interval: &str,
) -> String {
    std::fs::write(token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let trust = match trust {
        Trust::CaFile => format!("ca_file = \"{}\"", fake.ca_file.display()),
        Trust::Fingerprint => format!("fingerprint = \"{}\"", fake.fingerprint),
        Trust::OtherCa => {
            let other = token_file.with_file_name("other-ca.pem");
            std::fs::write(&other, super::proxmox::other_ca_pem()).unwrap();
            format!("ca_file = \"{}\"", other.display())
        }
        Trust::OtherFingerprint => format!(
            "fingerprint = \"{}\"",
            super::proxmox::cluster::fixture_data("nodes.json")[0]["ssl_fingerprint"]
                .as_str()
                .unwrap()
        ),
    };
    format!(
        "[[catalog.proxmox]]\nname = \"{CLUSTER}\"\nurls = [\"{}\"]\ntoken_file = \"{}\"\n{trust}\n\
         interval = \"{interval}\"\n",
        fake.url(),
        token_file.display(),
    )
}
