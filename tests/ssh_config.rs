//! Plain `ssh` through the wildcard block `portcullis ssh-config` prints (`ssh NAME.pc`),
//! against a real OpenSSH sshd: the login comes from the policy, an ended or full session is
//! replaced by a fresh one, a failed `ssh-prepare` makes ssh fail instead of connecting to the
//! host directly, and a target created after the block was printed works (with `portcullis`
//! found on the PATH at run time).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::dev::{curl, Dev};
use common::sshd::{login_user, Sshd};

struct Setup {
    dev: Dev,
    sshd: Sshd,
    runtime: tempfile::TempDir,
    config: PathBuf,
}

/// A dev stack, sshd, and one target named `name` on it with `extra` fields; the generated
/// ssh config written to a file.
fn setup(name: &str, extra: serde_json::Value) -> Setup {
    let user = login_user();
    let dev = Dev::start(&["--user", &user, "--worker-egress", "127.0.0.2"]);
    let (_, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
    let sshd = Sshd::start(&ca, &[&user]);
    let mut body = serde_json::json!({
        "name": name,
        "address": format!("127.0.0.1:{}", sshd.port),
        "zone": "LOCAL",
        "service": "echo",
        "ssh_host_keys": [sshd.host_key_pub],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let token = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&token),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
    let runtime = tempfile::tempdir().unwrap();
    let config = dev.write_ssh_config(runtime.path());
    Setup {
        dev,
        sshd,
        runtime,
        config,
    }
}

impl Setup {
    /// `ssh -F CONFIG ARGS` with the dev stack's environment (and `env` on top).
    fn ssh(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut ssh = self.dev.ssh(&self.config, self.runtime.path());
        ssh.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
            .args(args);
        for (k, v) in env {
            ssh.env(k, v);
        }
        ssh.output().unwrap()
    }

    fn ssh_ok(&self, args: &[&str]) -> String {
        let out = self.ssh(args, &[]);
        assert!(
            out.status.success(),
            "ssh {args:?}: {}\nsshd:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The key ids (session ids) of the certificates sshd accepted, in order.
    fn sessions_seen(&self) -> Vec<String> {
        self.sshd
            .log()
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .filter_map(|l| l.split("ID ").nth(1))
            .filter_map(|r| r.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// Where ssh-prepare keeps the session of `target` (reached as `TARGET.pc`).
    fn session_dir(&self, target: &str) -> PathBuf {
        self.runtime
            .path()
            .join("portcullis/ssh")
            .join(format!("{target}.pc"))
    }
}

fn distinct(ids: &[String]) -> usize {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

#[test]
fn plain_ssh_logs_in_as_the_login_the_policy_grants() {
    let s = setup("box", serde_json::json!({}));
    // No -l: the block's User comes from the session's first granted login.
    assert_eq!(s.ssh_ok(&["box.pc", "id", "-un"]), login_user());
    // The options file ssh-prepare writes: the login, the host key alias and (certificate
    // mode) the certificate.
    let dir = s.session_dir("box");
    let conf = std::fs::read_to_string(dir.join("login.conf")).unwrap();
    assert_eq!(
        conf,
        format!(
            "User {}\nHostKeyAlias portcullis.box\nCertificateFile \"{}\"\n",
            login_user(),
            dir.join("id_ed25519-cert.pub").display()
        )
    );
    // ...which the block includes under a Match for the host.
    let host_conf = std::fs::read_to_string(dir.join("host.conf")).unwrap();
    assert!(
        host_conf.starts_with("Match originalhost box.pc\n\tUser "),
        "{host_conf}"
    );
    // The command line still wins (a login the policy does not grant is refused by sshd).
    let out = s.ssh(&["-l", "nobody-granted", "box.pc", "true"], &[]);
    assert!(!out.status.success());
}

#[test]
fn a_cancelled_session_is_replaced_by_a_fresh_one() {
    let s = setup("box", serde_json::json!({}));
    s.ssh_ok(&["box.pc", "true"]);
    let first = s.sessions_seen();
    assert_eq!(first.len(), 1, "{first:?}");
    let out = s
        .dev
        .cli()
        .args(["sessions", "cancel", &first[0]])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The cached session has ended: ssh-prepare asks the controller and opens a new one.
    assert_eq!(
        s.ssh_ok(&["box.pc", "echo", "after-cancel"]),
        "after-cancel"
    );
    let seen = s.sessions_seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[0], seen[1], "a fresh session after the cancel");
    // ...which the next run reuses.
    s.ssh_ok(&["box.pc", "true"]);
    assert_eq!(s.sessions_seen()[2], seen[1]);
}

#[test]
fn more_runs_than_a_sessions_connection_limit_open_more_sessions() {
    let s = setup("box", serde_json::json!({"connection_limit": 2}));
    for n in 0..5 {
        assert_eq!(
            s.ssh_ok(&["box.pc", "echo", &format!("run-{n}")]),
            format!("run-{n}")
        );
    }
    let seen = s.sessions_seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    // Two connections per session: sessions 1,1,2,2,3.
    assert_eq!(distinct(&seen), 3, "{seen:?}");
    assert_eq!(seen[0], seen[1]);
    assert_ne!(seen[1], seen[2]);
}

#[test]
fn a_failed_prepare_makes_ssh_fail_and_never_connect_directly() {
    // The host's address is given: a fall-through would reach sshd on 127.0.0.1 directly.
    let s = setup("localhost", serde_json::json!({}));
    let port = s.sshd.port.to_string();
    // The harness's own readiness probe connected directly: its lines are logged (up to its
    // close, which sshd may write a moment after start returned) before the log is marked.
    common::wait::wait_for(
        "sshd to log the readiness probe's close",
        std::time::Duration::from_secs(10),
        || s.sshd.log().contains("Connection closed by 127.0.0.1"),
    );
    let before = s.sshd.log().len();
    let direct = ["-p", &port, "-o", "HostName=127.0.0.1", "localhost.pc"];
    let out = s.ssh(
        &[&direct[..], &["true"]].concat(),
        &[("PORTCULLIS_TOKEN", "pct_not-a-token")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not authenticated"),
        "ssh-prepare says why: {stderr}"
    );
    let log = s.sshd.log()[before..].to_owned();
    assert!(
        !log.lines().any(|l| l.contains("from 127.0.0.1 port")),
        "ssh connected to the host directly:\n{log}"
    );
    assert!(!session_file_exists(&s.session_dir("localhost")));
    // With a good token the same command goes through the worker.
    s.ssh_ok(&[&direct[..], &["true"]].concat());
    assert!(s.sshd.log().contains("from 127.0.0.2 port"));
}

#[test]
fn a_target_created_after_the_block_was_printed_works_through_portcullis_on_the_path() {
    let s = setup("box", serde_json::json!({}));
    // `portcullis` on the PATH: the block names it, not this build's path.
    let bin_dir = Path::new(common::dev::bin()).parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = s
        .dev
        .cli()
        .arg("ssh-config")
        .env("XDG_RUNTIME_DIR", s.runtime.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let block = String::from_utf8(out.stdout).unwrap();
    assert!(
        block.contains("exec \"portcullis ssh-prepare --suffix .pc '%n'\""),
        "{block}"
    );
    assert!(!block.contains(common::dev::bin()), "{block}");
    let config = s.runtime.path().join("ssh_config.path");
    std::fs::write(&config, block).unwrap();
    // A new target, after the block was printed.
    let body = serde_json::json!({
        "name": "late",
        "address": format!("127.0.0.1:{}", s.sshd.port),
        "zone": "LOCAL",
        "service": "echo",
        "ssh_host_keys": [s.sshd.host_key_pub],
    });
    let token = s.dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(
        &s.dev,
        "POST",
        "/v1/targets",
        Some(&token),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
    let out = s
        .dev
        .ssh(&config, s.runtime.path())
        .env("PATH", &path)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
        .args(["late.pc", "echo", "late-ok"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "late-ok");
    assert!(s.session_dir("late").join("session.json").exists());
}

fn session_file_exists(dir: &Path) -> bool {
    dir.join("session.json").exists()
}
