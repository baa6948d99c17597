//! The console's test stack: `portcullis dev` with local users `ada` (admins) and `rev`
//! (reviewers: sees sessions, audit and recordings, cancels nothing) made offline with a
//! password file, and a TOTP enrolled through the API, as `portcullis login --password` does. Shared by tests/console.rs (curl) and tests/console_browser.rs
//! (chromium).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::dev::{bin, curl, Dev};
use super::totp::{oathtool, unix_now};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

pub(crate) const POLICY: &str = r#"
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
access = "allow"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "audit:read", "workers:admin"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]

[[role]]
name = "reviewer"
groups = ["reviewers"]
permissions = ["sessions:read-all", "audit:read", "recordings:read"]
"#;

/// Fast argon2.
pub(crate) const CONFIG: &str =
    "[auth.local]\n[auth.local.argon2]\nm_cost_kib = 7168\nt_cost = 5\n";

/// A dev stack with local user `ada` (admins) made offline with a password file;
/// `extra_config` is appended to dev's `--config` (e.g. an `[api]` certificate).
pub(crate) fn stack(dir: &Path, extra_config: &str) -> Dev {
    stack_with(
        dir,
        extra_config,
        POLICY,
        &[("ada", "admins"), ("rev", "reviewers")],
        &[],
    )
}

/// [`stack`] with another policy, other local users (name, comma-separated groups), each
/// with the password [`PASSWORD`], and more arguments for `portcullis dev`.
pub(crate) fn stack_with(
    dir: &Path,
    extra_config: &str,
    policy_text: &str,
    users: &[(&str, &str)],
    dev_args: &[&str],
) -> Dev {
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = state.join("master.key");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .unwrap()
        .write_all("ef".repeat(32).as_bytes())
        .unwrap();
    let offline = dir.join("controller.toml");
    std::fs::write(
        &offline,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n[keys]\nmaster_key_file = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n",
            state.join("portcullis.db").display(),
            key.display()
        ),
    )
    .unwrap();
    let password = dir.join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    for &(user, group) in users {
        let out = Command::new(bin())
            .args(["controller", "users", "add", user, "--groups", group])
            .arg("--config")
            .arg(&offline)
            .arg("--password-file")
            .arg(&password)
            .env("PORTCULLIS_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = dir.join("dev.toml");
    std::fs::write(&config, format!("{CONFIG}{extra_config}")).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, policy_text).unwrap();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ];
    args.extend_from_slice(dev_args);
    Dev::start_in(&state, &args)
}

/// Enrols ada's TOTP through the API (what `portcullis login --password` does); the secret
/// and the step of the code the enrolment used.
pub(crate) fn enrol(dev: &Dev) -> (String, u64) {
    enrol_user(dev, "ada")
}

/// [`enrol`] for `user` (`ada` or `rev`).
pub(crate) fn enrol_user(dev: &Dev, user: &str) -> (String, u64) {
    let (secret, step, _) = enrol_for_token(dev, user);
    (secret, step)
}

/// [`enrol_user`], also returning the API token the enrolling login issued (a login with a
/// second factor: `amr` has `otp`).
pub(crate) fn enrol_for_token(dev: &Dev, user: &str) -> (String, u64, String) {
    let login = |body: Value| {
        let (status, text) = curl(
            dev,
            "POST",
            "/v1/auth/local/login",
            None,
            Some(&body.to_string()),
        );
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    let (status, asked) = login(json!({"username": user, "password": PASSWORD}));
    assert_eq!(status, 200, "{asked}");
    let offer = &asked["totp_enrolment"];
    let secret = offer["secret_base32"].as_str().unwrap().to_owned();
    let now = unix_now();
    let (status, done) = login(json!({
        "username": user,
        "password": PASSWORD,
        "totp_enrolment": {"ticket": offer["ticket"], "code": oathtool(&secret, now)},
    }));
    assert_eq!(status, 201, "{done}");
    let token = done["token"].as_str().unwrap().to_owned();
    (secret, now / 30, token)
}

/// A fresh API login of an enrolled `user` with a TOTP code of a later step than
/// `last_step` (each code works once); the token and the step it used.
pub(crate) fn log_in_api(dev: &Dev, user: &str, secret: &str, last_step: u64) -> (String, u64) {
    let step = (last_step + 1).max(unix_now() / 30);
    // The code of a future step is accepted within the skew; wait for it otherwise.
    super::wait::wait_for(
        "a TOTP step the controller accepts",
        std::time::Duration::from_secs(40),
        || step <= unix_now() / 30 + 1,
    );
    let body =
        json!({"username": user, "password": PASSWORD, "totp_code": oathtool(secret, step * 30)});
    let (status, text) = curl(
        dev,
        "POST",
        "/v1/auth/local/login",
        None,
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{text}");
    let done: Value = serde_json::from_str(&text).unwrap();
    (done["token"].as_str().unwrap().to_owned(), step)
}

/// Logs ada in through the console's login form in `browser`, with a TOTP code of a step
/// after her enrolment's (`enrol`'s); returns when the sessions page has loaded.
pub(crate) fn log_in(
    browser: &mut super::browser::Browser,
    dev: &Dev,
    secret: &str,
    enrolled_step: u64,
) {
    log_in_as(browser, dev, "ada", secret, enrolled_step);
}

/// [`log_in`] as `user` (`ada` or `rev`, with the secret and step of its [`enrol_user`]).
pub(crate) fn log_in_as(
    browser: &mut super::browser::Browser,
    dev: &Dev,
    user: &str,
    secret: &str,
    enrolled_step: u64,
) {
    let form = browser.goto(&format!("{}/console/login", dev.api()));
    assert_eq!(form.status, 200, "{form:?}");
    // A code of a later step than the enrolment's (within the accepted skew).
    let step = (enrolled_step + 1).max(unix_now() / 30);
    browser.fill("#username", user);
    browser.fill("#password", PASSWORD);
    browser.fill("#totp_code", &oathtool(secret, step * 30));
    browser.click("form.login button[type=submit]");
    browser.wait_for_url("/console/sessions");
    let landed = browser.last_response();
    assert_eq!(landed.status, 200, "{landed:?}");
}
