//! Approvals by people who log in at a real OpenID provider (npm `oidc-provider`): the
//! approver's login must have used a second factor (`amr`) and be fresh (`auth_time`), and
//! the approver's groups are those of that login.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use common::dev::curl;
use common::oidc_login::{cli_login, install_browser_script, token_of, who, Env, Who};
use serde_json::{json, Value};

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
name = "echo-oncall"
groups = ["developers"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
[role.requestable]
approvers = ["leads"]
max_duration = "1h"
"#;

fn start() -> Env {
    let env = Env::start(POLICY, "", "[auth.oidc.mfa]\namr = [\"otp\", \"hwk\"]\n");
    install_browser_script(&env);
    env
}

/// `portcullis login` as `who` in its own home (one per user, groups, amr and age: a home's
/// browser keeps its session at the provider, which would log the next `who` in as the last);
/// the token.
fn token(env: &Env, who: &Who) -> String {
    let home = env
        .dir
        .path()
        .join(who.user)
        .join(format!("{}-{}-{}", who.groups, who.amr, who.auth_age));
    let (ok, err) = cli_login(env, &home, who);
    assert!(ok, "{err}");
    token_of(&home)
}

fn call(env: &Env, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = curl(&env.dev, method, path, Some(token), body.as_deref());
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn approve(env: &Env, token: &str, id: &str) -> (u16, Value) {
    call(
        env,
        "POST",
        &format!("/v1/requests/{id}/approve"),
        token,
        Some(json!({})),
    )
}

#[test]
fn an_approval_needs_a_fresh_second_factor_login_whose_groups_approve() {
    let env = start();
    let requester = token(&env, &who("dana", "developers", "pwd"));
    let (status, v) = call(
        &env,
        "POST",
        "/v1/requests",
        &requester,
        Some(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();

    // A password alone: no second factor.
    let (status, v) = approve(&env, &token(&env, &who("lars", "leads", "pwd")), &id);
    assert_eq!(status, 403, "{v}");
    assert!(v.to_string().contains("second factor"), "{v}");
    // A second factor an hour ago: not fresh.
    let stale = Who {
        auth_age: 3600,
        ..who("lars", "leads", "otp")
    };
    let (status, v) = approve(&env, &token(&env, &stale), &id);
    assert_eq!(status, 403, "{v}");
    assert!(v.to_string().contains("log in again"), "{v}");
    // A fresh login that no longer carries the approvers' group.
    let (status, v) = approve(&env, &token(&env, &who("lars", "ops", "otp")), &id);
    assert_eq!(status, 403, "{v}");
    let (status, v) = call(&env, "GET", &format!("/v1/requests/{id}"), &requester, None);
    assert_eq!((status, v["state"].as_str()), (200, Some("pending")), "{v}");
    // Fresh, with a second factor, in the approvers' group.
    let (status, v) = approve(&env, &token(&env, &who("lars", "leads", "otp")), &id);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["approvals"][0]["username"], "lars", "{v}");
}
