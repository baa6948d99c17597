//! Local users' logins against a real controller (`portcullis dev` with a config of its
//! own), with TOTP codes from Debian's `oathtool`: the first login enrols TOTP through the
//! real CLI driven on stdin and prints recovery codes; a reused code and a code two steps off
//! are refused; `whoami` shows `amr` pwd,otp,mfa and issuer `local:`; a role that requires MFA
//! takes the TOTP login's session and refuses a password-only login's (a second controller
//! with `allow_password_only = true`); the back-off answers 429 with Retry-After, then lets
//! the right password in, and the failures are summed into one `login_failed`; a recovery
//! code logs in once; a disabled user is refused; every event is in GET /v1/audit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::dev::{bin, curl, Dev};
use common::totp::{oathtool, unix_now};
use common::wait::poll;
use serde_json::{json, Value};
use sqlx::Connection as _;

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a lantern in the hall";
const INVALID: &str = "wrong user name, password or code";

/// Admins may administer, and reach `echo` only with a second factor.
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
access = "allow"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "workers:admin", "audit:read", "users:admin"]

[[role]]
name = "sessions"
groups = ["admins"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]

[role.constraints]
mfa = { amr = ["otp", "mfa"] }
"#;

/// Fast argon2, a back-off of two free failures then 1-2 s in a 4 s window, and failures
/// summed over 1 s.
const CONFIG: &str = "[audit]\ndenial_window = \"1s\"\n\
                      [auth.local]\n\
                      [auth.local.argon2]\nm_cost_kib = 7168\nt_cost = 5\n\
                      [auth.local.backoff]\nwindow = \"4s\"\nuser_free_failures = 2\n\
                      network_free_failures = 1000\nbase_delay = \"1s\"\nmax_delay = \"2s\"\n";

struct Stack {
    dev: Dev,
    /// The controller config the offline commands use (the dev stack's store and key).
    _dir: tempfile::TempDir,
}

/// A dev stack on a state dir prepared first: its master key, and local users made offline
/// with `controller users add` (`(name, true)` with a password file, `(name, false)` with a
/// generated password, returned in order), those named in `disabled` then disabled in the
/// store.
fn stack(config_extra: &str, users: &[(&str, bool)], disabled: &[&str]) -> (Stack, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
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
    let offline = dir.path().join("controller.toml");
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
    let password_file = private_file(dir.path(), "password", PASSWORD);
    let mut generated = Vec::new();
    for (name, with_file) in users {
        let mut cmd = Command::new(bin());
        cmd.args(["controller", "users", "add", name, "--groups", "admins"])
            .arg("--config")
            .arg(&offline)
            .env("PORTCULLIS_LOG", "warn");
        if *with_file {
            cmd.arg("--password-file").arg(&password_file);
        }
        let out = ok(cmd.output().unwrap());
        generated.push(out.trim().to_owned());
    }
    disable(&state.join("portcullis.db"), disabled);
    let dev_config = dir.path().join("dev.toml");
    std::fs::write(&dev_config, config_extra).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let dev = Dev::start_in(
        &state,
        &[
            "--config",
            dev_config.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ],
    );
    (Stack { dev, _dir: dir }, generated)
}

/// Disables `names` directly in the SQLite store (the API's `users disable` is another
/// test's).
fn disable(db: &Path, names: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        for name in names {
            let done = sqlx::query(
                "UPDATE local_users SET disabled_at = 1 WHERE user_id = \
                 (SELECT id FROM users WHERE issuer = 'local:' AND subject = $1)",
            )
            .bind(name)
            .execute(&mut conn)
            .await
            .unwrap();
            assert_eq!(done.rows_affected(), 1, "{name}");
        }
    });
}

fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `POST /v1/auth/local/login` with curl.
fn local_login(dev: &Dev, body: &Value) -> (u16, Value) {
    let (code, text) = curl(
        dev,
        "POST",
        "/v1/auth/local/login",
        None,
        Some(&body.to_string()),
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The status and headers (lower-cased names) of a login, for `Retry-After`.
fn login_headers(dev: &Dev, body: &Value) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert"])
        .arg(dev.var("PORTCULLIS_CA"))
        .args(["-X", "POST", "-H", "Content-Type: application/json"])
        .arg("--data-binary")
        .arg(body.to_string())
        .arg(format!("{}/v1/auth/local/login", dev.api()))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers)
}

/// The CLI's interactive local login, driven on stdin: `answers` are written one line at a
/// time; when it shows an enrolment offer, the code `oathtool` computes for its secret is
/// written. Returns the exit status, stdout, stderr, the secret and when its code was made.
struct Cli {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
    secret: Option<(String, u64)>,
}

fn cli_login(dev: &Dev, user: &str, token_file: &Path, answers: &[&str]) -> Cli {
    let mut child = dev
        .cli()
        .args([
            "login",
            "--password",
            "--json",
            "--user",
            user,
            "--token-file",
        ])
        .arg(token_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for answer in answers {
        writeln!(stdin, "{answer}").unwrap();
    }
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut secret = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
    Cli {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: seen,
        secret,
    }
}

fn whoami(dev: &Dev, token: &str) -> Value {
    let out = dev
        .cli()
        .args(["whoami", "--json"])
        .env("PORTCULLIS_TOKEN", token)
        .output()
        .unwrap();
    serde_json::from_str(&ok(out)).unwrap()
}

/// Asks for a session to `echo`, the dev stack's echo server.
fn authorize(dev: &Dev, token: &str) -> (u16, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))});
    curl(
        dev,
        "POST",
        "/v1/targets/echo/authorize-session",
        Some(token),
        Some(&body.to_string()),
    )
}

/// The stored events of `kind`, through GET /v1/audit.
fn events(dev: &Dev, kind: &str) -> Vec<Value> {
    let (code, text) = curl(
        dev,
        "GET",
        &format!("/v1/audit?type={kind}"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn token_in(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[test]
fn totp_logins_recovery_codes_back_off_and_their_audit_events() {
    let (stack, generated) = stack(
        CONFIG,
        &[
            ("alice", true),
            ("dave", false),
            ("bob", true),
            ("carol", true),
        ],
        &["carol"],
    );
    let dev = &stack.dev;
    let tokens = tempfile::tempdir().unwrap();

    // alice (a password of her own): the first login enrols TOTP and prints recovery codes.
    let alice_token = tokens.path().join("alice");
    let first = cli_login(dev, "alice", &alice_token, &[PASSWORD]);
    assert!(first.status.success(), "{}\n{}", first.stdout, first.stderr);
    assert!(
        first
            .stderr
            .contains("otpauth://totp/Portcullis:alice?secret="),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("recovery codes"), "{}", first.stderr);
    let (secret, enrolled_at) = first.secret.clone().expect("an enrolment offer");
    let printed: Value = serde_json::from_str(&first.stdout).unwrap();
    let recovery: Vec<String> = printed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10, "{printed}");
    assert!(
        !first.stdout.contains(&token_in(&alice_token)),
        "never the token on stdout"
    );
    let me = whoami(dev, &token_in(&alice_token));
    assert_eq!(me["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(me["issuer"], "local:");
    assert_eq!(me["subject"], "alice");
    assert_eq!(
        authorize(dev, &token_in(&alice_token)).0,
        201,
        "MFA met by TOTP"
    );

    // A recovery code (typed where the TOTP code is asked) logs in once, not twice.
    let rescue = tokens.path().join("rescue");
    let used = cli_login(dev, "alice", &rescue, &[PASSWORD, &recovery[0]]);
    assert!(used.status.success(), "{}", used.stderr);
    assert_eq!(
        whoami(dev, &token_in(&rescue))["amr"],
        json!(["pwd", "otp", "mfa"])
    );
    let again = cli_login(
        dev,
        "alice",
        &tokens.path().join("again"),
        &[PASSWORD, &recovery[0]],
    );
    assert_eq!(again.status.code(), Some(4), "{}", again.stderr);
    assert!(again.stderr.contains(INVALID), "{}", again.stderr);

    // A code of a later step than the enrolment's logs in; the same code again does not; a
    // code two steps off does not.
    let step = (enrolled_at / 30 + 1).max(unix_now() / 30);
    let code = oathtool(&secret, step * 30);
    let login = |code: &str| json!({"username": "alice", "password": PASSWORD, "totp_code": code});
    let (status, body) = poll(
        "alice's login after the recovery code's failure",
        Duration::from_secs(10),
        || match local_login(dev, &login(&code)) {
            (429, body) => Err(body),
            other => Ok(other),
        },
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = local_login(dev, &login(&code));
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(INVALID)),
        "reused: {body}"
    );
    for at in [unix_now() + 90, unix_now().saturating_sub(60)] {
        let (status, body) = poll(
            "the back-off",
            Duration::from_secs(10),
            || match local_login(dev, &login(&oathtool(&secret, at))) {
                (429, body) => Err(body),
                other => Ok(other),
            },
        );
        assert_eq!(status, 401, "two steps off: {body}");
    }

    // dave (a generated one-time password): new password typed twice, then TOTP.
    let dave = cli_login(
        dev,
        "dave",
        &tokens.path().join("dave"),
        &[&generated[1], NEW_PASSWORD, NEW_PASSWORD],
    );
    assert!(dave.status.success(), "{}", dave.stderr);
    assert!(dave.stderr.contains("New password"), "{}", dave.stderr);

    // bob: two free failures, then 429 with Retry-After (each further failure while the
    // delay has passed doubles it, so a slow machine reaches the 429 too, a failure or two
    // later); the right password after it.
    let wrong = json!({"username": "bob", "password": "not bob's password"});
    for _ in 0..3 {
        assert_eq!(local_login(dev, &wrong).0, 401);
    }
    let mut answers = Vec::new();
    let headers = loop {
        let (status, headers) = login_headers(dev, &wrong);
        answers.push(status);
        if status == 429 {
            break headers;
        }
        assert!(
            status == 401 && answers.len() < 6,
            "no back-off after {answers:?}: {headers}"
        );
    };
    assert!(headers.contains("retry-after: "), "{headers}");
    let right = json!({"username": "bob", "password": PASSWORD});
    let (status, body) = poll(
        "bob's back-off to end",
        Duration::from_secs(10),
        || match local_login(dev, &right) {
            (429, body) => Err(body),
            other => Ok(other),
        },
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["needs"], json!(["totp_enrolment"]));

    // carol, disabled (offline, in the store): the same 401.
    let (status, body) = local_login(dev, &json!({"username": "carol", "password": PASSWORD}));
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some(INVALID)),
        "{body}"
    );

    // The failures summed per address and window, each reason counted.
    let expected = [
        "wrong password",
        "reused code",
        "wrong code",
        "wrong recovery code",
        "disabled user",
    ];
    poll(
        "the summed login_failed events",
        Duration::from_secs(20),
        || {
            let found = events(dev, "login_failed");
            let count = |reason: &str| -> u64 {
                found
                    .iter()
                    .map(|e| e["details"]["reasons"][reason].as_u64().unwrap_or(0))
                    .sum()
            };
            let summed = found
                .iter()
                .any(|e| e["details"]["count"].as_u64() > Some(1));
            if summed && count("wrong password") >= 3 && expected.iter().all(|r| count(r) > 0) {
                Ok(())
            } else {
                Err(format!("{found:?}"))
            }
        },
    );
    for kind in [
        "local_user_created",
        "local_password_changed",
        "totp_enrolled",
        "recovery_code_used",
        "login_succeeded",
    ] {
        assert!(!events(dev, kind).is_empty(), "{kind}");
    }
    let text = serde_json::to_string(&events(dev, "totp_enrolled")).unwrap();
    assert!(
        !text.contains(&secret) && !text.contains(&recovery[1]),
        "no secret in events"
    );
}

#[test]
fn a_password_only_login_does_not_meet_a_roles_mfa() {
    let config = CONFIG.replace(
        "[auth.local]\n",
        "[auth.local]\nallow_password_only = true\n",
    );
    let (stack, generated) = stack(&config, &[("pat", true), ("gil", false)], &[]);
    let dev = &stack.dev;
    let (status, body) = local_login(dev, &json!({"username": "pat", "password": PASSWORD}));
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap();
    assert_eq!(whoami(dev, token)["amr"], json!(["pwd"]));
    let (status, text) = authorize(dev, token);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("MFA"), "{text}");

    // Files instead of prompts: refused when others can read them; else no prompt at all.
    let files = tempfile::tempdir().unwrap();
    let credential = private_file(files.path(), "credential", &generated[1]);
    let new = private_file(files.path(), "new", NEW_PASSWORD);
    std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o644)).unwrap();
    let login = |token_file: &Path| {
        dev.cli()
            .args(["login", "--user", "gil", "--json", "--bootstrap-file"])
            .arg(&credential)
            .arg("--password-file")
            .arg(&new)
            .arg("--token-file")
            .arg(token_file)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = login(&files.path().join("refused"));
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("chmod 600"), "{said}");
    std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token_file = files.path().join("gil");
    let printed: Value = serde_json::from_str(&ok(login(&token_file))).unwrap();
    assert_eq!(printed["user"]["username"], "gil", "{printed}");
    assert!(printed.get("recovery_codes").is_none(), "{printed}");
    assert_eq!(whoami(dev, &token_in(&token_file))["amr"], json!(["pwd"]));
    let (status, _) = local_login(dev, &json!({"username": "gil", "password": NEW_PASSWORD}));
    assert_eq!(status, 201, "the new password is the password now");
}
