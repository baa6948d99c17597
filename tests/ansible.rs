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

#[test]
fn ansible_runs_a_playbook_on_three_hosts_in_parallel() {
    let user = login_user();
    let dev = Dev::start(&["--user", &user, "--worker-egress", "127.0.0.2"]);
    let (_, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
    let sshd = Sshd::start(&ca, &[&user]);
    let keys = serde_json::json!({"ssh_host_keys": [sshd.host_key_pub]});
    run_playbook(&dev, &sshd, &keys);
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
    run_playbook(&dev, &sshd, &cas);
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

/// Three targets on `sshd` with `host_trust` (pinned keys or host CAs), the ssh config
/// `portcullis ssh-config` prints, and a playbook on all three in parallel.
fn run_playbook(dev: &Dev, sshd: &Sshd, host_trust: &serde_json::Value) {
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
    let out = dev
        .cli()
        .arg("ssh-config")
        .env("XDG_RUNTIME_DIR", work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ssh_config = work.path().join("ssh_config");
    std::fs::write(&ssh_config, &out.stdout).unwrap();
    let inventory = work.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[targets]\n{}\n\n[targets:vars]\nansible_user={user}\nansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args=-F {} -o ControlMaster=no -o ControlPath=none\n",
            hosts.join("\n"),
            ssh_config.display()
        ),
    )
    .unwrap();
    let playbook = work.path().join("play.yml");
    std::fs::write(
        &playbook,
        "- hosts: targets\n  gather_facts: false\n  tasks:\n    - command: echo {{ inventory_hostname }}\n      register: out\n    - assert:\n        that: out.stdout == inventory_hostname\n",
    )
    .unwrap();
    let cfg = work.path().join("ansible.cfg");
    std::fs::write(&cfg, "[defaults]\nforks = 3\nhost_key_checking = True\n[ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPersist=no\npipelining = True\n").unwrap();
    let mut cmd = Command::new(ansible_playbook());
    cmd.arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .env("ANSIBLE_CONFIG", &cfg)
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
        assert!(stdout.contains(host) && stdout.contains("ok=2"), "{stdout}");
        assert!(
            !stdout.contains("failed=1") && !stdout.contains("unreachable=1"),
            "{stdout}"
        );
    }
    // Each host got its own session (certificate key id), all through the worker's address.
    let log = sshd.log();
    let mut sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Accepted publickey") && l.contains("from 127.0.0.2"))
        .filter_map(|l| l.split("ID ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(sessions.len(), 3, "{log}");
}
