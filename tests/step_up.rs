//! Step-up MFA bound to one session request (docs/auth.md, "Step-up MFA"), against
//! `portcullis dev`: a local user answers with a TOTP code, and an OIDC user logs in again at
//! the real OpenID provider (npm `oidc-provider`), which honours `max_age=0`, or (switched)
//! ignores it, or returns a weaker login. A proof opens one session, for its target and
//! client key only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::console::{enrol_for_token, stack_with};
use common::dev::{curl, Dev};
use common::oidc_login::{
    cli_login, install_browser_script, user_cli, wait_file, wait_output, CurlBrowser, Env, Who,
};
use common::raw::client_public_key;
use common::totp::{oathtool, unix_now};
use common::wait::{poll, wait_for};
use serde_json::{json, Value};

/// `echo` (and `echo-b`, made by the test) need a login with an OTP (local users) or the
/// `gold` acr (the provider's users) no older than 5 s; `admins` (the dev identity) manage
/// targets and read the audit log.
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
name = "lab-admin"
groups = ["admins"]
permissions = ["targets:admin", "audit:read", "sessions:read-all"]

[[role]]
name = "echo-fresh"
groups = ["developers"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
[role.constraints]
mfa = { amr = ["otp"], acr = ["gold"], max_auth_age_secs = 5 }
"#;

fn call(dev: &Dev, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = curl(dev, method, path, Some(token), body.as_deref());
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn authorize(
    dev: &Dev,
    token: &str,
    target: &str,
    key: &str,
    step_up: Option<&Value>,
) -> (u16, Value) {
    let mut body = json!({"client_public_key": key});
    if let Some(proof) = step_up {
        body["step_up"] = json!({"challenge_id": proof["challenge_id"], "proof": proof["proof"]});
    }
    call(
        dev,
        "POST",
        &format!("/v1/targets/{target}/authorize-session"),
        token,
        Some(body),
    )
}

fn events(dev: &Dev, kind: &str) -> Vec<Value> {
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (status, v) = call(dev, "GET", &format!("/v1/audit?kind={kind}"), &admin, None);
    assert_eq!(status, 200, "{v}");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// A second target like `echo`, for a proof brought to the wrong target.
fn add_echo_b(dev: &Dev) {
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (_, echo) = call(dev, "GET", "/v1/targets/echo", &admin, None);
    let body =
        json!({"name": "echo-b", "address": echo["address"], "zone": "LOCAL", "service": "echo"});
    let (status, v) = call(dev, "POST", "/v1/targets", &admin, Some(body));
    assert_eq!(status, 201, "{v}");
}

/// Waits until the token's login is too old for `echo-fresh`: the challenge.
fn wait_for_challenge(dev: &Dev, token: &str, key: &str) -> Value {
    poll("a step-up challenge", Duration::from_secs(20), || {
        let (status, v) = authorize(dev, token, "echo", key, None);
        match (status, v["error"].as_str()) {
            (403, Some("step_up_required")) => Ok(v),
            _ => Err(format!("{status} {v}")),
        }
    })
}

#[test]
fn a_local_users_totp_step_up_opens_one_session_for_its_target_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let dev = stack_with(dir.path(), "", POLICY, &[("dev1", "developers")], &[]);
    add_echo_b(&dev);
    let (secret, step, token) = enrol_for_token(&dev, "dev1");
    let key = client_public_key();
    // Fresh from the login: allowed as it is.
    let (status, v) = authorize(&dev, &token, "echo", &key, None);
    assert_eq!(status, 201, "{v}");

    // Five seconds later the login is too old: a challenge, not a plain denial.
    let refused = wait_for_challenge(&dev, &token, &key);
    let challenge = &refused["step_up"];
    assert_eq!(challenge["target"], "echo", "{refused}");
    assert_eq!(challenge["role"], "echo-fresh");
    assert_eq!(challenge["methods"], json!(["totp"]));
    assert_eq!(challenge["max_age"], 0);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("sign in again"),
        "{refused}"
    );
    let id = challenge["id"].as_str().unwrap();

    // A wrong code is refused and counted.
    let path = format!("/v1/step-up/{id}/totp");
    let (status, v) = call(&dev, "POST", &path, &token, Some(json!({"code": "000000"})));
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("step_up_refused")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("wrong TOTP code"),
        "{v}"
    );
    // The next step's code (the login used this step's): a proof.
    let code = oathtool(&secret, (step + 1) * 30);
    let (status, proof) = call(&dev, "POST", &path, &token, Some(json!({"code": code})));
    assert_eq!(status, 201, "{proof}");
    assert_eq!(proof["challenge_id"], id);
    assert!(
        proof["amr"].as_array().unwrap().contains(&json!("otp")),
        "{proof}"
    );
    // The same code again: refused (a code works once).
    let (status, v) = call(&dev, "POST", &path, &token, Some(json!({"code": code})));
    assert_eq!(status, 403, "{v}");

    // The proof for another target, or with another client key: refused.
    let (status, v) = authorize(&dev, &token, "echo-b", &key, Some(&proof));
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("step_up_refused")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("made for target echo, not echo-b"),
        "{v}"
    );
    let (status, v) = authorize(&dev, &token, "echo", &client_public_key(), Some(&proof));
    assert_eq!(status, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("another client key"),
        "{v}"
    );
    // The challenged request with its proof: the session, naming the step-up.
    let (status, session) = authorize(&dev, &token, "echo", &key, Some(&proof));
    assert_eq!(status, 201, "{session}");
    let authorized = events(&dev, "session_authorized");
    let last = authorized
        .iter()
        .find(|e| e["session"] == session["session_id"])
        .expect("the session's event");
    assert_eq!(last["details"]["step_up"], id, "{last}");
    // Replayed: refused, and no session.
    let (status, v) = authorize(&dev, &token, "echo", &key, Some(&proof));
    assert_eq!(status, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("already used"),
        "{v}"
    );
    // The token itself is no stronger than before.
    let (status, v) = authorize(&dev, &token, "echo", &key, None);
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("step_up_required")),
        "{v}"
    );

    // The CLI answers a challenge with PORTCULLIS_TOTP_CODE.
    let code = oathtool(&secret, (step + 2) * 30);
    wait_for(
        "a TOTP step the controller accepts",
        Duration::from_secs(40),
        || step + 2 <= unix_now() / 30 + 1,
    );
    let out = dev
        .cli()
        .env("PORTCULLIS_TOKEN", &token)
        .env("PORTCULLIS_TOTP_CODE", &code)
        .args(["connect", "echo", "--exec", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Step-up required for echo"), "{err}");

    for kind in ["step_up_required", "step_up_proven", "step_up_failed"] {
        assert!(!events(&dev, kind).is_empty(), "no {kind} event");
    }
    let failed = events(&dev, "step_up_failed");
    assert!(failed
        .iter()
        .any(|e| e["reason"].as_str().unwrap_or("").contains("already used")));
}

/// `portcullis connect echo --exec true` as the provider's user of `home`, whose browser
/// (the home's cookie jar, so the provider's session too) signs in as `who` if asked. The
/// outcome, stderr, and whether the provider showed its login form.
fn connect_in_browser(env: &Env, home: &Path, who: &Who) -> (bool, String, bool) {
    let _ = std::fs::remove_file(home.join("opened-url"));
    let child = user_cli(env, home)
        .args(["connect", "echo", "--exec", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = wait_file(&home.join("opened-url"));
    assert!(url.starts_with(&env.provider.issuer), "{url}");
    assert!(url.contains("max_age=0"), "{url}");
    assert!(url.contains("acr_values=gold"), "{url}");
    let mut browser = CurlBrowser::new(home, "browser", env.dev.var("PORTCULLIS_CA"));
    browser.sign_in(&url, who, true);
    let asked = browser.visited.iter().any(|u| u.ends_with("/login"));
    let (ok, err) = wait_output(child);
    (ok, err, asked)
}

fn provider_ignores_max_age(env: &Env, on: bool) {
    let url = format!(
        "{}/admin/ignore-max-age?on={}",
        env.provider.issuer,
        u8::from(on)
    );
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_oidc_step_up_needs_a_fresh_login_that_the_provider_really_did() {
    let env = Env::start(POLICY, "", "");
    install_browser_script(&env);
    let home = env.dir.path().join("alice");
    let password_only = Who {
        user: "alice",
        groups: "developers",
        amr: "pwd",
        auth_age: 0,
        extra: &[],
    };
    let (ok, err) = cli_login(&env, &home, &password_only);
    assert!(ok, "{err}");

    // A provider that honours max_age=0 asks for the login again; a gold login answers.
    let gold = Who {
        extra: &[("acr", "gold")],
        ..password_only.clone()
    };
    let (ok, err, asked) = connect_in_browser(&env, &home, &gold);
    assert!(ok, "{err}");
    assert!(asked, "the provider did not ask for a fresh login");
    assert!(err.contains("Step-up required for echo"), "{err}");

    // A weaker fresh login (bronze, password only): refused, saying so.
    let bronze = Who {
        extra: &[("acr", "bronze")],
        ..password_only.clone()
    };
    let (ok, err, _) = connect_in_browser(&env, &home, &bronze);
    assert!(!ok, "a weaker step-up login opened the session");
    assert!(err.contains("weaker than asked"), "{err}");

    // The bronze login was the provider session's last: its auth_time must be older than
    // the next challenge, or a provider that ignores max_age would look fresh.
    let last_login_at = unix_now();

    // A provider that ignores max_age hands back its session's old auth_time: refused.
    wait_for("a new second", Duration::from_secs(5), || {
        unix_now() > last_login_at
    });
    provider_ignores_max_age(&env, true);
    let (ok, err, asked) = connect_in_browser(&env, &home, &gold);
    assert!(
        !asked,
        "the provider asked for a login although it ignores max_age"
    );
    assert!(!ok, "a stale step-up login opened the session");
    assert!(err.contains("ignored max_age"), "{err}");
    provider_ignores_max_age(&env, false);

    let failed = events(&env.dev, "step_up_failed");
    let reasons: Vec<&str> = failed.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("weaker than asked")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("ignored max_age")),
        "{reasons:?}"
    );
    let proven = events(&env.dev, "step_up_proven");
    assert_eq!(proven.len(), 1, "{proven:?}");
    assert_eq!(proven[0]["details"]["method"], "oidc");
    assert_eq!(proven[0]["details"]["acr"], "gold");
}
