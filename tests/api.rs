//! The API with a real client (curl) against `portcullis dev`: permissions, bad input,
//! persistence across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use common::dev::{curl, Dev};

fn login(dev: &Dev, user: &str, groups: &[&str]) -> String {
    let body = serde_json::json!({"username": user, "groups": groups}).to_string();
    let (code, text) = curl(dev, "POST", "/v1/auth/dev-login", None, Some(&body));
    assert_eq!(code, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

#[test]
fn every_permissioned_endpoint_refuses_a_user_without_the_permission() {
    let dev = Dev::start(&[]);
    let user = login(&dev, "bob", &["users"]);
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(&dev, "GET", "/v1/targets/echo", Some(&admin), None);
    assert_eq!(code, 200, "{text}");
    let (code, text) = curl(&dev, "GET", "/v1/workers", Some(&admin), None);
    assert_eq!(code, 200, "{text}");
    let worker_id = dev.ready["worker_id"].as_str().unwrap();

    // A session of the admin's that the user may neither read nor cancel.
    let target = r#"{"name":"web-01","address":"127.0.0.1:9","zone":"LOCAL","service":"echo"}"#;
    let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&admin), Some(target));
    assert_eq!(code, 201, "{text}");

    let cases: Vec<(&str, String, Option<&str>, &str)> = vec![
        (
            "POST",
            "/v1/targets".into(),
            Some(r#"{"name":"x","address":"127.0.0.1:22"}"#),
            "targets:admin",
        ),
        (
            "PATCH",
            "/v1/targets/web-01".into(),
            Some(r#"{"address":"127.0.0.1:23"}"#),
            "targets:admin",
        ),
        ("DELETE", "/v1/targets/web-01".into(), None, "targets:admin"),
        ("GET", "/v1/workers".into(), None, "workers:admin"),
        (
            "GET",
            format!("/v1/workers/{worker_id}"),
            None,
            "workers:admin",
        ),
        (
            "DELETE",
            format!("/v1/workers/{worker_id}"),
            None,
            "workers:admin",
        ),
        (
            "POST",
            "/v1/workers/join-tokens".into(),
            Some("{}"),
            "workers:admin",
        ),
        ("POST", "/v1/policy/reload".into(), None, "policy:reload"),
        ("GET", "/v1/audit".into(), None, "audit:read"),
        (
            "POST",
            "/v1/users/revoke".into(),
            Some(r#"{"subject":"admin"}"#),
            "users:revoke",
        ),
    ];
    // The admin's own session, which the user may neither read nor cancel.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key));
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets/echo/authorize-session",
        Some(&admin),
        Some(&serde_json::json!({ "client_public_key": spki }).to_string()),
    );
    assert_eq!(code, 201, "{text}");
    let session: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sid = session["session_id"].as_str().unwrap().to_owned();
    let mut cases = cases;
    cases.push((
        "GET",
        format!("/v1/sessions/{sid}"),
        None,
        "sessions:read-all",
    ));
    cases.push((
        "POST",
        format!("/v1/sessions/{sid}/cancel"),
        Some("{}"),
        "sessions:cancel-any",
    ));
    for (method, path, body, permission) in cases {
        let (code, text) = curl(&dev, method, &path, Some(&user), body);
        assert_eq!(code, 403, "{method} {path}: {text}");
        assert!(text.contains(permission), "{method} {path}: {text}");
    }
    // The user's session list does not show the admin's session.
    let (code, text) = curl(&dev, "GET", "/v1/sessions", Some(&user), None);
    assert_eq!(code, 200, "{text}");
    assert!(!text.contains(&sid), "{text}");
    // Nothing changed.
    let (_, text) = curl(
        &dev,
        "GET",
        &format!("/v1/sessions/{sid}"),
        Some(&admin),
        None,
    );
    assert!(text.contains("\"pending\""), "{text}");
    let (code, _) = curl(&dev, "GET", "/v1/targets/web-01", Some(&admin), None);
    assert_eq!(code, 200);
    let (code, _) = curl(
        &dev,
        "GET",
        &format!("/v1/workers/{worker_id}"),
        Some(&admin),
        None,
    );
    assert_eq!(code, 200);
    // Without a token: 401.
    let (code, _) = curl(&dev, "GET", "/v1/targets", None, None);
    assert_eq!(code, 401);
    let (code, _) = curl(&dev, "GET", "/v1/targets", Some("not-a-token"), None);
    assert_eq!(code, 401);
}

#[test]
fn bad_bodies_get_4xx_naming_the_field_and_write_nothing() {
    let dev = Dev::start(&[]);
    let admin = dev.var("PORTCULLIS_TOKEN");
    let cases = [
        (
            r#"{"name":"a","address":"127.0.0.1:22","nmae":"x"}"#,
            400,
            "nmae",
        ),
        (r#"{"name":"a"}"#, 400, "address"),
        (r#"{"name":"a","address":"no-port"}"#, 400, "address"),
        (r#"{"name":"a b","address":"127.0.0.1:22"}"#, 400, "name"),
        (
            r#"{"name":"a","address":"127.0.0.1:22","vmid":"x"}"#,
            400,
            "vmid",
        ),
        (
            r#"{"name":"a","address":"127.0.0.1:22","max_session_secs":0}"#,
            400,
            "max_session_secs",
        ),
        (r#"{"name":"#, 400, "invalid_request"),
    ];
    for (body, status, needle) in cases {
        let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&admin), Some(body));
        assert_eq!(code, status, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
    }
    let big = format!(
        r#"{{"name":"a","address":"127.0.0.1:22","tags":["{}"]}}"#,
        "x".repeat(100_000)
    );
    let (code, _) = curl(&dev, "POST", "/v1/targets", Some(&admin), Some(&big));
    assert_eq!(code, 413);
    let (code, text) = curl(&dev, "GET", "/v1/targets", Some(&admin), None);
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["echo"], "nothing half-written");
    let (code, text) = curl(&dev, "GET", "/v1/sessions/s_nope", Some(&admin), None);
    assert_eq!(code, 404, "{text}");
}

#[test]
fn a_second_dev_on_a_state_dir_a_live_one_holds_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dev = Dev::start_in(&state, &[]);
    let env_before = std::fs::read(state.join("dev.env")).unwrap();
    let mut second = std::process::Command::new(common::dev::bin())
        .args(["dev", "--state-dir"])
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::cluster::wait_exit(&mut second, std::time::Duration::from_secs(30));
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "the second dev ran: {stderr}");
    assert!(
        stderr.contains("another `portcullis dev`")
            && stderr.contains(&format!("process {}", dev.child.id())),
        "{stderr}"
    );
    assert!(stderr.contains("--state-dir"), "{stderr}");
    assert_eq!(
        std::fs::read(state.join("dev.env")).unwrap(),
        env_before,
        "the refused dev rewrote dev.env"
    );
    // The first one still serves with its dev.env.
    let out = dev.cli().args(["targets", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_restart_on_the_same_state_dir_keeps_targets_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut dev = Dev::start_in(&state, &[]);
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&admin),
        Some(r#"{"name":"keep-me","address":"127.0.0.1:22"}"#),
    );
    assert_eq!(code, 201, "{text}");
    dev.stop();
    let dev = Dev::start_in(&state, &[]);
    assert_eq!(
        dev.var("PORTCULLIS_TOKEN"),
        admin,
        "the token in dev.env survives"
    );
    let (code, text) = curl(&dev, "GET", "/v1/targets/keep-me", Some(&admin), None);
    assert_eq!(code, 200, "{text}");
    // The CLI works with the dev.env of the restarted instance.
    let out = dev
        .cli()
        .args(["targets", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("keep-me"));
}
