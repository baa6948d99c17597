//! The tamper-evident audit log with real processes: every action's event and its fields,
//! tampering found at the right event by `portcullis audit verify`, one chain from two
//! controllers on PostgreSQL, a syslog sink over TLS to a real rsyslogd that loses nothing
//! across an outage, fail-closed writes, who may read the log, and an export verified by an
//! independent implementation (tests/audit_verify.py, on Python's RFC 8785 and Ed25519).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::client::listen;
use common::cluster::{echo, Controller, PausableProxy, Worker};
use common::rsyslog::Rsyslog;
use common::wait::wait_for;
use serde_json::{json, Value};
use sqlx::Connection as _;

/// The `[audit]` section with a file sink and fast checkpoints.
fn file_sink(dir: &Path) -> String {
    format!(
        "[audit]\ncheckpoint_every = 5\ncheckpoint_interval = \"1s\"\nship_interval = 0.2\n\
         denial_window = 0.2\n\
         [[audit.sink]]\nname = \"siem-file\"\ntype = \"file\"\npath = \"{}\"\n",
        dir.join("sink.jsonl").display()
    )
}

fn login(c: &Controller, user: &str, groups: &[&str]) -> String {
    c.issue_token(user, groups)
}

fn create_target(c: &Controller, name: &str, address: &str) -> String {
    let body =
        json!({"name": name, "address": address, "zone": "LOCAL", "service": "echo"}).to_string();
    let (code, text) = c.curl("POST", "/v1/targets", Some(&body));
    assert_eq!(code, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `portcullis audit ARGS --json` as the controller's admin.
fn audit_json(c: &Controller, args: &[&str]) -> (bool, Value) {
    let out = c
        .cli()
        .arg("audit")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} / {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), value)
}

/// Every event, oldest first.
fn all_events(c: &Controller) -> Vec<Value> {
    let (ok, v) = audit_json(c, &["list", "--limit", "1000"]);
    assert!(ok);
    let mut events = v.as_array().unwrap().clone();
    events.reverse();
    events
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn one<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    of_type(events, kind)
        .into_iter()
        .last()
        .unwrap_or_else(|| panic!("no {kind} event among {events:#?}"))
}

fn sql(url: &str, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
    });
}

fn sqlite_url(c: &Controller) -> String {
    format!("sqlite://{}", c.dir.join("portcullis.db").display())
}

#[test]
fn every_action_is_audited_with_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("controller");
    let c = Controller::start_with(&cdir, &file_sink(&cdir));
    let _w = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        "",
    )
    .unwrap();
    let target = create_target(&c, "echo", &echo());
    let (code, text) = c.curl(
        "PATCH",
        &format!("/v1/targets/{target}"),
        Some(r#"{"tags":["lab"]}"#),
    );
    assert_eq!(code, 200, "{text}");

    // A session with one connection, then cancelled.
    let l = listen(c.cli(), "echo");
    {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", l.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = s.read(&mut buf);
    }
    wait_for("connection_closed", Duration::from_secs(10), || {
        !of_type(&all_events(&c), "connection_closed").is_empty()
    });
    let (code, text) = c.curl(
        "POST",
        &format!("/v1/sessions/{}/cancel", l.session_id),
        None,
    );
    assert_eq!(code, 200, "{text}");

    // Refusals: a bad token, a user with no role, a missing permission.
    let (code, _) = c.curl_as("pat1.nonsense", "GET", "/v1/targets", None);
    assert_eq!(code, 401);
    let mallory = login(&c, "mallory", &["nobody"]);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    let (code, text) = c.curl_as(
        &mallory,
        "POST",
        "/v1/targets/echo/authorize-session",
        Some(&body),
    );
    assert_eq!(code, 403);
    // A denial by the role check names the matrix cell it was checked against.
    assert!(
        text.contains("checked against the matrix cell LOCAL -> LOCAL: allow [echo]"),
        "{text}"
    );
    let (code, _) = c.curl_as(&mallory, "DELETE", &format!("/v1/targets/{target}"), None);
    assert_eq!(code, 403);

    // Policy reloads, good and bad; then the target goes.
    let (code, text) = c.curl("POST", "/v1/policy/reload", None);
    assert_eq!(code, 200, "{text}");
    let policy = cdir.join("policy.toml");
    let good = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, "this is not a policy").unwrap();
    let (code, _) = c.curl("POST", "/v1/policy/reload", None);
    assert_eq!(code, 422);
    std::fs::write(&policy, good).unwrap();
    let (code, text) = c.curl("DELETE", &format!("/v1/targets/{target}"), None);
    assert_eq!(code, 204, "{text}");
    let out = Command::new(common::dev::bin())
        .args(["controller", "keys", "rotate", "grant", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refusals of unauthenticated callers are summed per window (audit::denials).
    wait_for(
        "the token_rejected summary",
        Duration::from_secs(10),
        || !of_type(&all_events(&c), "token_rejected").is_empty(),
    );
    let events = all_events(&c);
    // The chain: gapless, each event linked to the one before.
    for pair in events.windows(2) {
        assert_eq!(
            pair[1]["sequence"].as_u64(),
            pair[0]["sequence"].as_u64().map(|s| s + 1)
        );
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    for e in &events {
        assert_eq!(e["schema"], 3, "{e}");
        assert!(e["id"].as_str().unwrap().starts_with("e_"), "{e}");
        assert!(
            e["signature"].as_str().is_some_and(|s| !s.is_empty()),
            "{e}"
        );
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }

    let e = one(&events, "token_issued");
    assert_eq!(e["details"]["user"], "mallory");
    assert_eq!(e["details"]["groups"], json!(["nobody"]));
    assert!(
        e["actor"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("local:uid=")),
        "{e}"
    );
    assert!(one(&events, "worker_join_token_created").is_object());
    assert!(one(&events, "worker_joined").is_object());
    let e = one(&events, "target_created");
    assert_eq!(e["target"], target.as_str());
    assert_eq!(e["actor"]["user"], "admin");
    assert_eq!(one(&events, "target_updated")["target"], target.as_str());

    let authorized = one(&events, "session_authorized");
    assert_eq!(authorized["session"], l.session_id.as_str());
    assert_eq!(authorized["target"], target.as_str());
    assert_eq!(authorized["decision"], "allow");
    assert_eq!(
        authorized["policy_hash"].as_str().unwrap().len(),
        64,
        "{authorized}"
    );
    let e = one(&events, "session_activated");
    assert_eq!(e["session"], l.session_id.as_str());
    let opened = one(&events, "connection_opened");
    assert_eq!(opened["session"], l.session_id.as_str());
    let closed = one(&events, "connection_closed");
    assert_eq!(closed["session"], l.session_id.as_str());
    assert_eq!(closed["details"]["bytes_up"], 5, "{closed}");
    assert_eq!(closed["details"]["bytes_down"], 5, "{closed}");
    let e = one(&events, "session_terminated");
    assert_eq!(e["session"], l.session_id.as_str());
    assert_eq!(e["reason"], "canceled");
    assert_eq!(e["actor"]["user"], "admin");

    assert!(one(&events, "token_rejected").is_object());
    let e = one(&events, "session_denied");
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["actor"]["user"], "mallory");
    assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    assert_eq!(e["policy_hash"], authorized["policy_hash"]);
    // The same decision facts as an authorisation, and the role rule that failed.
    let d = &e["details"];
    assert_eq!(d["source_zone"], "LOCAL", "{e}");
    assert_eq!(d["target_zone"], "LOCAL", "{e}");
    assert_eq!(d["service"], "echo", "{e}");
    assert_eq!(d["cells"][0], "LOCAL -> LOCAL: allow [echo]", "{e}");
    assert_eq!(
        d["cells"].as_array().unwrap()[..],
        authorized["details"]["cells"].as_array().unwrap()[..2],
        "{e}"
    );
    assert!(
        d["role_rule"]
            .as_str()
            .is_some_and(|r| r.starts_with("no role")),
        "{e}"
    );
    assert!(
        d["endpoint"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{e}"
    );
    let e = one(&events, "permission_denied");
    assert_eq!(e["actor"]["user"], "mallory");
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["details"]["permission"], "targets:admin");
    assert_eq!(one(&events, "policy_reloaded")["actor"]["user"], "admin");
    assert!(one(&events, "policy_reload_failed").is_object());
    assert_eq!(one(&events, "target_deleted")["target"], target.as_str());
    assert!(one(&events, "key_rotated").is_object());

    // No secret in any event: not the admin's token, not the join token.
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(&c.token), "an API token leaked into the log");
    assert!(!all.contains(&mallory));
    assert!(!all.contains("BEGIN"), "key material leaked into the log");

    // Filters.
    let (_, denied) = audit_json(&c, &["list", "--decision", "deny"]);
    let kinds: Vec<&str> = denied
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"session_denied") && kinds.contains(&"permission_denied"),
        "{kinds:?}"
    );
    assert!(denied
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["decision"] == "deny"));
    let (_, by_session) = audit_json(&c, &["list", "--session", &l.session_id]);
    assert!(by_session.as_array().unwrap().len() >= 5, "{by_session}");
    assert!(by_session
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["session"] == l.session_id.as_str()));
    let (_, by_user) = audit_json(
        &c,
        &["list", "--user", "mallory", "--type", "permission_denied"],
    );
    assert_eq!(by_user.as_array().unwrap().len(), 1, "{by_user}");
    let (_, future) = audit_json(&c, &["list", "--since", "2100-01-01T00:00:00Z"]);
    assert_eq!(future, json!([]));
    let out = c
        .cli()
        .args(["audit", "list", "--target", &target])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("SEQ") && table.contains("target_deleted"),
        "{table}"
    );

    // The live chain verifies, and so does the file sink's copy with its checkpoints.
    let (ok, v) = audit_json(&c, &["verify"]);
    assert!(ok, "{v}");
    assert_eq!(v["events"].as_u64().unwrap() as usize, events.len(), "{v}");
    let sink = cdir.join("sink.jsonl");
    wait_for("the sink to catch up", Duration::from_secs(10), || {
        std::fs::read_to_string(&sink)
            .unwrap_or_default()
            .contains("key_rotated")
    });
    let (ok, v) = audit_json(&c, &["verify", "--file", sink.to_str().unwrap()]);
    assert!(ok, "{v}");
    assert!(std::fs::read_to_string(&sink)
        .unwrap()
        .contains("audit_checkpoint"));
}

/// Writes `lines` to a file and runs `audit verify --file` on it with pinned keys.
fn verify_lines(
    c: &Controller,
    dir: &Path,
    name: &str,
    lines: &[String],
    keys: &[String],
) -> Value {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let mut args = vec![
        "verify".to_owned(),
        "--file".to_owned(),
        path.display().to_string(),
    ];
    for k in keys {
        args.push("--public-key".into());
        args.push(k.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, v) = audit_json(c, &args);
    assert_eq!(ok, v["ok"] == true, "{v}");
    v
}

/// The fingerprints of the controller's audit signing keys (`audit keys`).
fn audit_keys(c: &Controller) -> Vec<String> {
    let out = c.cli().args(["audit", "keys"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// The audit log exported as JSON lines to the file `export` (`audit export --format
/// jsonl`): the header line, then an event a line.
fn export_lines(c: &Controller, export: &Path) -> Vec<String> {
    let out = c
        .cli()
        .args(["audit", "export", "--format", "jsonl", "--output"])
        .arg(export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(export).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// The events of an export's lines (the header left out).
fn events_of(lines: &[String]) -> Vec<Value> {
    lines[1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tampering_is_found_at_the_right_event() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("controller");
    let c = Controller::start_with(&cdir, &file_sink(&cdir));
    for i in 0..12 {
        create_target(&c, &format!("t{i}"), "127.0.0.1:9");
    }
    let keys = audit_keys(&c);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let export = dir.path().join("export.jsonl");
    let lines = export_lines(&c, &export);
    let header = lines[0].clone();
    let events = events_of(&lines);
    assert!(events.len() >= 13, "{}", events.len());
    let seq = |i: usize| events[i]["sequence"].as_u64().unwrap();
    let with = |events: Vec<Value>| -> Vec<String> {
        std::iter::once(header.clone())
            .chain(events.iter().map(|e| e.to_string()))
            .collect()
    };
    let v = verify_lines(&c, dir.path(), "clean", &lines, &keys);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["pinned_keys"], true);

    // Edited: a target's address changed in event 5.
    let mut edited = events.clone();
    edited[5]["details"] = json!({"address": "10.0.0.66:22"});
    let v = verify_lines(&c, dir.path(), "edited", &with(edited), &keys);
    assert_eq!(v["first_bad_event"], seq(5), "{v}");
    assert!(v["problem"].as_str().unwrap().contains("edited"), "{v}");

    // Deleted: event 6 removed.
    let mut deleted = events.clone();
    deleted.remove(6);
    let v = verify_lines(&c, dir.path(), "deleted", &with(deleted), &keys);
    assert_eq!(v["first_bad_event"], seq(6), "{v}");
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("deleted, inserted or reordered"),
        "{v}"
    );

    // Inserted: a well-formed event with a correct hash, chained after event 7, but
    // without the audit key's signature; the ones after it renumbered and re-linked.
    let mut inserted = events[..=7].to_vec();
    let mut forged = events[7].clone();
    forged["sequence"] = json!(seq(7) + 1);
    forged["prev_hash"] = events[7]["hash"].clone();
    forged["reason"] = json!("nothing to see here");
    let body = forged.as_object().unwrap().clone();
    forged["hash"] = json!(portcullis_audit::chain::event_hash(&body).unwrap());
    inserted.push(forged);
    let v = verify_lines(&c, dir.path(), "inserted", &with(inserted), &keys);
    assert_eq!(v["first_bad_event"], seq(7) + 1, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("signature"), "{v}");

    // Reordered: events 8 and 9 swapped.
    let mut reordered = events.clone();
    reordered.swap(8, 9);
    let v = verify_lines(&c, dir.path(), "reordered", &with(reordered), &keys);
    assert_eq!(v["first_bad_event"], seq(8), "{v}");

    // A key that is not the audit key: everything fails at the first event.
    let other = "k_other:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned();
    let v = verify_lines(&c, dir.path(), "other-key", &lines, &[other]);
    assert_eq!(v["first_bad_event"], seq(0), "{v}");

    // Live: an event edited in the store is named by `audit verify`.
    let url = sqlite_url(&c);
    let victim = events
        .iter()
        .find(|e| e["type"] == "target_created" && e["details"]["name"] == "t2")
        .unwrap()["sequence"]
        .as_u64()
        .unwrap();
    sql(
        &url,
        &[&format!(
            "UPDATE audit_events SET body = replace(body, '127.0.0.1:9', '127.0.0.1:22') WHERE seq = {victim}"
        )],
    );
    let (ok, v) = audit_json(&c, &["verify"]);
    assert!(!ok);
    assert_eq!(v["first_bad_event"], victim, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("edited"), "{v}");
    // Put it back, then cut off the newest events and rewind the head as an intruder with
    // database access would: the store alone looks intact, the sink's checkpoint does not.
    sql(
        &url,
        &[&format!(
            "UPDATE audit_events SET body = replace(body, '127.0.0.1:22', '127.0.0.1:9') WHERE seq = {victim}"
        )],
    );
    let (ok, v) = audit_json(&c, &["verify"]);
    assert!(ok, "{v}");
    let sink = cdir.join("sink.jsonl");
    let last = seq(events.len() - 1);
    wait_for(
        "a checkpoint of the newest event",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&sink)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| v["type"] == "audit_checkpoint" && v["sequence"].as_u64() == Some(last))
        },
    );
    let keep = last - 3;
    let keep_hash = events.iter().find(|e| e["sequence"] == keep).unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    sql(
        &url,
        &[
            &format!("DELETE FROM audit_events WHERE seq > {keep}"),
            &format!("UPDATE audit_head SET seq = {keep}, hash = '{keep_hash}' WHERE id = 1"),
        ],
    );
    let (ok, v) = audit_json(&c, &["verify", "--public-key", &keys[0]]);
    assert!(ok, "the truncated store alone still verifies: {v}");
    let (ok, v) = audit_json(
        &c,
        &[
            "verify",
            "--checkpoints",
            sink.to_str().unwrap(),
            "--public-key",
            &keys[0],
        ],
    );
    assert!(!ok, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("cut off"), "{v}");
    assert_eq!(v["first_bad_event"], keep + 1, "{v}");
}

#[test]
fn an_action_whose_event_cannot_be_written_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let url = sqlite_url(&c);
    sql(
        &url,
        &["CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit disk full'); END"],
    );
    let body =
        json!({"name": "ghost", "address": "127.0.0.1:9", "zone": "LOCAL", "service": "echo"})
            .to_string();
    let (code, text) = c.curl("POST", "/v1/targets", Some(&body));
    assert!(code >= 500, "{code} {text}");
    sql(&url, &["DROP TRIGGER no_audit"]);
    let (code, text) = c.curl("GET", "/v1/targets/ghost", None);
    assert_eq!(
        code, 404,
        "the action without its event must not have happened: {text}"
    );
    create_target(&c, "ghost", "127.0.0.1:9");
    let (ok, v) = audit_json(&c, &["verify"]);
    assert!(ok, "{v}");
}

#[test]
fn only_audit_read_may_read_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("controller");
    let c = Controller::start(&cdir);
    let policy = std::fs::read_to_string(cdir.join("policy.toml"))
        .unwrap()
        .replace(r#", "audit:read""#, "")
        + "\n[[role]]\nname = \"security\"\ngroups = [\"security\"]\npermissions = [\"audit:read\"]\n";
    std::fs::write(cdir.join("policy.toml"), policy).unwrap();
    let (code, text) = c.curl("POST", "/v1/policy/reload", None);
    assert_eq!(code, 200, "{text}");
    for path in ["/v1/audit", "/v1/audit/export"] {
        let (code, text) = c.curl("GET", path, None);
        assert_eq!(code, 403, "{path}: {text}");
        assert!(text.contains("audit:read"), "{text}");
    }
    let out = c.cli().args(["audit", "verify"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit:read"));
    let security = login(&c, "sam", &["security"]);
    let (code, text) = c.curl_as(&security, "GET", "/v1/audit?type=permission_denied", None);
    assert_eq!(code, 200, "{text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    let denial = &page["items"][0];
    assert_eq!(denial["actor"]["user"], "admin", "{page}");
    assert_eq!(denial["details"]["permission"], "audit:read");
    // Security reads but does not administer.
    let (code, _) = c.curl_as(&security, "GET", "/v1/workers", None);
    assert_eq!(code, 403);
}

#[test]
fn two_controllers_on_postgresql_keep_one_chain() {
    let url = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(common::pg::fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let a = Controller::start_on(&dir.path().join("a"), &url, "");
    let b = Controller::start_on(&dir.path().join("b"), &url, "");
    std::thread::scope(|s| {
        for (n, c) in [(0, &a), (1, &b), (2, &a), (3, &b)] {
            s.spawn(move || {
                for i in 0..15 {
                    create_target(c, &format!("c{n}-{i}"), "127.0.0.1:9");
                }
            });
        }
    });
    let (ok, v) = audit_json(&a, &["verify"]);
    assert!(ok, "{v}");
    let events = all_events(&b);
    assert_eq!(of_type(&events, "target_created").len(), 60);
    assert_eq!(v["events"].as_u64().unwrap() as usize, events.len());
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    let first = seqs[0];
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_syslog_sink_over_tls_loses_nothing_across_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let siem = Rsyslog::start(&dir.path().join("rsyslog"));
    let proxy = PausableProxy::start(&siem.addr);
    let cdir = dir.path().join("controller");
    let c = Controller::start_with(
        &cdir,
        &format!(
            "[audit]\ncheckpoint_every = 5\nship_interval = 0.2\n[[audit.sink]]\nname = \"wazuh\"\n\
             type = \"syslog-tls\"\naddress = \"{}\"\nserver_name = \"siem.test\"\nca_file = \"{}\"\n",
            proxy.addr,
            siem.ca_file.display()
        ),
    );
    for i in 0..4 {
        create_target(&c, &format!("before-{i}"), "127.0.0.1:9");
    }
    let received = |kind: &str, name: &str| {
        siem.messages()
            .iter()
            .any(|(msgid, _, text)| msgid == kind && text.contains(name))
    };
    wait_for(
        "rsyslog to receive the first events",
        Duration::from_secs(15),
        || received("target_created", "before-3"),
    );
    proxy.pause();
    for i in 0..6 {
        create_target(&c, &format!("during-{i}"), "127.0.0.1:9");
    }
    // An observation window, not a wait: the shipper would have sent these within it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !received("target_created", "during-5"),
        "the proxy was paused"
    );
    proxy.resume();
    create_target(&c, "after", "127.0.0.1:9");
    wait_for("rsyslog to catch up", Duration::from_secs(20), || {
        received("target_created", "after")
    });

    // Every event of the store arrived, with its id and sequence in the structured data.
    let messages = siem.messages();
    for e in all_events(&c) {
        let id = e["id"].as_str().unwrap();
        let (msgid, sd, text) = messages
            .iter()
            .find(|(_, sd, _)| sd.contains(&format!("id=\"{id}\"")))
            .unwrap_or_else(|| panic!("event {id} ({}) never reached rsyslog", e["type"]));
        assert_eq!(msgid, e["type"].as_str().unwrap());
        assert!(
            sd.starts_with("[portcullis@32473 ")
                && sd.contains(&format!("seq=\"{}\"", e["sequence"])),
            "{sd}"
        );
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), e);
    }
    assert!(messages
        .iter()
        .any(|(msgid, _, _)| msgid == "audit_checkpoint"));
    // The SIEM's copy verifies offline (duplicates from the resend are allowed).
    let copy = dir.path().join("siem-copy.jsonl");
    siem.copy_to(&copy);
    let (ok, v) = audit_json(&c, &["verify", "--file", copy.to_str().unwrap()]);
    assert!(ok, "{v}");
    let (ok, v) = audit_json(&c, &["verify", "--checkpoints", copy.to_str().unwrap()]);
    assert!(ok, "{v}");
}

/// Every column stored beside an event's signed body, edited in the store: `audit verify`
/// names the column at the right event, and `audit list` cannot be steered into answering a
/// filter with an event whose body says otherwise.
fn edited_index_columns_are_found(c: &Controller, url: &str) {
    let target = create_target(c, "echo", "127.0.0.1:9");
    let mallory = login(c, "mallory", &["nobody"]);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    let (code, _) = c.curl_as(
        &mallory,
        "POST",
        "/v1/targets/echo/authorize-session",
        Some(&body),
    );
    assert_eq!(code, 403);
    let events = all_events(c);
    let denied = one(&events, "session_denied").clone();
    assert_eq!(denied["target"], target.as_str());
    let seq = denied["sequence"].as_u64().unwrap();
    let unix = humantime::parse_rfc3339_weak(denied["time"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let restore = format!(
        "UPDATE audit_events SET type = 'session_denied', username = 'mallory', actor = '{}', \
         decision = 'deny', session_id = NULL, target_id = '{target}', time = {unix}, id = '{}', \
         hash = '{}' WHERE seq = {seq}",
        denied["actor"]["user_id"].as_str().unwrap(),
        denied["id"].as_str().unwrap(),
        denied["hash"].as_str().unwrap(),
    );
    sql(url, &[&restore]);
    let (ok, v) = audit_json(c, &["verify"]);
    assert!(ok, "{v}");
    for (column, set) in [
        ("type", "type = 'target_deleted'"),
        ("actor", "actor = 'u_someone_else'"),
        ("username", "username = 'alice'"),
        ("session_id", "session_id = 's_forged'"),
        ("target_id", "target_id = NULL"),
        ("decision", "decision = 'allow'"),
        ("time", "time = time + 86400"),
        ("id", "id = 'e_forged'"),
        ("hash", &format!("hash = '{}'", "0".repeat(64))),
    ] {
        sql(
            url,
            &[&format!("UPDATE audit_events SET {set} WHERE seq = {seq}")],
        );
        let (ok, v) = audit_json(c, &["verify"]);
        assert!(!ok, "{column}: {v}");
        assert_eq!(v["first_bad_event"], seq, "{column}: {v}");
        assert!(
            v["problem"]
                .as_str()
                .unwrap()
                .contains(&format!("column `{column}`")),
            "{column}: {v}"
        );
        sql(url, &[&restore]);
    }
    let (ok, v) = audit_json(c, &["verify"]);
    assert!(ok, "{v}");

    // Steering: mallory's token issue dressed up as a denial, an admin's action as mallory's.
    let login_seq = of_type(&events, "token_issued")
        .into_iter()
        .find(|e| e["details"]["user"] == "mallory")
        .unwrap()["sequence"]
        .as_u64()
        .unwrap();
    let created_seq = one(&events, "target_created")["sequence"].as_u64().unwrap();
    sql(
        url,
        &[
            &format!("UPDATE audit_events SET type = 'session_denied', decision = 'deny' WHERE seq = {login_seq}"),
            &format!("UPDATE audit_events SET username = 'mallory' WHERE seq = {created_seq}"),
        ],
    );
    for (args, steered) in [
        (vec!["--type", "session_denied"], login_seq),
        (vec!["--decision", "deny"], login_seq),
        (vec!["--user", "mallory"], created_seq),
    ] {
        let out = c
            .cli()
            .args(["audit", "list", "--json"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!listed.is_empty(), "{args:?}");
        assert!(
            listed.iter().all(|e| e["sequence"] != steered),
            "{args:?} returned the steered event {steered}: {listed:#?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("event {steered}:")) && stderr.contains("audit verify"),
            "{args:?}: {stderr}"
        );
    }
    let (ok, v) = audit_json(c, &["verify"]);
    assert!(!ok, "{v}");
    assert_eq!(v["first_bad_event"], created_seq.min(login_seq), "{v}");
}

#[test]
fn edited_index_columns_are_found_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    edited_index_columns_are_found(&c, &sqlite_url(&c));
}

#[test]
fn edited_index_columns_are_found_on_postgresql() {
    let url = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(common::pg::fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_on(&dir.path().join("controller"), &url, "");
    edited_index_columns_are_found(&c, &url);
}

/// A Python with `rfc8785` and `cryptography`, which scripts/test installs.
fn python_with_jcs() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_AUDIT_PYTHON") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path = Path::new(&home).join(".cache/portcullis-test/audit-verify/bin/python");
    assert!(
        path.exists(),
        "no Python with rfc8785 at {}: run the suite with scripts/test, which installs it",
        path.display()
    );
    path
}

/// tests/audit_verify.py on `export` with the pinned `keys`: (exit code, stdout, stderr).
fn python_verify(export: &Path, keys: &[String]) -> (Option<i32>, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/audit_verify.py");
    let out = Command::new(python_with_jcs())
        .arg(script)
        .arg(export)
        .args(keys.iter().flat_map(|k| ["--public-key", k.as_str()]))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_export_verifies_with_an_independent_python_implementation() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("controller");
    // A whole-second window: `details.window_secs` is then the float 1.0, which JCS writes
    // `1` (as ECMAScript does) and schema 2's form wrote `1.0`.
    let config = file_sink(&cdir).replace("denial_window = 0.2", "denial_window = 1.0");
    let c = Controller::start_with(&cdir, &config);
    let target = create_target(&c, "py-1", "127.0.0.1:9");
    let (code, text) = c.curl(
        "PATCH",
        &format!("/v1/targets/{target}"),
        Some(r#"{"address": "127.0.0.1:10"}"#),
    );
    assert_eq!(code, 200, "{text}");
    let (code, _) = c.curl_as("pat1.nonsense", "GET", "/v1/targets", None);
    assert_eq!(code, 401);
    wait_for(
        "the token_rejected summary",
        Duration::from_secs(10),
        || !of_type(&all_events(&c), "token_rejected").is_empty(),
    );
    let keys = audit_keys(&c);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let export = dir.path().join("export.jsonl");
    let lines = export_lines(&c, &export);
    let events = events_of(&lines);
    let floats = events
        .iter()
        .find(|e| e["type"] == "token_rejected")
        .unwrap();
    assert_eq!(
        floats["details"]["window_secs"].as_f64(),
        Some(1.0),
        "{floats}"
    );
    assert!(lines.iter().any(|l| l.contains(r#""window_secs":1.0"#)));

    // The real chain: every hash, link and signature as Python recomputes them.
    let (code, stdout, stderr) = python_verify(&export, &keys);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let last = events.last().unwrap();
    assert_eq!(
        stdout.trim(),
        format!(
            "intact: {} events, head {}:{}",
            events.len(),
            last["sequence"],
            last["hash"].as_str().unwrap()
        )
    );

    // One edited event is found, and named.
    let victim = events
        .iter()
        .position(|e| e["type"] == "target_updated")
        .unwrap();
    let mut edited = events.clone();
    edited[victim]["details"]["address"] = json!("10.0.0.66:22");
    let tampered = dir.path().join("tampered.jsonl");
    let text: Vec<String> = std::iter::once(lines[0].clone())
        .chain(edited.iter().map(Value::to_string))
        .collect();
    std::fs::write(&tampered, text.join("\n") + "\n").unwrap();
    let (code, stdout, stderr) = python_verify(&tampered, &keys);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let named = format!(
        "event {} ({}): its content does not match its hash",
        events[victim]["sequence"],
        events[victim]["id"].as_str().unwrap()
    );
    assert!(stderr.starts_with(&named), "{stderr}");
    // Portcullis' own verifier agrees on both.
    let v = verify_lines(&c, dir.path(), "clean", &lines, &keys);
    assert_eq!(v["ok"], true, "{v}");
    let v = verify_lines(&c, dir.path(), "edited", &text, &keys);
    assert_eq!(v["first_bad_event"], events[victim]["sequence"], "{v}");
}
