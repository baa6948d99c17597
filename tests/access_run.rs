//! `portcullis run`: one approval for a whole automation run. A real Ansible playbook on
//! three hosts (more tasks than a session's connection limit, so several sessions per host)
//! runs under one run approved once; a host outside the run's list is refused; kill -9 of the
//! `run` process ends its sessions (the controller misses its keepalives).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::console::{enrol_for_token, stack_with};
use common::dev::{curl, Dev};
use common::sshd::{login_user, Sshd};
use common::wait::{poll, wait_for};
use serde_json::{json, Value};

/// The dev identity (group `admins`) administers targets and reads the audit but holds no
/// session grant: only a request for `deploy`, approved by a lead, gives it one.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8", "::1/128"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "broker-only"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "audit:read"]

[[role]]
name = "deploy"
groups = ["admins"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
logins = ["{{preferred_username}}"]
[role.requestable]
approvers = ["leads"]
max_duration = "1h"
"#;

const HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];
/// A target on the same sshd that the run does not list.
const OUTSIDE: &str = "web-4";

struct Stack {
    dev: Dev,
    sshd: Sshd,
    work: tempfile::TempDir,
    ssh_config: PathBuf,
    lead: String,
}

impl Stack {
    fn start() -> Stack {
        let work = tempfile::tempdir().unwrap();
        let user = login_user();
        let dev = stack_with(
            work.path(),
            "",
            POLICY,
            &[("lead1", "leads")],
            &["--user", &user, "--worker-egress", "127.0.0.2"],
        );
        let (_, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
        let sshd = Sshd::start(&ca, &[&user]);
        let token = dev.var("PORTCULLIS_TOKEN");
        for name in HOSTS.iter().chain([&OUTSIDE]) {
            let body = json!({
                "name": name,
                "address": format!("127.0.0.1:{}", sshd.port),
                "zone": "LOCAL",
                "service": "echo",
                "ssh_host_keys": [sshd.host_key_pub],
                "connection_limit": 2,
            })
            .to_string();
            let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&token), Some(&body));
            assert_eq!(code, 201, "{text}");
        }
        let runtime = work.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        let ssh_config = dev.write_ssh_config(&runtime);
        let lead = enrol_for_token(&dev, "lead1").2;
        Stack {
            dev,
            sshd,
            work,
            ssh_config,
            lead,
        }
    }

    fn runtime(&self) -> PathBuf {
        self.work.path().join("runtime")
    }

    /// `portcullis run ARGS -- CHILD...` as the dev identity, in the background.
    fn run(&self, args: &[&str], child: &[&str]) -> Child {
        let mut cmd = self.dev.cli();
        cmd.arg("run")
            .args(args)
            .arg("--")
            .args(child)
            .env("XDG_RUNTIME_DIR", self.runtime())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.run_log()).unwrap());
        cmd.spawn().unwrap()
    }

    /// What the last `portcullis run` (and its command) wrote on stderr.
    fn run_log(&self) -> PathBuf {
        self.work.path().join("run.stderr")
    }

    fn run_said(&self) -> String {
        std::fs::read_to_string(self.run_log()).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str) -> (u16, Value) {
        let (status, text) = curl(&self.dev, method, path, Some(&self.lead), Some("{}"));
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits for the run's request to be pending and approves it as the lead; its id.
    fn approve_the_pending_request(&self) -> String {
        let id = poll(
            "the run's request to be pending",
            Duration::from_secs(30),
            || {
                let (_, list) = curl(
                    &self.dev,
                    "GET",
                    "/v1/requests?state=pending",
                    Some(&self.lead),
                    None,
                );
                let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
                list["items"][0]["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("none yet: {list}"))
            },
        );
        let (status, v) = self.call("POST", &format!("/v1/requests/{id}/approve"));
        assert_eq!(status, 200, "{v}");
        id
    }

    fn request(&self, id: &str) -> Value {
        let (status, v) = curl(
            &self.dev,
            "GET",
            &format!("/v1/requests/{id}"),
            Some(&self.lead),
            None,
        );
        assert_eq!(status, 200, "{v}");
        serde_json::from_str(&v).unwrap()
    }
}

fn ansible_playbook() -> PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_ANSIBLE_PLAYBOOK") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    Path::new(&home).join(".cache/portcullis-test/ansible/bin/ansible-playbook")
}

/// An inventory of [`HOSTS`], a playbook of `tasks` commands per host, and an ansible.cfg
/// without ssh multiplexing (every task is a new brokered connection); the command line.
fn playbook(stack: &Stack, tasks: usize) -> Vec<String> {
    let dir = stack.work.path();
    let user = login_user();
    let inventory = dir.join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[targets]\n{}\n\n[targets:vars]\nansible_user={user}\nansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args=-F {} -o ControlMaster=no -o ControlPath=none\n",
            HOSTS.iter().map(|h| format!("{h} ansible_host={h}.pc")).collect::<Vec<_>>().join("\n"),
            stack.ssh_config.display(),
        ),
    )
    .unwrap();
    let mut yaml = String::from("- hosts: targets\n  gather_facts: false\n  tasks:\n");
    for n in 0..tasks {
        yaml.push_str(&format!(
            "    - command: echo {{{{ inventory_hostname }}}}-{n}\n      register: out\n    - assert:\n        that: out.stdout == inventory_hostname ~ '-{n}'\n"
        ));
    }
    let play = dir.join("play.yml");
    std::fs::write(&play, yaml).unwrap();
    let cfg = dir.join("ansible.cfg");
    std::fs::write(
        &cfg,
        "[defaults]\nforks = 3\nhost_key_checking = True\n[ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPersist=no\npipelining = True\n",
    )
    .unwrap();
    vec![
        "env".into(),
        format!("ANSIBLE_CONFIG={}", cfg.display()),
        format!("ANSIBLE_LOCAL_TEMP={}", dir.join("tmp").display()),
        "ANSIBLE_NOCOLOR=1".into(),
        ansible_playbook().display().to_string(),
        "-i".into(),
        inventory.display().to_string(),
        play.display().to_string(),
    ]
}

fn output(child: Child) -> (std::process::ExitStatus, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ansible_on_three_hosts_runs_under_one_approval_and_a_host_outside_the_list_is_refused() {
    let s = Stack::start();
    let ansible = playbook(&s, 5).join(" ");
    // The playbook, then ssh to a host the run does not list, which must fail.
    let script = format!(
        "{ansible} || exit 10; if ssh -F {} -l {} {OUTSIDE}.pc true; then exit 11; fi; exit 0",
        s.ssh_config.display(),
        login_user()
    );
    let run = s.run(
        &[
            "--role",
            "deploy",
            "--targets",
            &HOSTS.join(","),
            "--for",
            "10m",
            "--reason",
            "release 2026.12",
        ],
        &["sh", "-c", &script],
    );
    let id = s.approve_the_pending_request();
    let (status, stdout, stderr) = output(run);
    assert!(
        status.success(),
        "{status}\n{stdout}\n{stderr}\nsshd:\n{}",
        s.sshd.log()
    );
    for host in HOSTS {
        assert!(
            stdout.contains(host) && stdout.contains("ok=10"),
            "{stdout}"
        );
    }
    // One request, approved once; every session of the playbook under it, several per host
    // (5 tasks, 2 connections per session).
    let request = s.request(&id);
    let run = &request["run"];
    assert_eq!(run["exit_status"], 0, "{request}");
    let sessions = run["sessions"].as_array().unwrap();
    assert!(sessions.len() >= 6, "{request}");
    assert_eq!(request["approvals"].as_array().unwrap().len(), 1);
    assert_ne!(
        request["state"], "approved",
        "the run's end ends the request: {request}"
    );
    // The audit: one run_started, one run_finished, and `audit list --run` shows the run.
    let out = s
        .dev
        .cli()
        .args(["audit", "list", "--run", &id, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.matches("\"run_started\"").count(), 1, "{listed}");
    assert_eq!(listed.matches("\"run_finished\"").count(), 1, "{listed}");
    for session in sessions {
        assert!(listed.contains(session.as_str().unwrap()), "{listed}");
    }
    // The host outside the list never got a session.
    let admin = s.dev.var("PORTCULLIS_TOKEN");
    let (_, targets) = curl(&s.dev, "GET", "/v1/sessions?limit=500", Some(&admin), None);
    let listed_sessions = serde_json::from_str::<Value>(&targets).unwrap();
    let listed_sessions = listed_sessions["items"].as_array().unwrap();
    assert!(listed_sessions.len() >= sessions.len(), "{targets}");
    let outside = listed_sessions
        .iter()
        .filter(|v| v["target_name"] == OUTSIDE)
        .count();
    assert_eq!(outside, 0, "{targets}");
}

#[test]
fn kill_9_of_the_run_process_ends_its_run_and_its_sessions() {
    let s = Stack::start();
    let hold = format!(
        "ssh -F {} -l {} web-1.pc sleep 600",
        s.ssh_config.display(),
        login_user()
    );
    let mut run = s.run(
        &[
            "--role",
            "deploy",
            "--targets",
            "web-1",
            "--for",
            "10m",
            "--keepalive",
            "1s",
        ],
        &["sh", "-c", &hold],
    );
    let id = s.approve_the_pending_request();
    let session = poll("a session under the run", Duration::from_secs(60), || {
        let r = s.request(&id);
        r["run"]["sessions"][0]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{r}\nrun:\n{}", s.run_said()))
    });
    let admin = s.dev.var("PORTCULLIS_TOKEN");
    let session_state = |id: &str| {
        let (_, v) = curl(
            &s.dev,
            "GET",
            &format!("/v1/sessions/{id}"),
            Some(&admin),
            None,
        );
        serde_json::from_str::<Value>(&v).unwrap()
    };
    poll("the session to be active", Duration::from_secs(30), || {
        let v = session_state(&session);
        if v["state"] == "active" {
            Ok(())
        } else {
            Err(format!("{v}\nrun:\n{}", s.run_said()))
        }
    });
    let pid = run.id().to_string();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let _ = run.wait();
    wait_for(
        "the controller to end the lost run",
        Duration::from_secs(30),
        || s.request(&id)["run"]["outcome"] == "lost",
    );
    wait_for("its session to end", Duration::from_secs(30), || {
        session_state(&session)["terminated_at"].is_u64()
    });
    assert_ne!(s.request(&id)["state"], "approved");
}
