//! `portcullis controller init` with the real binary on an empty directory (docs/auth.md "The
//! first admin"): it creates the master key (0600) and the database, prints the bootstrap
//! credential once (or writes it 0600 to `--bootstrap-file`, printing none of it), refuses a
//! second run without printing a credential, records `controller_initialised` in a chain that
//! verifies, and the credential is not an API token (401 on `GET /v1/targets`). On SQLite and
//! on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use common::cluster::Controller;
use common::init::{run_init, write_config};
use serde_json::Value;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A second `init` is refused, says what to do instead, and prints no credential.
fn second_init_refused(config: &Path) {
    let out = run_init(config, &[], "debug");
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "", "no credential on a refused init");
    assert!(!stderr.contains("pcb_"), "{stderr}");
    assert!(
        stderr.contains("already initialised")
            && stderr.contains("portcullis controller users add|reset"),
        "{stderr}"
    );
}

/// The newest event of `kind` in the running controller's audit log, read with `portcullis
/// audit list`; and the chain verifies (`portcullis audit verify`).
fn audited(c: &Controller, kind: &str) -> Value {
    let out = c
        .cli()
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    // Exit status 0 is the verdict: the chain holds (1 when it finds a fault).
    let (stdout, _) = ok(&out);
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    assert!(verdict["events"].as_u64().unwrap() >= 1, "{verdict}");
    let out = c
        .cli()
        .args(["audit", "list", "--limit", "1000", "--json"])
        .output()
        .unwrap();
    let (stdout, _) = ok(&out);
    let events: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    events
        .into_iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {stdout}"))
}

/// Init on an empty directory and everything after it, on the store at `url`.
fn init_then_run(dir: &Path, url: &str, store: &str) {
    let config = write_config(dir, url, "");
    let key = dir.join("master.key");
    assert!(!key.exists());

    // Debug logs on: the credential must still be on stdout only, once.
    let (stdout, stderr) = ok(&run_init(&config, &[], "debug"));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let credential = stdout.trim().to_owned();
    assert!(
        credential.starts_with("pcb_") && credential.len() >= 4 + 26,
        "{credential}"
    );
    assert!(
        !stderr.contains(&credential),
        "credential in the logs: {stderr}"
    );
    assert!(stderr.contains("master key created"), "{stderr}");
    assert!(
        stderr.contains("portcullis login --password --user admin")
            && stderr.contains("portcullis login --bootstrap-file"),
        "{stderr}"
    );
    assert!(stderr.contains("expires at"), "{stderr}");
    assert!(stderr.contains("not an API token"), "{stderr}");
    assert_eq!(mode(&key), 0o600);
    if store == "sqlite" {
        assert!(dir.join("portcullis.db").exists());
    }

    // The first admin: a local user who must change the password (and enrol TOTP).
    let out = std::process::Command::new(common::dev::bin())
        .args(["controller", "users", "list", "--json", "--config"])
        .arg(&config)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    let listed: Vec<Value> = serde_json::from_str(&ok(&out).0).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["username"], "admin");
    assert_eq!(listed[0]["groups"], serde_json::json!(["admins"]));
    assert_eq!(listed[0]["must_change_password"], true);
    assert_eq!(listed[0]["totp_enrolled"], false);

    let key_before = std::fs::read(&key).unwrap();
    second_init_refused(&config);
    assert_eq!(std::fs::read(&key).unwrap(), key_before, "the key is kept");

    // A running controller on that store (it reuses the master key init made).
    let c = Controller::start_on(dir, url, "");
    let (code, body) = c.curl_as(&credential, "GET", "/v1/targets", None);
    assert_eq!(
        code, 401,
        "the bootstrap credential is not an API token: {body}"
    );
    let (code, _) = c.curl("GET", "/v1/targets", None);
    assert_eq!(code, 200, "an admin token lists targets");

    let event = audited(&c, "controller_initialised");
    let d = &event["details"];
    assert_eq!(d["master_key"], "created");
    assert_eq!(d["store"], store);
    assert_eq!(d["user"], "admin");
    assert_eq!(d["issuer"], "local:");
    assert_eq!(d["groups"], serde_json::json!(["admins"]));
    assert_eq!(d["bootstrap_delivery"], "printed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = d["bootstrap_expires_at"].as_u64().unwrap();
    assert!(
        expires > now + 24 * 3600 - 120 && expires <= now + 24 * 3600,
        "24 h by default: {expires} vs {now}"
    );
    assert!(event["actor"]["source"]
        .as_str()
        .unwrap()
        .starts_with("local:uid="));
    assert!(!event.to_string().contains(&credential));
}

#[test]
fn init_on_an_empty_directory_prints_the_credential_once_and_it_is_no_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
    init_then_run(dir.path(), &url, "sqlite");
}

#[test]
fn init_on_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(common::pg::fresh_database());
    init_then_run(dir.path(), &url, "postgres");
}

#[test]
fn a_bootstrap_file_is_written_0600_and_the_credential_is_on_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
    let config = write_config(dir.path(), &url, "");

    // An existing file is refused before anything is made.
    let taken = dir.path().join("taken");
    std::fs::write(&taken, "keep").unwrap();
    let out = run_init(
        &config,
        &["--bootstrap-file", taken.to_str().unwrap()],
        "warn",
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stdout, "");
    assert!(stderr.contains("exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep");
    assert!(!dir.path().join("master.key").exists());

    let file = dir.path().join("bootstrap");
    let (stdout, stderr) = ok(&run_init(
        &config,
        &["--bootstrap-file", file.to_str().unwrap(), "--json"],
        "debug",
    ));
    assert_eq!(mode(&file), 0o600);
    let credential = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(credential.starts_with("pcb_"), "{credential}");
    assert!(!stdout.contains(&credential), "{stdout}");
    assert!(!stderr.contains(&credential), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["bootstrap_file"], file.to_str().unwrap());
    assert_eq!(json["bootstrap_credential"], Value::Null);
    assert_eq!(json["master_key"], "created");
    assert_eq!(json["admin"], "admin");
    assert_eq!(
        json["login"],
        format!(
            "portcullis login --bootstrap-file {} --user admin",
            file.display()
        )
    );

    // Without --json: only the path on stdout.
    let dir2 = tempfile::tempdir().unwrap();
    let url2 = format!("sqlite://{}", dir2.path().join("portcullis.db").display());
    let config2 = write_config(dir2.path(), &url2, "");
    let file2 = dir2.path().join("bootstrap");
    let (stdout, stderr) = ok(&run_init(
        &config2,
        &[
            "--bootstrap-file",
            file2.to_str().unwrap(),
            "--admin",
            "root",
            "--groups",
            "admins,ops",
        ],
        "warn",
    ));
    assert_eq!(stdout.trim(), file2.to_str().unwrap());
    let credential2 = std::fs::read_to_string(&file2).unwrap().trim().to_owned();
    assert!(!stderr.contains(&credential2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "portcullis login --bootstrap-file {} --user root",
            file2.display()
        )),
        "{stderr}"
    );

    // A config with local users off is refused with the advice, nothing made.
    let dir3 = tempfile::tempdir().unwrap();
    let url3 = format!("sqlite://{}", dir3.path().join("portcullis.db").display());
    let config3 = write_config(dir3.path(), &url3, "[auth.local]\nenabled = false\n");
    let out = run_init(&config3, &[], "warn");
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stdout, "");
    assert!(stderr.contains("[auth.local] enabled = false"), "{stderr}");
    assert!(!dir3.path().join("master.key").exists());
}
