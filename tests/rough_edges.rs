//! The rough edges an acceptance run hit with the real `portcullis` binary: target labels the
//! policy does not know, the sessions and audit tables, exit codes, how a session of
//! `connect --stdio` ends, the worker's log of a dropped spare connection, pasting
//! `audit keys` into `--public-key` (and a SIEM copy written by the documented rsyslog
//! template), and how `connect` behaves after a logout or a cancel.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{self, open_echo};
use common::dev::{bin, curl, Dev};
use common::wait::{poll, wait_for};
use serde_json::{json, Value};

/// The exit codes docs/cli.md promises.
const USAGE: i32 = 2;
const UNAUTHENTICATED: i32 = 4;
const FORBIDDEN: i32 = 5;
const NOT_FOUND: i32 = 6;
const REFUSED: i32 = 7;
const UNREACHABLE: i32 = 8;
const SESSION_ENDED: i32 = 10;

fn run(mut cmd: Command) -> (Option<i32>, String, String) {
    let out: Output = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli(dev: &Dev, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = dev.cli();
    cmd.args(args);
    run(cmd)
}

/// `portcullis targets create NAME --address 127.0.0.1:9 FLAGS...`.
fn create_target(dev: &Dev, name: &str, flags: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = dev.cli();
    cmd.args(["targets", "create", name, "--address", "127.0.0.1:9"])
        .args(flags);
    run(cmd)
}

/// A token for `user` in `groups` from the dev login.
fn login(dev: &Dev, user: &str, groups: &[&str]) -> String {
    let body = json!({"username": user, "groups": groups}).to_string();
    let (code, text) = curl(dev, "POST", "/v1/auth/dev-login", None, Some(&body));
    assert_eq!(code, 201, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn session(dev: &Dev, id: &str) -> Value {
    let (code, text, err) = cli(dev, &["sessions", "show", id, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&text).unwrap()
}

/// A free local port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn targets_create_refuses_zones_and_services_the_policy_does_not_know() {
    let dev = Dev::start(&[]);
    let (code, _, err) = create_target(&dev, "dmz-web", &["--zone", "DMZ", "--service", "echo"]);
    assert_eq!(code, Some(REFUSED), "{err}");
    assert!(
        err.contains("zone \"DMZ\" is not in the policy; it knows the zones LOCAL")
            && err.contains("--force"),
        "{err}"
    );
    let (code, _, err) = create_target(&dev, "web", &["--zone", "LOCAL", "--service", "https"]);
    assert_eq!(code, Some(REFUSED), "{err}");
    assert!(
        err.contains("service \"https\" is not in the policy; it knows the services echo"),
        "{err}"
    );
    let (code, out, _) = cli(&dev, &["targets", "list", "--json"]);
    assert_eq!(code, Some(0));
    assert!(
        !out.contains("dmz-web") && !out.contains("\"web\""),
        "{out}"
    );

    // The policy is reloadable (dev's comes from a file): --force creates it with a warning.
    let (code, out, err) = create_target(&dev, "dmz-web", &["--zone", "DMZ", "--force", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: zone \"DMZ\" is not in the policy"),
        "{err}"
    );
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["zone"], "DMZ");

    // Known labels pass without a word; so does an update to another known one, and an
    // update to an unknown one is refused like a create.
    let (code, _, err) = create_target(&dev, "web", &["--zone", "LOCAL", "--service", "echo"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let (code, _, err) = cli(&dev, &["targets", "update", "web", "--zone", "LAN"]);
    assert_eq!(code, Some(REFUSED), "{err}");
    assert!(err.contains("zone \"LAN\" is not in the policy"), "{err}");

    // The API answers 422 naming the field.
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(r#"{"name":"x","address":"127.0.0.1:9","zone":"DMZ"}"#),
    );
    assert_eq!(code, 422, "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(err["error"], "not_in_policy", "{text}");
    assert_eq!(err["field"], "zone", "{text}");
}

/// `sessions list` as a table: the cells of the row of session `id`, split on spaces
/// (ID USER TARGET STATE CONNS ...; a live session's STATE is one word).
fn table_row(dev: &Dev, id: &str) -> Vec<String> {
    let (code, out, err) = cli(dev, &["sessions", "list"]);
    assert_eq!(code, Some(0), "{err}");
    out.lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The session ids of `sessions list ARGS --json`, and the `--after` cursor it printed.
fn page(dev: &Dev, args: &[&str]) -> (Vec<String>, Option<String>) {
    let mut all = vec!["sessions", "list", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = cli(dev, &all);
    assert_eq!(code, Some(0), "{err}");
    let items: Vec<Value> = serde_json::from_str(&out).unwrap();
    let ids = items
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let next = err
        .split_whitespace()
        .skip_while(|w| *w != "--after")
        .nth(1)
        .map(str::to_owned);
    (ids, next)
}

#[test]
fn sessions_list_counts_connections_names_targets_and_pages_on_the_server() {
    let dev = Dev::start(&[]);
    let first = client::listen(dev.cli(), "echo");
    drop(open_echo(first.port));
    let _open = open_echo(first.port);
    poll(
        "the table to count both connections",
        Duration::from_secs(20),
        || {
            let row = table_row(&dev, &first.session_id);
            match (row[2].as_str(), row[4].as_str()) {
                ("echo", "2") => Ok(()),
                _ => Err(row.join(" ")),
            }
        },
    );
    let (_, out, _) = cli(&dev, &["sessions", "list", "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mine = listed
        .iter()
        .find(|s| s["id"] == first.session_id.as_str())
        .unwrap();
    assert_eq!(mine["connection_count"], 2, "{mine}");
    assert_eq!(mine["target_name"], "echo", "{mine}");
    assert!(mine["target_id"].as_str().unwrap().starts_with("t_"));

    let second = client::listen(dev.cli(), "echo");
    let third = client::listen(dev.cli(), "echo");
    let (code, _, err) = cli(&dev, &["sessions", "cancel", &second.session_id]);
    assert_eq!(code, Some(0), "{err}");

    // Pages of one, newest first, until the cursor runs out: every session exactly once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec!["--limit", "1"];
        if let Some(cursor) = &after {
            args.extend(["--after", cursor.as_str()]);
        }
        let (ids, next) = page(&dev, &args);
        assert!(ids.len() <= 1, "{ids:?}");
        seen.extend(ids);
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    // The same order as one page of all (newest first; within one second, by id).
    let (all, next) = page(&dev, &[]);
    assert_eq!(next, None);
    assert_eq!(seen, all, "each session once, in the list's order");
    let mut sorted = seen.clone();
    sorted.sort();
    let mut expected = vec![
        first.session_id.clone(),
        second.session_id.clone(),
        third.session_id.clone(),
    ];
    expected.sort();
    assert_eq!(sorted, expected);

    // --live asks the server: the cancelled session is not in the answer.
    let (live, next) = page(&dev, &["--live"]);
    let expected: Vec<String> = all
        .iter()
        .filter(|id| **id != second.session_id)
        .cloned()
        .collect();
    assert_eq!(live, expected);
    assert_eq!(next, None);
    let (code, text) = curl(
        &dev,
        "GET",
        "/v1/sessions?live=true&limit=1",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(body["items"][0]["id"], expected[0].as_str());
    assert!(body["next"].is_string(), "{text}");

    // The audit table names the target too.
    let (code, out, err) = cli(&dev, &["audit", "list", "--session", &first.session_id]);
    assert_eq!(code, Some(0), "{err}");
    let row = out
        .lines()
        .find(|l| l.contains("session_authorized"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(row.split_whitespace().nth(5), Some("echo"), "{out}");
    assert!(!row.contains("t_"), "{row}");
}

#[test]
fn failures_exit_with_the_documented_codes() {
    let dev = Dev::start(&[]);
    let (code, help, _) = run({
        let mut c = Command::new(bin());
        c.arg("--help");
        c
    });
    assert_eq!(code, Some(0));
    assert!(
        help.contains("EXIT STATUS") && help.contains("4  not authenticated"),
        "{help}"
    );

    let (code, _, err) = cli(&dev, &["targets", "create"]);
    assert_eq!(code, Some(USAGE), "{err}");
    let (code, _, err) = cli(&dev, &["targets", "show", "nosuch"]);
    assert_eq!(code, Some(NOT_FOUND), "{err}");
    assert!(err.contains("not found: no target \"nosuch\""), "{err}");
    let (code, _, err) = run({
        let mut c = dev.cli();
        c.args(["targets", "list"]).env("PORTCULLIS_TOKEN", "bogus");
        c
    });
    assert_eq!(code, Some(UNAUTHENTICATED), "{err}");
    let user = login(&dev, "bob", &["users"]);
    let (code, _, err) = run({
        let mut c = dev.cli();
        c.args(["targets", "create", "x", "--address", "127.0.0.1:9"])
            .env("PORTCULLIS_TOKEN", &user);
        c
    });
    assert_eq!(code, Some(FORBIDDEN), "{err}");
    let (code, _, err) = cli(&dev, &["targets", "create", "x", "--address", "nowhere"]);
    assert_eq!(code, Some(REFUSED), "{err}");
    let (code, _, err) = run({
        let mut c = dev.cli();
        c.args(["targets", "list"]).env(
            "PORTCULLIS_ADDR",
            format!("https://127.0.0.1:{}", free_port()),
        );
        c
    });
    assert_eq!(code, Some(UNREACHABLE), "{err}");
    assert!(err.contains("cannot reach the controller"), "{err}");
}

/// Sends SIGCONT to a process at drop, so a failed test does not leave it stopped.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

#[test]
fn exec_returns_the_childs_status_even_when_the_cancel_afterwards_fails() {
    let dev = Dev::start(&[]);
    let pid = dev.child.id();
    let _resume = Resume(pid);
    // The child stops the controller, so cancelling the session afterwards fails.
    let script = format!("kill -STOP {pid}; exit 0");
    let (code, _, err) = cli(
        &dev,
        &["connect", "echo", "--exec", "sh", "--", "-c", &script],
    );
    assert!(err.contains("could not cancel session"), "{err}");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_stdio_session_whose_program_ends_normally_ends_as_closed() {
    let dev = Dev::start(&[]);
    let mut child = dev
        .cli()
        .args(["connect", "echo", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, b"ping", "{err}");
    let (ids, _) = page(&dev, &[]);
    let s = session(&dev, &ids[0]);
    assert_eq!(s["state"], "terminated", "{s}");
    assert_eq!(s["termination_reason"], "closed", "{s}");
    let (code, out, err) = cli(
        &dev,
        &[
            "audit",
            "list",
            "--session",
            &ids[0],
            "--type",
            "session_terminated",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"closed\""), "{out}");
}

#[test]
fn the_spare_a_listener_drops_is_not_logged_as_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    let dev = Dev::start_logging(&["--log", "info,portcullis_worker::proxy=debug"], &log);
    let listener = client::listen(dev.cli(), "echo");
    drop(open_echo(listener.port));
    // After the connection the listener dials a spare and drops it unused within 3 s.
    let text = poll(
        "the worker to log what became of the spare",
        Duration::from_secs(20),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("before its hello") || text.contains("connection refused") {
                Ok(text)
            } else {
                Err("nothing yet")
            }
        },
    );
    assert!(!text.contains("connection refused"), "{text}");
    assert!(!text.contains("BadHandshake"), "{text}");
}

#[test]
fn audit_keys_pasted_whole_into_public_key_verify() {
    let dev = Dev::start(&[]);
    let (code, keys, err) = cli(&dev, &["audit", "keys"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(keys.contains("  # active"), "{keys}");
    let (code, out, err) = cli(&dev, &["audit", "verify", "--public-key", &keys]);
    assert_eq!(code, Some(0), "{out}{err}");
    // One line of it, as copied from a terminal, works too.
    let line = keys.lines().next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.jsonl");
    let (code, _, err) = cli(
        &dev,
        &["audit", "export", "--output", export.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(
        &dev,
        &[
            "audit",
            "verify",
            "--file",
            export.to_str().unwrap(),
            "--public-key",
            line,
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    // A key that is not the controller's still fails.
    let wrong = format!(
        "{}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=  # active",
        line.split(':').next().unwrap()
    );
    let (code, out, err) = cli(&dev, &["audit", "verify", "--public-key", &wrong]);
    assert_eq!(code, Some(1), "{out}{err}");
}

/// The rsyslog template docs/audit.md gives, whose file `audit verify --file` reads.
fn documented_template() -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit.md")).unwrap();
    doc.lines()
        .find(|l| l.starts_with("template(name=\"portcullis-json\""))
        .expect("docs/audit.md shows template(name=\"portcullis-json\" ...)")
        .to_owned()
}

#[test]
fn a_siem_copy_written_by_the_documented_rsyslog_template_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("siem").join("portcullis.jsonl");
    let rules = format!(
        "{}\nif $app-name == \"portcullis\" then action(type=\"omfile\" file=\"{}\" template=\"portcullis-json\")\n",
        documented_template(),
        copy.display()
    );
    let siem = common::rsyslog::Rsyslog::start_with(&dir.path().join("rsyslog"), &rules);
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\ncheckpoint_every = 3\nship_interval = 0.2\n[[audit.sink]]\nname = \"siem\"\n\
             type = \"syslog-tls\"\naddress = \"{}\"\nserver_name = \"siem.test\"\nca_file = \"{}\"\n",
            siem.addr,
            siem.ca_file.display()
        ),
    )
    .unwrap();
    let dev = Dev::start(&["--config", config.to_str().unwrap()]);
    for name in ["a", "b", "c", "d"] {
        let (code, _, err) = create_target(&dev, name, &[]);
        assert_eq!(code, Some(0), "{err}");
    }
    wait_for(
        "the SIEM copy to hold target d",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&copy)
                .map(|t| t.contains("\"name\":\"d\"") && t.contains("audit_checkpoint"))
                .unwrap_or(false)
        },
    );
    let text = std::fs::read_to_string(&copy).unwrap();
    for line in text.lines() {
        assert!(line.starts_with('{'), "only the JSON: {line:?}");
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("a line of the copy is not JSON ({e}): {line:?}"));
    }
    let (_, keys, _) = cli(&dev, &["audit", "keys"]);
    let path = copy.to_str().unwrap();
    let (code, out, err) = cli(
        &dev,
        &["audit", "verify", "--file", path, "--public-key", &keys],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = cli(
        &dev,
        &[
            "audit",
            "verify",
            "--checkpoints",
            path,
            "--public-key",
            &keys,
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn connect_ssh_says_nothing_about_the_cancel_when_a_logout_ended_its_session() {
    let dev = Dev::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let host_key = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let body = json!({
        "name": "box", "address": dev.ready["echo"].as_str().unwrap(), "zone": "LOCAL",
        "service": "echo", "ssh_host_keys": [host_key.trim()],
    })
    .to_string();
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&admin), Some(&body));
    assert_eq!(code, 201, "{text}");
    // "ssh" logs out with the token the session was opened with, then exits normally.
    let ssh = dir.path().join("fake-ssh");
    std::fs::write(&ssh, format!("#!/bin/sh\n'{}' logout\nexit 0\n", bin())).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let own = login(&dev, "admin", &["admins"]);
    let (code, _, err) = run({
        let mut c = dev.cli();
        c.args(["connect", "ssh", "box", "--ssh-program"])
            .arg(&ssh)
            .env("PORTCULLIS_TOKEN", &own);
        c
    });
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Logged out"), "{err}");
    assert!(!err.contains("could not cancel"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let id = err
        .split_whitespace()
        .find(|w| w.starts_with("s_"))
        .unwrap()
        .to_owned();
    let s = session(&dev, &id);
    assert_eq!(s["termination_reason"], "logout", "{s}");
}

#[test]
fn a_listener_exits_at_once_with_the_reason_when_its_session_is_cancelled() {
    let dev = Dev::start(&[]);
    let mut child: Child = dev
        .cli()
        .args(["connect", "echo", "--listen-port", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (sink, pipe) = (stderr.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("[connect] {line}");
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let id = ready["session_id"].as_str().unwrap().to_owned();
    let (code, _, err) = cli(&dev, &["sessions", "cancel", &id]);
    assert_eq!(code, Some(0), "{err}");
    // No local connection comes: the listener notices by itself.
    let status = poll(
        "the listener to exit after the cancel",
        Duration::from_secs(15),
        || match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            _ => Err("still running"),
        },
    );
    let err = stderr.lock().unwrap().clone();
    assert_eq!(status.code(), Some(SESSION_ENDED), "{err}");
    assert!(
        err.contains(&format!("Session {id} is over: canceled")),
        "{err}"
    );
}
