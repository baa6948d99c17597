//! No development login outside `portcullis dev`: a config that still sets `auth.dev_login`
//! is refused naming the key and what to do, a controller run from a config has no
//! `/v1/auth/dev-login` route, and the break-glass `controller issue-token` gives root on the
//! controller a token, recorded as `token_issued`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::Command;

use common::cluster::Controller;
use common::dev::bin;
use serde_json::Value;

#[test]
fn a_config_that_sets_dev_login_is_refused_naming_the_key_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // A controller that ran once, so the key and store are valid; then an old config line.
    let c = Controller::start(&dir.path().join("c"));
    let text = std::fs::read_to_string(&c.config).unwrap();
    let lines = text.lines().count();
    std::fs::write(&c.config, format!("{text}[auth]\ndev_login = true\n")).unwrap();
    let out = Command::new(bin())
        .args(["controller", "run", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} line {}: `auth.dev_login` is no longer a config key",
            c.config.display(),
            lines + 2
        )) && err.contains("portcullis dev")
            && err.contains("portcullis controller issue-token"),
        "{err}"
    );
}

#[test]
fn a_controller_run_from_a_config_has_no_dev_login_and_issue_token_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    // The harness's admin token comes from `controller issue-token`.
    let c = Controller::start(&dir.path().join("c"));
    let (code, body) = c.curl(
        "POST",
        "/v1/auth/dev-login",
        Some(r#"{"username":"eve","groups":["admins"],"amr":["mfa"]}"#),
    );
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("token"), "{body}");

    let (code, body) = c.curl("GET", "/v1/whoami", None);
    assert_eq!(code, 200, "{body}");
    let me: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["issuer"], "portcullis-local");
    assert_eq!(me["groups"], serde_json::json!(["admins"]));
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&"targets:admin".into()),
        "{me}"
    );

    // Text output: the token alone on stdout, once; what it is on stderr.
    let out = Command::new(bin())
        .args(["controller", "issue-token", "--config"])
        .arg(&c.config)
        .args([
            "--user",
            "ops",
            "--group",
            "auditors,readers",
            "--ttl",
            "10m",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        !token.contains(char::is_whitespace) && token.len() >= 32,
        "{token}"
    );
    let (code, body) = c.curl_as(&token, "GET", "/v1/whoami", None);
    assert_eq!(code, 200, "{body}");
    let ops: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ops["groups"], serde_json::json!(["auditors", "readers"]));
    let ttl = ops["token_expires_at"].as_u64().unwrap()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
    assert!((500..=600).contains(&ttl), "{ttl}");

    // Recorded with its event, the operator as the actor; the secret is not in it.
    let (code, body) = c.curl("GET", "/v1/audit?type=token_issued", None);
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains(&token) && !body.contains(&c.token));
    let events: Value = serde_json::from_str(&body).unwrap();
    let events = events["items"].as_array().unwrap();
    let users: Vec<&str> = events
        .iter()
        .map(|e| e["details"]["user"].as_str().unwrap())
        .collect();
    assert!(
        users.contains(&"ops") && users.contains(&"admin"),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["actor"]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("local:uid="))));

    // A bad name is refused before anything is written.
    let out = Command::new(bin())
        .args(["controller", "issue-token", "--config"])
        .arg(&c.config)
        .args(["--user", "bad name"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a user name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
