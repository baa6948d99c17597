//! The offline administration of local users with the real binary on a SQLite store:
//! `portcullis controller users add|reset|list`. A generated password is printed once on
//! stdout (nothing else is); a password file others can read is refused; every change is in
//! the audit log as `local_user_created` or `local_user_reset`, and no password is in any
//! event or on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::dev::bin;
use serde_json::Value;
use sqlx::{Connection as _, Row as _};

/// A controller config on SQLite in `dir`, with its master key file (0600).
fn config(dir: &Path) -> PathBuf {
    let key = dir.join("master.key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .unwrap();
    f.write_all("cd".repeat(32).as_bytes()).unwrap();
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n[keys]\nmaster_key_file = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("portcullis.db").display(),
            key.display()
        ),
    )
    .unwrap();
    path
}

fn users(config: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(["controller", "users"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn list(config: &Path) -> Vec<Value> {
    let (stdout, _) = ok(&users(config, &["list", "--json"]));
    serde_json::from_str::<Value>(&stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `(type, body)` of every stored audit event, oldest first.
fn audit(dir: &Path) -> Vec<(String, String)> {
    let url = format!("sqlite://{}", dir.join("portcullis.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT type, body FROM audit_events ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>("type"), r.get::<String, _>("body")))
            .collect()
    })
}

fn password_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn users_are_added_reset_and_listed_offline_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());

    // A generated one-time password: alone on stdout, once; what to do with it on stderr.
    let (stdout, stderr) = ok(&users(&config, &["add", "alice", "--groups", "admins,ops"]));
    let first = stdout.trim().to_owned();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(first.len(), 19, "{first}");
    assert!(stderr.contains("portcullis login --password"), "{stderr}");
    assert!(stderr.contains("local_user_created"), "{stderr}");
    assert!(!stderr.contains(&first), "{stderr}");

    let listed = list(&config);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["username"], "alice");
    assert_eq!(listed[0]["groups"], serde_json::json!(["admins", "ops"]));
    assert_eq!(listed[0]["totp_enrolled"], false);
    assert_eq!(listed[0]["must_change_password"], true);

    // The same name again is refused, saying what to do.
    let err = refused(&users(&config, &["add", "alice", "--groups", "admins"]));
    assert!(
        err.contains("exists already") && err.contains("users reset alice"),
        "{err}"
    );

    // A password file others can read is refused; a private one is used, nothing printed.
    let open = password_file(dir.path(), "open", "a password for automation\n", 0o644);
    let err = refused(&users(
        &config,
        &[
            "add",
            "deploy",
            "--groups",
            "ci",
            "--password-file",
            open.to_str().unwrap(),
        ],
    ));
    assert!(err.contains("chmod 600"), "{err}");
    let private = password_file(dir.path(), "private", "a password for automation\n", 0o600);
    let (stdout, stderr) = ok(&users(
        &config,
        &[
            "add",
            "deploy",
            "--groups",
            "ci",
            "--password-file",
            private.to_str().unwrap(),
        ],
    ));
    assert_eq!(stdout, "");
    assert!(!stderr.contains("a password for automation"), "{stderr}");

    // A password is never an argument.
    let err = refused(&users(
        &config,
        &[
            "add",
            "bob",
            "--groups",
            "ci",
            "--password",
            "a password on the command line",
        ],
    ));
    assert!(err.contains("--password"), "{err}");
    assert!(!list(&config).iter().any(|u| u["username"] == "bob"));

    // A reset prints a new one-time password; an unknown user is refused.
    let (stdout, _) = ok(&users(&config, &["reset", "alice"]));
    let second = stdout.trim().to_owned();
    assert_eq!(second.len(), 19);
    assert_ne!(second, first);
    let err = refused(&users(&config, &["reset", "carol"]));
    assert!(err.contains("no local user \"carol\""), "{err}");

    let text = ok(&users(&config, &["list"])).0;
    assert!(text.contains("alice") && text.contains("deploy"), "{text}");
    assert!(text.contains("admins,ops"), "{text}");

    // Every change is audited, once; no password in any event.
    let events = audit(dir.path());
    let kinds: Vec<_> = events
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("local_user_"))
        .collect();
    assert_eq!(
        kinds,
        [
            "local_user_created",
            "local_user_created",
            "local_user_reset"
        ]
    );
    for (_, body) in &events {
        for secret in [first.as_str(), second.as_str(), "a password for automation"] {
            assert!(!body.contains(secret), "a password in an event: {body}");
        }
    }
    let reset: Value = serde_json::from_str(
        &events
            .iter()
            .find(|(k, _)| k == "local_user_reset")
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(reset["details"]["user"], "alice");
    assert_eq!(reset["details"]["issuer"], "local:");
    assert!(reset["actor"]["source"]
        .as_str()
        .unwrap()
        .starts_with("local:uid="));
}
