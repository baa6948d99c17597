//! The catalog's and the inventory's commands against a real controller (`portcullis dev`):
//! `portcullis inventory --ansible` read by the real `ansible-inventory` in both forms the
//! docs give, `-i <(portcullis inventory --ansible)` (Ansible's yaml plugin) and an
//! executable wrapper script (the inventory-script protocol), then a playbook run through
//! that inventory reaching sshd targets through Portcullis; `targets list --source`; and
//! what `catalog list` and `catalog sync` say when no cluster is configured. The catalog
//! against a fake Proxmox VE API is tests/catalog.rs's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::dev::{bin, curl, Dev};
use common::sshd::{login_user, Sshd};

fn ansible_tool(name: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap();
    let path = Path::new(&home)
        .join(".cache/portcullis-test/ansible/bin")
        .join(name);
    assert!(
        path.exists(),
        "{name} not found at {}: run the suite with scripts/test, which installs ansible-core",
        path.display()
    );
    path
}

/// The dev policy with an `ssh` service (any port: sshd listens where the OS put it).
fn policy_with_ssh(dir: &Path) -> PathBuf {
    let dev = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/policy-dev.toml"
    ))
    .unwrap();
    let cell = "from = \"LOCAL\"\nto = \"LOCAL\"\naccess = \"allow\"\nservices = [\"echo\"]";
    assert!(dev.contains(cell), "the dev policy's LOCAL cell moved");
    let policy = dev.replace(cell, &cell.replace("[\"echo\"]", "[\"echo\", \"ssh\"]"))
        + "\n[[service]]\nname = \"ssh\"\nports = \"any\"\n";
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path
}

struct Setup {
    dev: Dev,
    sshd: Sshd,
    work: tempfile::TempDir,
}

impl Setup {
    /// A dev stack whose policy knows `ssh`, sshd, and hand-made targets: web-1 and web-2
    /// (ssh, tagged `web` and `prod ready`, pool `prod`), db-1 (service echo, but port
    /// 22: listed), and echo-1 (service echo on another port: not for Ansible).
    fn start() -> Setup {
        let user = login_user();
        let work = tempfile::tempdir().unwrap();
        let policy = policy_with_ssh(work.path());
        let dev = Dev::start(&[
            "--user",
            &user,
            "--worker-egress",
            "127.0.0.2",
            "--policy",
            policy.to_str().unwrap(),
        ]);
        let (_, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
        let sshd = Sshd::start(&ca, &[&user]);
        let token = dev.var("PORTCULLIS_TOKEN");
        let ssh = |name: &str| {
            serde_json::json!({
                "name": name,
                "address": format!("127.0.0.1:{}", sshd.port),
                "zone": "LOCAL",
                "service": "ssh",
                "tags": ["web", "prod ready"],
                "pool": "prod",
                "vmid": 100,
                "ssh_host_keys": [sshd.host_key_pub],
            })
        };
        let bodies = [
            ssh("web-1"),
            ssh("web-2"),
            serde_json::json!({"name": "db-1", "address": "127.0.0.3:22", "zone": "LOCAL", "service": "echo"}),
            serde_json::json!({"name": "echo-1", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        ];
        for body in bodies {
            let (code, text) = curl(
                &dev,
                "POST",
                "/v1/targets",
                Some(&token),
                Some(&body.to_string()),
            );
            assert_eq!(code, 201, "{text}");
        }
        Setup { dev, sshd, work }
    }

    /// `bash -c SCRIPT` with the dev stack's environment, `$PORTCULLIS` naming the binary.
    fn bash(&self, script: &str) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .env("PORTCULLIS", bin())
            .env("ANSIBLE_INVENTORY", ansible_tool("ansible-inventory"))
            .env("ANSIBLE_PLAYBOOK", ansible_tool("ansible-playbook"))
            .env("XDG_RUNTIME_DIR", self.work.path())
            .env("ANSIBLE_LOCAL_TEMP", self.work.path().join("tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("PORTCULLIS_LOG", "warn")
            .current_dir(self.work.path());
        for (k, v) in &self.dev.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn json(&self, script: &str) -> serde_json::Value {
        let out = self.bash(script);
        assert!(
            out.status.success(),
            "{script}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

/// What `ansible-inventory --list` made of our inventory: the SSH hosts, their groups and
/// their variables (the same whichever form Ansible read).
fn assert_ansible_read(listed: &serde_json::Value, runtime: &Path) {
    let hostvars = listed["_meta"]["hostvars"].as_object().unwrap();
    let mut hosts: Vec<&String> = hostvars.keys().collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["db-1", "web-1", "web-2"],
        "ssh by service or port 22: {listed:#}"
    );
    let hosts_of = |group: &str| {
        let mut hosts: Vec<&str> = listed[group]["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("no group {group}: {listed:#}"))
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        hosts.sort_unstable();
        hosts
    };
    for group in ["zone_LOCAL", "portcullis_manual"] {
        assert_eq!(hosts_of(group), ["db-1", "web-1", "web-2"], "{group}");
    }
    for group in ["tag_web", "tag_prodready", "pool_prod"] {
        assert_eq!(hosts_of(group), ["web-1", "web-2"], "{group}");
    }
    assert_eq!(hostvars["db-1"]["portcullis_service"], "echo");
    let web = &hostvars["web-1"];
    assert_eq!(web["ansible_host"], "web-1");
    assert_eq!(web["portcullis_zone"], "LOCAL");
    assert_eq!(web["portcullis_service"], "ssh");
    assert_eq!(web["portcullis_source"], "manual");
    assert_eq!(web["proxmox_vmid"], 100);
    assert_eq!(web["proxmox_pool"], "prod");
    assert_eq!(
        web["proxmox_tags"],
        serde_json::json!(["web", "prod ready"])
    );
    let config = runtime.join("portcullis/ssh/web-1/ssh_config");
    assert_eq!(
        web["ansible_ssh_common_args"],
        format!("-F {}", config.display())
    );
    // The file it names holds the blocks `portcullis ssh-config` prints for web-1.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("Match originalhost web-1 exec"), "{text}");
    assert!(text.contains("ProxyCommand"), "{text}");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn ansible_inventory_reads_both_forms_and_a_playbook_runs_through_portcullis() {
    let setup = Setup::start();
    let runtime = setup.work.path();

    // As the issue has it: a process substitution, read by Ansible's yaml plugin.
    let listed =
        setup.json(r#""$ANSIBLE_INVENTORY" -i <("$PORTCULLIS" inventory --ansible) --list"#);
    assert_ansible_read(&listed, runtime);

    // As an executable inventory script (docs/proxmox.md's two-line wrapper).
    let wrapper = runtime.join("portcullis-inventory");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {} inventory --ansible \"$@\"\n", bin()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let listed = setup.json(r#""$ANSIBLE_INVENTORY" -i ./portcullis-inventory --list"#);
    assert_ansible_read(&listed, runtime);
    let host = setup.json(r#""$ANSIBLE_INVENTORY" -i ./portcullis-inventory --host web-2"#);
    assert_eq!(host["ansible_host"], "web-2");
    // The script protocol, as Ansible calls it.
    let host = setup.json(r#"./portcullis-inventory --host echo-1"#);
    assert_eq!(host, serde_json::json!({}), "echo-1 is not an SSH host");

    // A playbook on the tag group, through the inventory alone: no ssh config of the user's.
    std::fs::write(
        runtime.join("ansible.cfg"),
        "[defaults]\nforks = 2\nhost_key_checking = True\n\
         [ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPersist=no\npipelining = True\n",
    )
    .unwrap();
    std::fs::write(
        runtime.join("play.yml"),
        "- hosts: tag_web\n  gather_facts: false\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n  tasks:\n    \
         - command: echo {{ inventory_hostname }} {{ portcullis_zone }}\n      register: out\n    \
         - assert:\n        that: out.stdout == inventory_hostname ~ ' LOCAL'\n",
    )
    .unwrap();
    let out = setup.bash(
        r#"ANSIBLE_CONFIG=ansible.cfg "$ANSIBLE_PLAYBOOK" -i <("$PORTCULLIS" inventory --ansible) play.yml"#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        setup.sshd.log()
    );
    for host in ["web-1", "web-2"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(host) && l.contains("ok=2") && l.contains("failed=0")),
            "{stdout}"
        );
    }
    // Both hosts were reached through the worker (its egress address), with certificates.
    let log = setup.sshd.log();
    let accepted = log
        .lines()
        .filter(|l| l.contains("Accepted publickey") && l.contains("from 127.0.0.2"))
        .count();
    assert!(accepted >= 2, "{log}");
}

/// `portcullis` with the dev stack's environment; (exit status, stdout, stderr).
fn cli(dev: &Dev, args: &[&str]) -> (i32, String, String) {
    let out = dev.cli().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn targets_list_filters_by_source_and_the_catalog_says_when_no_cluster_is_configured() {
    let dev = Dev::start(&[]);
    let token = dev.var("PORTCULLIS_TOKEN");
    let body =
        r#"{"name": "hand-1", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}"#;
    let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&token), Some(body));
    assert_eq!(code, 201, "{text}");

    let (code, out, err) = cli(&dev, &["targets", "list", "--source", "manual"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.ends_with("SOURCE"), "{out}");
    let row = out.lines().find(|l| l.contains("hand-1")).unwrap();
    assert!(row.ends_with("manual"), "{out}");
    let (code, out, err) = cli(&dev, &["targets", "list", "--source", "proxmox", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "[]", "no discovered target");
    let (code, _, err) = cli(&dev, &["targets", "list", "--source", "nowhere"]);
    assert_eq!(code, 7, "an unknown source is refused: {err}");

    let (code, out, err) = cli(&dev, &["catalog", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("No Proxmox cluster is configured"), "{out}");
    let (code, out, err) = cli(&dev, &["catalog", "list", "--cluster", "homelab"]);
    assert_eq!(code, 6, "{out}{err}");
    assert!(err.contains("no cluster homelab is configured"), "{err}");
    let (code, _, err) = cli(&dev, &["catalog", "sync", "--dry-run"]);
    assert_eq!(code, 7, "nothing to sync is a refusal: {err}");
    assert!(err.starts_with("error: cannot sync the catalog"), "{err}");

    // The inventory lists what the caller may reach, whatever its service; --ansible only
    // SSH hosts (none here).
    let (code, out, err) = cli(&dev, &["inventory"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("hand-1") && l.contains("zone_LOCAL,portcullis_manual")),
        "{out}"
    );
    let (code, out, err) = cli(&dev, &["inventory", "--ansible"]);
    assert_eq!(code, 0, "{err}");
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"all": {"hosts": {}, "children": {}}})
    );
}
