//! OIDC login against a real OpenID provider (npm `oidc-provider`, tests/oidc/provider.mjs):
//! `portcullis login` as a real process, its "browser" being plain HTTP through the provider's
//! login form; groups and MFA deciding sessions; the phishing case; bad ID tokens; the device
//! flow; a provider that is down; logout and `users revoke`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::client::{closes_within, open_echo};
use common::cluster::echo_on;
use common::dev::curl;
use common::oidc_login::{
    cli_login, install_browser_script, token_of, user_cli, wait_file, wait_output, who,
    CurlBrowser, Env, Page, Who,
};
use portcullis_proto::clock::{Clock as _, SystemClock};

/// tests/fixtures/policy-lab.toml: LOCAL is loopback; LAB (127.0.0.2) needs role `lab`,
/// whose members need MFA, here no older than an hour.
fn lab_policy() -> String {
    include_str!("fixtures/policy-lab.toml").replace(
        "mfa = { amr = [\"mfa\"] }",
        "mfa = { amr = [\"mfa\"], max_auth_age_secs = 3600 }",
    )
}

fn start(device_flow: bool) -> Env {
    start_limited(device_flow, 10_000)
}

fn start_limited(device_flow: bool, logins_per_minute: u32) -> Env {
    Env::start(
        &lab_policy(),
        &format!("[auth]\nlogin_rate_limit_per_minute = {logins_per_minute}\n"),
        &format!("device_flow = {device_flow}\n[auth.oidc.mfa]\namr = [\"otp\", \"hwk\"]\n"),
    )
}

/// `portcullis login --no-browser` as `who`: the test reads the URL the CLI prints and types
/// the code the callback page shows.
fn cli_login_no_browser(env: &Env, home: &Path, who: &Who) -> (bool, String) {
    std::fs::create_dir_all(home).unwrap();
    let mut child = user_cli(env, home)
        .args(["login", "--no-browser"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let mut browser = CurlBrowser::new(home, "browser", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(url.trim(), who, true);
    let code = page
        .body
        .split("<p class=\"code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(str::to_owned);
    if let Some(code) = code {
        assert_eq!(page.status, 200);
        writeln!(child.stdin.as_mut().unwrap(), "{}", code.to_lowercase()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    wait_output(child)
}

fn whoami(env: &Env, home: &Path) -> (bool, serde_json::Value) {
    let out = user_cli(env, home)
        .args(["whoami", "--json"])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), v)
}

fn authorize(env: &Env, token: &str, target: &str) -> (u16, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    curl(
        &env.dev,
        "POST",
        &format!("/v1/targets/{target}/authorize-session"),
        Some(token),
        Some(&body),
    )
}

#[test]
fn login_whoami_groups_choose_roles_mfa_decides_and_logout_ends_sessions() {
    let env = start(false);
    install_browser_script(&env);
    let admin = env.dev.var("PORTCULLIS_TOKEN");
    for (name, address, zone) in [
        ("lab", echo_on("127.0.0.2"), "LAB"),
        (
            "local",
            env.dev.ready["echo"].as_str().unwrap().to_owned(),
            "LOCAL",
        ),
    ] {
        let body =
            serde_json::json!({"name": name, "address": address, "zone": zone, "service": "echo"});
        let (code, text) = curl(
            &env.dev,
            "POST",
            "/v1/targets",
            Some(&admin),
            Some(&body.to_string()),
        );
        assert_eq!(code, 201, "{text}");
    }

    // alice: a browser login with a second factor.
    let alice = env.dir.path().join("alice");
    let t = Instant::now();
    let (ok, err) = cli_login(&env, &alice, &who("alice", "lab", "pwd,otp"));
    assert!(ok, "{err}");
    eprintln!("browser login took {:?}", t.elapsed());
    assert!(err.contains("Logged in as alice"), "{err}");
    let mode = std::fs::metadata(alice.join("portcullis/token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (ok, me) = whoami(&env, &alice);
    assert!(ok, "{me}");
    assert_eq!(me["issuer"], env.provider.issuer.as_str());
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["groups"], serde_json::json!(["lab"]));
    let amr: Vec<&str> = me["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(amr.contains(&"otp") && amr.contains(&"mfa"), "{me}");
    assert!(
        me["auth_time"]
            .as_u64()
            .unwrap()
            .abs_diff(SystemClock.unix_secs())
            < 60,
        "{me}"
    );
    let expires = me["token_expires_at"].as_u64().unwrap();
    assert!(
        expires.abs_diff(SystemClock.unix_secs() + 8 * 3600) < 120,
        "{me}"
    );
    // The human form names the same things.
    let out = user_cli(&env, &alice).arg("whoami").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&env.provider.issuer) && text.contains("lab"),
        "{text}"
    );

    // The groups chose role `lab`: LAB yes, LOCAL no.
    let alice_token = token_of(&alice);
    let (code, text) = authorize(&env, &alice_token, "lab");
    assert_eq!(code, 201, "{text}");
    let (code, text) = authorize(&env, &alice_token, "local");
    assert_eq!(code, 403, "{text}");

    // bob (--no-browser): same group, password only: MFA denies.
    let bob = env.dir.path().join("bob");
    let (ok, err) = cli_login_no_browser(&env, &bob, &who("bob", "lab", "pwd"));
    assert!(ok, "{err}");
    let (code, text) = authorize(&env, &token_of(&bob), "lab");
    assert_eq!(code, 403, "{text}");
    assert!(text.to_lowercase().contains("mfa"), "{text}");

    // carol: MFA, but two hours ago: too old for the role's max_auth_age_secs.
    let carol = env.dir.path().join("carol");
    let mut old = who("carol", "lab", "pwd,hwk");
    old.auth_age = 7200;
    let (ok, err) = cli_login(&env, &carol, &old);
    assert!(ok, "{err}");
    let (code, text) = authorize(&env, &token_of(&carol), "lab");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("sign in again"), "{text}");

    // dave: a group no role names.
    let dave = env.dir.path().join("dave");
    let (ok, err) = cli_login(&env, &dave, &who("dave", "games", "pwd,otp"));
    assert!(ok, "{err}");
    let (code, text) = authorize(&env, &token_of(&dave), "lab");
    assert_eq!(code, 403, "{text}");

    // The device flow is off here: refused with a message saying so.
    let out = user_cli(&env, &dave)
        .args(["login", "--device"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("device flow is disabled"), "{err}");

    // Logout ends alice's live sessions (the pending one authorised above and the connected
    // one) and her token.
    let listener = common::client::listen(user_cli(&env, &alice), "lab");
    let mut live = open_echo(listener.port);
    let out = user_cli(&env, &alice).arg("logout").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 live session(s) ended"),
        "{out:?}"
    );
    closes_within(&mut live, Duration::from_secs(5));
    let (_, text) = curl(
        &env.dev,
        "GET",
        &format!("/v1/sessions/{}", listener.session_id),
        Some(&admin),
        None,
    );
    assert!(text.contains("\"logout\""), "{text}");
    assert!(!alice.join("portcullis/token").exists());
    let (code, _) = authorize(&env, &alice_token, "lab");
    assert_eq!(code, 401);

    // users revoke: only with users:revoke; then every token of the user is dead.
    let out = user_cli(&env, &bob)
        .args(["users", "revoke", "carol"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("users:revoke"),
        "{out:?}"
    );
    let carol_token = token_of(&carol);
    let (code, text) = curl(&env.dev, "GET", "/v1/whoami", Some(&carol_token), None);
    assert_eq!(code, 200, "{text}");
    let out = env
        .dev
        .cli()
        .args(["users", "revoke", "carol", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["users"][0]["tokens_revoked"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    let (code, _) = curl(&env.dev, "GET", "/v1/whoami", Some(&carol_token), None);
    assert_eq!(code, 401);
    let (code, _) = curl(&env.dev, "GET", "/v1/whoami", Some(&token_of(&bob)), None);
    assert_eq!(code, 200, "bob's token is untouched");

    // The audit log has the logins, the logout and the revocation.
    let (_, text) = curl(
        &env.dev,
        "GET",
        "/v1/audit?type=logged_out",
        Some(&admin),
        None,
    );
    assert!(text.contains("alice"), "{text}");
    let (_, text) = curl(
        &env.dev,
        "GET",
        "/v1/audit?type=user_tokens_revoked",
        Some(&admin),
        None,
    );
    assert!(text.contains("carol"), "{text}");
}

/// Starts a code-mode login through the API with a secret of the test's own.
fn api_start(env: &Env, secret: &str) -> serde_json::Value {
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(portcullis_crypto::digest::sha256(secret.as_bytes()));
    let body = serde_json::json!({"mode": "code", "secret_hash": hash}).to_string();
    let (code, text) = curl(&env.dev, "POST", "/v1/auth/oidc/start", None, Some(&body));
    assert_eq!(code, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn api_redeem(env: &Env, login_id: &str, code: &str, secret: &str) -> (u16, String) {
    let body =
        serde_json::json!({"login_id": login_id, "code": code, "secret": secret}).to_string();
    curl(&env.dev, "POST", "/v1/auth/oidc/redeem", None, Some(&body))
}

fn shown_code(page: &Page) -> Option<String> {
    page.body
        .split("<p class=\"code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .map(str::to_owned)
}

#[test]
fn phishing_bad_id_tokens_and_reused_state_give_no_token() {
    let env = start(false);
    install_browser_script(&env);

    // The phishing case: the attacker's CLI starts a login and sends the URL to a victim,
    // who signs in in their own browser. The callback sends the victim's browser to ITS
    // loopback port, where nothing of the attacker's listens: the attacker's CLI gets nothing.
    let attacker = env.dir.path().join("attacker");
    std::fs::create_dir_all(&attacker).unwrap();
    let mut cli = user_cli(&env, &attacker)
        .arg("login")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = wait_file(&attacker.join("opened-url"));
    let mut victim = CurlBrowser::new(env.dir.path(), "victim", env.dev.var("PORTCULLIS_CA"));
    let page = victim.sign_in(&url, &who("victim", "admins", "pwd,otp"), false);
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.location.clone().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:") && location.contains("code="),
        "{location}"
    );
    // An observation window, not a wait: the attacker's CLI must stay without a token through
    // it (a login that reached it would end it at once).
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cli.try_wait().unwrap().is_none(),
        "the attacker's CLI must still be waiting"
    );
    let _ = cli.kill();
    let _ = cli.wait();
    assert!(!attacker.join("portcullis/token").exists());
    // Even with the code from the victim's address bar, a redemption without the starting
    // CLI's secret fails...
    let query = location.split_once('?').unwrap().1;
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    let (code, text) = api_redeem(&env, &param("login"), &param("code"), "not-the-cli-secret");
    assert_eq!(code, 401, "{text}");
    assert!(
        text.contains("started by another client") && !text.contains("token\":"),
        "{text}"
    );
    // ...and the victim's identity never became a token: no login succeeded for it.
    let admin = env.dev.var("PORTCULLIS_TOKEN");
    let (_, text) = curl(
        &env.dev,
        "GET",
        "/v1/audit?type=login_succeeded",
        Some(&admin),
        None,
    );
    assert!(!text.contains("victim"), "{text}");

    // A good code-mode login through the API, to replay its callback afterwards.
    let secret = "a-secret-only-this-test-knows-000000000000";
    let started = api_start(&env, secret);
    let mut browser = CurlBrowser::new(env.dir.path(), "replay", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(
        started["authorization_url"].as_str().unwrap(),
        &who("rita", "lab", "pwd"),
        true,
    );
    let code = shown_code(&page).expect("a code on the callback page");
    assert!(page.body.contains("you started yourself"), "{}", page.body);
    let (status, text) = api_redeem(
        &env,
        started["login_id"].as_str().unwrap(),
        "WRONG-CODE",
        secret,
    );
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("wrong code"), "{text}");
    let (status, text) = api_redeem(&env, started["login_id"].as_str().unwrap(), &code, secret);
    assert_eq!(status, 201, "{text}");
    let (status, text) = api_redeem(&env, started["login_id"].as_str().unwrap(), &code, secret);
    assert_eq!(status, 401, "redeemed twice: {text}");
    // The callback URL (code and state) replayed: the state works once.
    let callback = browser
        .visited
        .iter()
        .find(|u| u.contains("/v1/auth/oidc/callback"))
        .unwrap()
        .clone();
    let replay = browser.request(&callback, None);
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);

    // A key rotation at the provider: the unknown key id re-fetches the JWKS, which now has
    // it, and the login succeeds.
    let started = api_start(&env, secret);
    env.provider.spoil_next("rotate");
    let mut browser = CurlBrowser::new(env.dir.path(), "rotate", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(
        started["authorization_url"].as_str().unwrap(),
        &who("rosa", "lab", "pwd"),
        true,
    );
    let code = shown_code(&page).unwrap_or_else(|| panic!("rotation: {}", page.body));
    let (status, text) = api_redeem(&env, started["login_id"].as_str().unwrap(), &code, secret);
    assert_eq!(status, 201, "{text}");

    // Bad ID tokens, each refused with a clear message and no token. The unknown-kid case
    // comes within the re-fetch rate limit of the rotation's re-fetch (the limit itself is
    // pinned by the relying party's unit tests, on a test clock): it fails whether or not it
    // may fetch the keys again, since the provider never publishes the rogue key.
    let cases: &[(&str, &str)] = &[
        ("tamper", "bad signature"),
        ("wrong-aud", "not meant for this client"),
        ("expired", "expired"),
        ("unknown-kid", "unknown key id"),
        ("alg-none", "rejected"),
        ("hs256", "rejected"),
    ];
    for (mode, expected) in cases {
        let started = api_start(&env, secret);
        env.provider.spoil_next(mode);
        let mut browser = CurlBrowser::new(env.dir.path(), mode, env.dev.var("PORTCULLIS_CA"));
        let page = browser.sign_in(
            started["authorization_url"].as_str().unwrap(),
            &who("mallory", "admins", "pwd,otp"),
            true,
        );
        assert_eq!(page.status, 401, "{mode}: {}", page.body);
        assert!(
            page.body.contains("ID token was rejected") && page.body.contains(expected),
            "{mode}: {}",
            page.body
        );
        assert!(shown_code(&page).is_none(), "{mode}");
        let (status, text) = api_redeem(&env, started["login_id"].as_str().unwrap(), "ANY", secret);
        assert_eq!(status, 401, "{mode}: {text}");
        assert!(
            text.contains("the login failed") && !text.contains("\"token\""),
            "{mode}: {text}"
        );
    }

    // A missing groups claim: the CLI (loopback mode) ends with the reason, and no token.
    let nog = env.dir.path().join("nogroups");
    let mut no_groups = who("nora", "admins", "pwd");
    no_groups.extra = &[("nogroups", "1")];
    let (ok, err) = cli_login(&env, &nog, &no_groups);
    assert!(!ok);
    assert!(err.contains("no `groups` claim"), "{err}");
    assert!(!nog.join("portcullis/token").exists());
    // Entra's overflow marker instead of groups.
    let started = api_start(&env, secret);
    let mut over = who("olga", "admins", "pwd");
    over.extra = &[("overflow", "1")];
    let mut browser = CurlBrowser::new(env.dir.path(), "overflow", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(started["authorization_url"].as_str().unwrap(), &over, true);
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("_claim_names"), "{}", page.body);

    // The provider answers with an error (the user declined): the login ends with it.
    let started = api_start(&env, secret);
    let mut declined = who("dora", "admins", "pwd");
    declined.extra = &[("deny", "1")];
    let mut browser = CurlBrowser::new(env.dir.path(), "declined", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(
        started["authorization_url"].as_str().unwrap(),
        &declined,
        true,
    );
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(
        page.body
            .contains("refused the login: access_denied (the user declined)"),
        "{}",
        page.body
    );
    let (status, text) = api_redeem(&env, started["login_id"].as_str().unwrap(), "ANY", secret);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("access_denied"), "{text}");

    // Every failure is in the audit log, without secrets.
    let (_, text) = curl(
        &env.dev,
        "GET",
        "/v1/audit?type=login_failed&limit=100",
        Some(&admin),
        None,
    );
    assert!(
        text.contains("state reused") && text.contains("unknown key id"),
        "{text}"
    );
    assert!(!text.contains(secret) && !text.contains(&code), "{text}");
    // No token was ever issued to the bad logins' users.
    let (_, text) = curl(
        &env.dev,
        "GET",
        "/v1/audit?type=login_succeeded&limit=100",
        Some(&admin),
        None,
    );
    assert!(
        !text.contains("mallory") && !text.contains("nora") && !text.contains("olga"),
        "{text}"
    );
    assert!(text.contains("rita"), "{text}");
}

#[test]
fn device_flow_logs_in_when_enabled() {
    let env = start(true);
    let home = env.dir.path().join("dana");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = user_cli(&env, &home)
        .args(["login", "--device"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let uri = lines.next().unwrap().unwrap();
    let user_code = lines.next().unwrap().unwrap();
    let complete = lines.next().unwrap().unwrap();
    assert!(uri.starts_with(&env.provider.issuer), "{uri}");
    assert!(
        complete.contains(&user_code.replace('-', "")) || complete.contains(&user_code),
        "{complete}"
    );
    let mut browser = CurlBrowser::new(&home, "device", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(&complete, &who("dana", "admins", "pwd,otp"), true);
    assert!(page.body.contains("Device login done"), "{}", page.body);
    let (ok, err) = wait_output(child);
    assert!(ok, "{err}");
    let (ok, me) = whoami(&env, &home);
    assert!(ok, "{me}");
    assert_eq!(me["subject"], "dana");
    assert_eq!(me["groups"], serde_json::json!(["admins"]));
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "users:revoke"),
        "{me}"
    );
}

#[test]
fn a_provider_that_is_down_fails_the_login_clearly_and_attempts_are_rate_limited() {
    let mut env = start_limited(false, 3);
    let _ = env.provider.child.kill();
    let _ = env.provider.child.wait();
    let home = env.dir.path().join("pat");
    std::fs::create_dir_all(&home).unwrap();
    let out = user_cli(&env, &home)
        .args(["login", "--no-browser"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the OpenID provider"), "{err}");
    assert!(!home.join("portcullis/token").exists());

    // Login attempts are counted per address (3 a minute here): 7 attempts cannot all fit in
    // the at most two one-minute windows they span.
    let body = serde_json::json!({"mode": "code", "secret_hash": "A".repeat(43)}).to_string();
    let limited = (0..7).any(|_| {
        let (code, text) = curl(&env.dev, "POST", "/v1/auth/oidc/start", None, Some(&body));
        assert!(code == 502 || code == 429, "{code} {text}");
        code == 429 && text.contains("too many login attempts")
    });
    assert!(limited, "no attempt was rate limited");
}
