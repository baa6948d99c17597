//! The first minute of a controller without an OpenID provider, end to end with the real
//! binary: `portcullis controller init` on an empty directory, then the first admin's login
//! with the bootstrap credential through the real CLI (`login --bootstrap-file
//! --password-file`), TOTP codes from Debian's `oathtool`. The login sets the admin's
//! password and enrols TOTP; the token it gets administers users (its login met MFA); the
//! credential works once; an expired credential says how to get a new one, and the offline
//! `controller users reset` gives one. Every step's event is in the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cluster::Controller;
use common::dev::bin;
use common::init::{init_controller, run_init, write_config};
use common::totp::{oathtool, unix_now};
use common::wait::poll;
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "the first admin's own passphrase";

/// Extra config for the controller `init` set up: the groups its admin may grant.
const ALLOWED: &str = "[auth.local]\nallowed_groups = [\"ops\"]\n";

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn local_login(c: &Controller, body: &Value) -> (u16, Value) {
    let (code, text) = c.curl_as("", "POST", "/v1/auth/local/login", Some(&body.to_string()));
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The stored events of `kind` (as the break-glass admin of the test harness).
fn events(c: &Controller, kind: &str) -> Vec<Value> {
    let (code, text) = c.curl("GET", &format!("/v1/audit?type={kind}"), None);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn the_first_admin_logs_in_with_the_bootstrap_credential_once_and_administers_users() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
    let credential = init_controller(dir.path(), &url);
    assert!(credential.starts_with("pcb_"), "{credential}");
    let c = Controller::start_on(dir.path(), &url, ALLOWED);

    let files = tempfile::tempdir().unwrap();
    let bootstrap = files.path().join("bootstrap");
    private_file(&bootstrap, &credential);
    let password = files.path().join("password");
    private_file(&password, NEW_PASSWORD);
    let token_file = files.path().join("token");

    // The first login, with no prompt but the TOTP code of the offered secret.
    let mut child = c
        .cli()
        .env_remove("PORTCULLIS_TOKEN")
        .args(["login", "--user", "admin", "--json", "--bootstrap-file"])
        .arg(&bootstrap)
        .arg("--password-file")
        .arg(&password)
        .arg("--token-file")
        .arg(&token_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = String::new();
    let mut secret = None;
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(base32) = line.strip_prefix("or type the secret: ") {
            let at = unix_now();
            writeln!(stdin, "{}", oathtool(base32.trim(), at)).unwrap();
            secret = Some((base32.trim().to_owned(), at));
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{seen}");
    assert!(secret.is_some(), "the first login enrols TOTP: {seen}");
    assert!(!seen.contains(&credential), "the credential is never shown");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["recovery_codes"].as_array().unwrap().len(), 10);
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The admin's token: issuer local:, pwd and otp, and every admin permission.
    let (code, text) = c.curl_as(&token, "GET", "/v1/whoami", None);
    assert_eq!(code, 200, "{text}");
    let me: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(me["issuer"], "local:");
    assert_eq!(me["subject"], "admin");
    assert_eq!(me["amr"], json!(["pwd", "otp", "mfa"]));
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("users:admin")),
        "{me}"
    );

    // Its login met MFA: it administers users (a one-time password, alone on stdout).
    let added = c
        .cli()
        .env("PORTCULLIS_TOKEN", &token)
        .args(["users", "add", "bob", "--groups", "ops"])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(!String::from_utf8_lossy(&added.stdout).trim().is_empty());

    // The credential worked once: it is now a wrong password, and never an API token.
    let (code, body) = local_login(&c, &json!({"username": "admin", "password": credential}));
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["error"], "invalid_credentials", "{body}");
    let (code, _) = c.curl_as(&credential, "GET", "/v1/targets", None);
    assert_eq!(code, 401);
    // The new password and a code of a later step than the enrolment's log in again.
    let (secret, enrolled_at) = secret.unwrap();
    let step = (enrolled_at / 30 + 1).max(unix_now() / 30);
    let body = json!({"username": "admin", "password": NEW_PASSWORD,
                      "totp_code": oathtool(&secret, step * 30)});
    let (code, body) = local_login(&c, &body);
    assert_eq!(code, 201, "{body}");

    // Every step is in the audit log, and no event holds the credential.
    let init = events(&c, "controller_initialised");
    assert_eq!(init.len(), 1, "{init:?}");
    assert_eq!(init[0]["details"]["user"], "admin");
    let changed = events(&c, "local_password_changed");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["details"]["replaced"], "bootstrap");
    assert_eq!(changed[0]["actor"]["user"], "admin");
    assert_eq!(events(&c, "totp_enrolled").len(), 1);
    assert_eq!(events(&c, "local_user_created").len(), 1);
    let logins = events(&c, "login_succeeded");
    assert!(
        logins
            .iter()
            .filter(|e| e["details"]["issuer"] == "local:")
            .count()
            >= 2,
        "{logins:?}"
    );
    let (_, all) = c.curl("GET", "/v1/audit?limit=1000", None);
    assert!(!all.contains(&credential), "no event holds the credential");
    assert!(!all.contains(NEW_PASSWORD), "no event holds a password");
}

#[test]
fn an_expired_bootstrap_credential_says_how_to_get_a_new_one_and_reset_gives_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
    let config = write_config(
        dir.path(),
        &url,
        "[auth.local]\nbootstrap_lifetime = \"1s\"\n",
    );
    let init = run_init(&config, &[], "warn");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let credential = String::from_utf8(init.stdout).unwrap().trim().to_owned();
    let c = Controller::start_on(dir.path(), &url, "");

    let login = json!({"username": "admin", "password": credential});
    let (code, body) = poll(
        "the bootstrap credential to expire",
        Duration::from_secs(20),
        || match local_login(&c, &login) {
            (200, body) => Err(body),
            other => Ok(other),
        },
    );
    assert_eq!(code, 401, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("expired") && message.contains("portcullis controller users reset admin"),
        "{message}"
    );
    // A wrong password does not learn that the credential expired.
    let (code, body) = local_login(&c, &json!({"username": "admin", "password": "pcb_guess"}));
    assert_eq!(code, 401);
    assert!(!body.to_string().contains("expired"), "{body}");

    // The offline reset (always possible on the controller host) gives a new one-time
    // password, which asks for a new password and TOTP enrolment.
    let reset = Command::new(bin())
        .args(["controller", "users", "reset", "admin", "--config"])
        .arg(dir.path().join("controller.toml"))
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let one_time = String::from_utf8(reset.stdout).unwrap().trim().to_owned();
    let (code, body) = local_login(&c, &json!({"username": "admin", "password": one_time}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["needs"],
        json!(["new_password", "totp_enrolment"]),
        "{body}"
    );
}
