//! Ansible runs a playbook on several hosts in parallel through the generated ssh config.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::Command;

use common::dev::{curl, Dev};
use common::sshd::{login_user, Sshd};

fn ansible_playbook() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_ANSIBLE_PLAYBOOK") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path =
        std::path::Path::new(&home).join(".cache/portcullis-test/ansible/bin/ansible-playbook");
    assert!(path.exists(), "ansible-playbook not found at {}: run the suite with scripts/test, which installs ansible-core", path.display());
    path
}

/// A dev stack whose worker egresses from 127.0.0.2, and sshd trusting its SSH CA for the
/// login user.
fn dev_and_sshd() -> (Dev, Sshd) {
    let user = login_user();
    let dev = Dev::start(&["--user", &user, "--worker-egress", "127.0.0.2"]);
    let (_, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
    let sshd = Sshd::start(&ca, &[&user]);
    (dev, sshd)
}

#[test]
fn ansible_runs_a_playbook_on_three_hosts_in_parallel() {
    let (dev, sshd) = dev_and_sshd();
    let keys = serde_json::json!({"ssh_host_keys": [sshd.host_key_pub]});
    let sessions = run_playbook(&dev, &sshd, &keys, &Play::default());
    assert_eq!(sessions, 3, "each host got its own session");
}

/// More tasks than a session's connection limit: ssh-prepare opens a fresh session when the
/// cached one is full, so no task fails (ssh multiplexing off: every task is a connection).
#[test]
fn ansible_runs_more_tasks_than_a_sessions_connection_limit() {
    let (dev, sshd) = dev_and_sshd();
    let limited = serde_json::json!({"ssh_host_keys": [sshd.host_key_pub], "connection_limit": 2});
    let play = Play {
        tasks: 5,
        ..Play::default()
    };
    let sessions = run_playbook(&dev, &sshd, &limited, &play);
    assert!(sessions >= 6, "at least two sessions per host: {sessions}");
}

/// The settings docs/ssh.md recommends (ssh multiplexing, pipelining, no ansible_user: the
/// login comes from the policy) with the same limit and tasks.
#[test]
fn ansible_runs_with_the_documented_settings() {
    let (dev, sshd) = dev_and_sshd();
    let limited = serde_json::json!({"ssh_host_keys": [sshd.host_key_pub], "connection_limit": 2});
    let play = Play {
        tasks: 5,
        documented: true,
    };
    let sessions = run_playbook(&dev, &sshd, &limited, &play);
    assert!(sessions >= 3, "{sessions}");
}

/// The same with certificates from Vault (OpenBao) and a host CA instead of pinned keys.
#[test]
fn ansible_runs_a_playbook_with_vault_certificates_and_a_host_ca() {
    let user = login_user();
    let bao = common::vault::Bao::start();
    let work = tempfile::tempdir().unwrap();
    let host_ca = work.path().join("host_ca");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let host_ca_pub = std::fs::read_to_string(work.path().join("host_ca.pub")).unwrap();
    let config = work.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[ssh]\nbackend = \"vault\"\n[vault]\naddress = \"{}\"\ntoken_file = \"{}\"\n\
             ssh_role = \"{}\"\ntoken_role = \"{}\"\n",
            bao.addr,
            bao.controller_token_file("1h").display(),
            common::vault::SSH_ROLE,
            common::vault::TOKEN_ROLE
        ),
    )
    .unwrap();
    let dev = Dev::start(&[
        "--user",
        &user,
        "--worker-egress",
        "127.0.0.2",
        "--config",
        config.to_str().unwrap(),
    ]);
    let sshd = Sshd::start_with(&bao.ssh_ca(), &[&user], Some(&host_ca));
    let cas = serde_json::json!({"ssh_host_cas": [host_ca_pub.trim()]});
    let sessions = run_playbook(&dev, &sshd, &cas, &Play::default());
    assert_eq!(sessions, 3, "each host got its own session");
    // Every certificate came from Vault: sshd names Vault's CA.
    let vault_ca = ssh_key::PublicKey::from_openssh(&bao.ssh_ca())
        .unwrap()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string();
    let log = sshd.log();
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .collect();
    assert!(!accepted.is_empty());
    assert!(accepted.iter().all(|l| l.contains(&vault_ca)), "{log}");
}

/// The playbook and how Ansible runs it.
struct Play {
    /// `command` tasks per host (each checked by an `assert`).
    tasks: usize,
    /// docs/ssh.md's ansible.cfg (multiplexing on, no `ansible_user`) instead of one ssh
    /// connection per task as `-l USER`.
    documented: bool,
}

impl Default for Play {
    fn default() -> Self {
        Play {
            tasks: 1,
            documented: false,
        }
    }
}

/// Three targets on `sshd` with `host_trust` (pinned keys or host CAs, and any other target
/// fields), the ssh config `portcullis ssh-config` prints, and a playbook on all three in
/// parallel. Returns how many sessions sshd saw (certificate key ids).
fn run_playbook(dev: &Dev, sshd: &Sshd, host_trust: &serde_json::Value, play: &Play) -> usize {
    let user = login_user();
    let token = dev.var("PORTCULLIS_TOKEN");
    let hosts = ["web-1", "web-2", "web-3"];
    for name in hosts {
        let mut body = serde_json::json!({
            "name": name,
            "address": format!("127.0.0.1:{}", sshd.port),
            "zone": "LOCAL",
            "service": "echo",
        });
        for (k, v) in host_trust.as_object().unwrap() {
            body[k] = v.clone();
        }
        let body = body.to_string();
        let (code, text) = curl(dev, "POST", "/v1/targets", Some(&token), Some(&body));
        assert_eq!(code, 201, "{text}");
    }
    let work = tempfile::tempdir().unwrap();
    let ssh_config = dev.write_ssh_config(work.path());
    let inventory = work.path().join("inventory.ini");
    let (user_line, ssh_args, cfg) = if play.documented {
        let cfg = docs_ansible_cfg().replace(
            "[ssh_connection]\n",
            &format!(
                "[ssh_connection]\ncontrol_path_dir = {}\n",
                work.path().join("cp").display()
            ),
        );
        (String::new(), format!("-F {}", ssh_config.display()), cfg)
    } else {
        (
            format!("ansible_user={user}\n"),
            format!("-F {} -o ControlMaster=no -o ControlPath=none", ssh_config.display()),
            "[defaults]\nforks = 3\nhost_key_checking = True\n[ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPersist=no\npipelining = True\n".to_owned(),
        )
    };
    std::fs::write(
        &inventory,
        format!(
            "[targets]\n{}\n\n[targets:vars]\n{user_line}ansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args={ssh_args}\n",
            hosts
                .iter()
                .map(|h| format!("{h} ansible_host={h}.pc"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    )
    .unwrap();
    let playbook = work.path().join("play.yml");
    let mut yaml = String::from("- hosts: targets\n  gather_facts: false\n  tasks:\n");
    for n in 0..play.tasks {
        yaml.push_str(&format!(
            "    - command: echo {{{{ inventory_hostname }}}}-{n}\n      register: out\n    - assert:\n        that: out.stdout == inventory_hostname ~ '-{n}'\n"
        ));
    }
    std::fs::write(&playbook, yaml).unwrap();
    let cfg_path = work.path().join("ansible.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = Command::new(ansible_playbook());
    cmd.arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .env("ANSIBLE_CONFIG", &cfg_path)
        .env("XDG_RUNTIME_DIR", work.path())
        .env("ANSIBLE_LOCAL_TEMP", work.path().join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1");
    for (k, v) in &dev.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    for host in hosts {
        let ok = format!("ok={}", 2 * play.tasks);
        assert!(stdout.contains(host) && stdout.contains(&ok), "{stdout}");
        assert!(
            !stdout.contains("failed=1") && !stdout.contains("unreachable=1"),
            "{stdout}"
        );
    }
    // The sessions (certificate key ids), all through the worker's address.
    let log = sshd.log();
    let mut sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey") && l.contains("from 127.0.0.2"))
        .filter_map(|l| l.split("ID ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    sessions.len()
}

/// The ansible.cfg docs/ssh.md shows.
fn docs_ansible_cfg() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ssh.md")).unwrap();
    let block = doc
        .split_once("```ini\n# ansible.cfg\n")
        .expect("docs/ssh.md shows an ansible.cfg in an ini block")
        .1;
    block.split_once("```").unwrap().0.to_owned()
}
