//! Local users over the API with the real binary and a real controller process:
//! `portcullis users add|list|show|reset|disable` and the same routes with curl. An
//! administrator with `users:admin` whose login met MFA does each; the same administrator
//! with a password-only login is refused, naming MFA; a group outside `[auth.local]
//! allowed_groups` is refused naming the key. Every change is in the audit log with the
//! administrator as the actor, and no one-time password is in any event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::{Command, Output};

use common::cluster::Controller;
use common::dev::bin;
use serde_json::{json, Value};

/// `[auth.local]` after the harness's `[workers]` lines.
const ALLOWED: &str = "\n[auth.local]\nallowed_groups = [\"ops\", \"readers\"]\n";

/// A break-glass token for `user` in `admins` whose login asserted `amr`.
fn admin_token(c: &Controller, user: &str, amr: &str) -> String {
    let out = Command::new(bin())
        .args(["controller", "issue-token", "--json", "--config"])
        .arg(&c.config)
        .args(["--user", user, "--group", "admins", "--amr", amr])
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `portcullis users ARGS` with `token`.
fn users(c: &Controller, token: &str, args: &[&str]) -> Output {
    c.cli()
        .env("PORTCULLIS_TOKEN", token)
        .arg("users")
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The events of `kind`, oldest first.
fn events(c: &Controller, kind: &str) -> Vec<Value> {
    let (code, body) = c.curl("GET", &format!("/v1/audit?type={kind}"), None);
    assert_eq!(code, 200, "{body}");
    let mut items = serde_json::from_str::<Value>(&body).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    items.sort_by_key(|e| e["sequence"].as_u64());
    items
}

#[test]
fn an_admin_with_mfa_adds_lists_shows_resets_and_disables_local_users() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_with(&dir.path().join("c"), ALLOWED);
    let mfa = admin_token(&c, "ada", "otp");

    // add: the one-time password alone on stdout, what to do next on stderr.
    let out = users(&c, &mfa, &["add", "bob", "--groups", "ops"]);
    let password = ok(&out).trim().to_owned();
    assert!(
        password.len() >= 16 && !password.contains(' '),
        "{password}"
    );
    let advice = text(&out.stderr);
    assert!(
        advice.contains("portcullis login --password --user bob")
            && advice.contains("local_user_created"),
        "{advice}"
    );
    let out = users(
        &c,
        &mfa,
        &["add", "carol", "--groups", "ops,readers", "--json"],
    );
    let carol: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(carol["user"]["groups"], json!(["ops", "readers"]));
    assert_eq!(carol["user"]["must_change_password"], true);
    let carol_password = carol["one_time_password"].as_str().unwrap().to_owned();

    // The same name again: refused, saying what to do.
    let out = users(&c, &mfa, &["add", "bob", "--groups", "ops"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("portcullis users reset bob"),
        "{}",
        text(&out.stderr)
    );

    // list: a table (no service account column before that branch's routes answer).
    let table = ok(&users(&c, &mfa, &["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bob ") && l.contains("enrolling")),
        "{table}"
    );
    let listed: Value = serde_json::from_str(&ok(&users(&c, &mfa, &["list", "--json"]))).unwrap();
    let names: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "carol"]);

    // show, text and JSON; an unknown user is a 404 naming it.
    let shown = ok(&users(&c, &mfa, &["show", "bob"]));
    assert!(
        shown.contains("Groups:") && shown.contains("ops"),
        "{shown}"
    );
    let shown: Value =
        serde_json::from_str(&ok(&users(&c, &mfa, &["show", "bob", "--json"]))).unwrap();
    assert_eq!(shown["totp_enrolled"], false);
    assert_eq!(shown["recovery_codes_left"], 0);
    let out = users(&c, &mfa, &["show", "nobody"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no local user \"nobody\""),
        "{}",
        text(&out.stderr)
    );
    let (code, body) = c.curl_as(&mfa, "GET", "/v1/users/local/nobody", None);
    assert_eq!(code, 404, "{body}");

    // reset: a new one-time password.
    let out = users(&c, &mfa, &["reset", "bob"]);
    let second = ok(&out).trim().to_owned();
    assert_ne!(second, password);
    assert!(
        text(&out.stderr).contains("local_user_reset"),
        "{}",
        text(&out.stderr)
    );

    // disable, over curl: no token of bob's yet; bob is disabled.
    let (code, body) = c.curl_as(&mfa, "POST", "/v1/users/local/bob/disable", None);
    assert_eq!(code, 200, "{body}");
    let disabled: Value = serde_json::from_str(&body).unwrap();
    assert!(disabled["user"]["disabled_at"].is_u64(), "{body}");
    assert_eq!(disabled["revoked_token_ids"], json!([]));
    let out = users(&c, &mfa, &["disable", "carol"]);
    assert!(ok(&out).contains("local user carol disabled"));
    let table = ok(&users(&c, &mfa, &["list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bob ") && l.contains("disabled")),
        "{table}"
    );

    // Every change recorded, with the administrator as the actor, without the passwords.
    for (kind, count) in [
        ("local_user_created", 2),
        ("local_user_reset", 1),
        ("local_user_disabled", 2),
    ] {
        let found = events(&c, kind);
        assert_eq!(found.len(), count, "{kind}: {found:?}");
        for e in &found {
            assert_eq!(e["actor"]["user"], "ada", "{e}");
            let body = e.to_string();
            for secret in [&password, &second, &carol_password] {
                assert!(!body.contains(secret.as_str()), "a password in {body}");
            }
        }
    }
    assert_eq!(
        events(&c, "local_user_created")[0]["details"]["user"],
        "bob"
    );
    assert_eq!(
        events(&c, "local_user_disabled")[0]["details"]["user"],
        "bob"
    );
}

#[test]
fn user_administration_without_mfa_or_outside_the_allowed_groups_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_with(&dir.path().join("c"), ALLOWED);
    let password_only = admin_token(&c, "ada", "pwd");
    let mfa = admin_token(&c, "ada", "otp");

    // users:admin, but a login without MFA: refused by the CLI and over curl, audited.
    let out = users(&c, &password_only, &["add", "bob", "--groups", "ops"]);
    assert_eq!(out.status.code(), Some(5), "forbidden");
    let err = text(&out.stderr);
    assert!(err.contains("MFA") && err.contains("forbidden"), "{err}");
    for (method, path) in [
        ("GET", "/v1/users/local"),
        ("POST", "/v1/users/local/bob/reset"),
        ("POST", "/v1/users/local/bob/disable"),
    ] {
        let (code, body) = c.curl_as(&password_only, method, path, None);
        assert_eq!(code, 403, "{method} {path}: {body}");
        assert!(body.contains("MFA"), "{body}");
    }
    let denied = events(&c, "permission_denied");
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert!(denied.iter().all(
        |e| e["details"]["permission"] == "users:admin with MFA" && e["actor"]["user"] == "ada"
    ));

    // A group outside allowed_groups: 400 naming the group and the key; nothing created.
    let out = users(&c, &mfa, &["add", "bob", "--groups", "ops,admins"]);
    assert_eq!(out.status.code(), Some(7), "refused");
    let err = text(&out.stderr);
    assert!(
        err.contains("\"admins\" is not among `[auth.local] allowed_groups` (ops, readers)"),
        "{err}"
    );
    // A password is never taken from the request.
    let (code, body) = c.curl_as(
        &mfa,
        "POST",
        "/v1/users/local",
        Some(r#"{"username":"bob","groups":["ops"],"password":"chosen-by-the-admin"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(events(&c, "local_user_created").is_empty());
    let listed: Value = serde_json::from_str(&ok(&users(&c, &mfa, &["list", "--json"]))).unwrap();
    assert_eq!(listed["users"], json!([]));
}
