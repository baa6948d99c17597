//! Just-in-time access against `portcullis dev` with local users who log in with a password
//! and TOTP (a second factor: approvers need one): requests, approvals by distinct approvers
//! with a fresh login, the window, revoke, break-glass, and the matrix's X cells, which no
//! approval opens.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::Command;
use std::time::Duration;

use common::console::{enrol_for_token, stack_with};
use common::dev::{curl, Dev};
use common::raw::client_public_key;
use common::wait::wait_for;
use serde_json::{json, Value};

/// Zones by client address: 127.0.0.3 is ELSEWHERE, whose cell to LOCAL (where the echo
/// target and the worker are) is marked X; everything else on loopback is LOCAL, whose cell
/// to itself is broker-only for `echo`. Nobody holds `echo` standing: only requests grant it.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8", "::1/128"]

[[zone]]
name = "ELSEWHERE"
cidrs = ["127.0.0.3/32"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "broker-only"
services = ["echo"]

[[cell]]
from = "ELSEWHERE"
to = "LOCAL"
access = "deny"

[[role]]
name = "auditor"
groups = ["auditors"]
permissions = ["audit:read", "sessions:read-all"]

[[role]]
name = "echo-oncall"
groups = ["developers"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
[role.requestable]
approvers = ["leads"]
max_duration = "1h"
reason_required = true
[role.requestable.break_glass]
max_duration = "4s"

[[role]]
name = "echo-two-person"
groups = ["developers"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
[role.requestable]
approvers = ["leads"]
approvals = 2
max_duration = "1h"
"#;

const USERS: &[(&str, &str)] = &[
    ("dev1", "developers"),
    ("lead1", "leads,auditors"),
    ("lead2", "leads"),
    ("both", "developers,leads"),
];

struct Stack {
    dev: Dev,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(extra_config: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let dev = stack_with(dir.path(), extra_config, POLICY, USERS, &[]);
        Stack { dev, _dir: dir }
    }

    /// A fresh login of `user` with TOTP: its token.
    fn login(&self, user: &str) -> String {
        enrol_for_token(&self.dev, user).2
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = curl(&self.dev, method, path, Some(token), body.as_deref());
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn create(&self, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", "/v1/requests", token, Some(body))
    }

    fn decide(&self, token: &str, id: &str, verb: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/v1/requests/{id}/{verb}"),
            token,
            Some(json!({"reason": "checked"})),
        )
    }

    fn state_of(&self, token: &str, id: &str) -> String {
        let (status, v) = self.call("GET", &format!("/v1/requests/{id}"), token, None);
        assert_eq!(status, 200, "{v}");
        v["state"].as_str().unwrap().to_owned()
    }

    /// Asks for a session to the echo target (the API alone; the key is a fresh Ed25519 one).
    fn authorize(&self, token: &str) -> (u16, Value) {
        self.authorize_from(token, None)
    }

    /// [`Stack::authorize`] from a client address of loopback (`curl --interface`).
    fn authorize_from(&self, token: &str, from: Option<&str>) -> (u16, Value) {
        let body = json!({"client_public_key": client_public_key()}).to_string();
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.dev.var("PORTCULLIS_CA"));
        if let Some(addr) = from {
            cmd.args(["--interface", addr]);
        }
        let out = cmd
            .args(["-X", "POST", "-H", "Content-Type: application/json"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args(["--data-binary", &body])
            .arg(format!(
                "{}/v1/targets/echo/authorize-session",
                self.dev.api()
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.trim().parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        )
    }

    fn session_state(&self, token: &str, id: &str) -> Value {
        let (status, v) = self.call("GET", &format!("/v1/sessions/{id}"), token, None);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The audit events of `kind`.
    fn events(&self, token: &str, kind: &str) -> Vec<Value> {
        let (status, v) = self.call("GET", &format!("/v1/audit?kind={kind}"), token, None);
        assert_eq!(status, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .or_else(|| v["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

#[test]
fn an_approved_request_opens_sessions_for_its_window_and_not_after() {
    let s = Stack::start("");
    let dev1 = s.login("dev1");
    // No standing access.
    let (status, v) = s.authorize(&dev1);
    assert_eq!(status, 403, "{v}");
    // The reason is required by this role.
    let (status, v) = s.create(
        &dev1,
        json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 6}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("reason"), "{v}");
    let (status, v) = s.create(
        &dev1,
        json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 6, "reason": "INC-1"}),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["state"], "pending");
    assert_eq!(v["approvals_needed"], 1);
    // Pending grants nothing.
    assert_eq!(s.authorize(&dev1).0, 403);
    // The requester's own approval is refused, even with the approvers' group.
    let lead1 = s.login("lead1");
    let (status, v) = s.decide(&lead1, &id, "approve");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "approved");
    let (status, session) = s.authorize(&dev1);
    assert_eq!(status, 201, "{session}");
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    assert!(
        session["expires_at"].as_u64().unwrap() <= v["expires_at"].as_u64().unwrap(),
        "a session ends with its request's window: {session} {v}"
    );
    // The session's own audit events name the request.
    let authorized = s.events(&lead1, "session_authorized");
    let ours = authorized
        .iter()
        .find(|e| e.to_string().contains(&session_id))
        .unwrap();
    assert!(ours.to_string().contains(&id), "{ours}");
    // When the window ends, the request expires, its session ends and no new one opens.
    wait_for("the request to expire", Duration::from_secs(20), || {
        s.state_of(&dev1, &id) == "expired"
    });
    wait_for("its session to end", Duration::from_secs(20), || {
        s.session_state(&lead1, &session_id)["state"] != "active"
            && s.session_state(&lead1, &session_id)["state"] != "pending"
    });
    let (status, v) = s.authorize(&dev1);
    assert_eq!(status, 403, "{v}");
    assert_eq!(s.events(&lead1, "access_expired").len(), 1);
}

#[test]
fn the_requester_never_approves_and_two_approvals_need_two_distinct_approvers() {
    let s = Stack::start("");
    let both = s.login("both");
    let (status, v) = s.create(
        &both,
        json!({"role": "echo-two-person", "targets": ["echo"], "duration_secs": 600}),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["approvals_needed"], 2);
    let (status, v) = s.decide(&both, &id, "approve");
    assert_eq!(status, 403, "{v}");
    assert!(message(&v).contains("requester"), "{v}");
    let lead1 = s.login("lead1");
    let (status, v) = s.decide(&lead1, &id, "approve");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "pending", "one of two");
    assert_eq!(v["approvals_needed"], 1);
    // The same approver twice counts once.
    let (status, v) = s.decide(&lead1, &id, "approve");
    assert!(status == 403 || status == 409, "{status} {v}");
    assert_eq!(s.state_of(&both, &id), "pending");
    assert_eq!(s.authorize(&both).0, 403);
    let lead2 = s.login("lead2");
    let (status, v) = s.decide(&lead2, &id, "approve");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
    assert_eq!(s.authorize(&both).0, 201);
    // A non-approver cannot deny, revoke ends it (and its sessions) at once.
    let dev1 = s.login("dev1");
    assert_eq!(s.decide(&dev1, &id, "revoke").0, 403);
    let (_, session) = s.authorize(&both);
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    let (status, v) = s.decide(&lead2, &id, "revoke");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "revoked");
    wait_for(
        "the session to end at the revoke",
        Duration::from_secs(10),
        || s.session_state(&lead1, &session_id)["terminated_at"].is_u64(),
    );
    assert_eq!(s.authorize(&both).0, 403);
}

#[test]
fn an_approval_with_a_stale_login_is_refused_until_the_approver_logs_in_again() {
    let s = Stack::start("[access]\napprover_max_auth_age = \"3s\"\n");
    let dev1 = s.login("dev1");
    let (status, v) = s.create(
        &dev1,
        json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600, "reason": "INC-2"}),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (lead1_secret, lead1_step, stale) = enrol_for_token(&s.dev, "lead1");
    let logged_in_at = std::time::Instant::now();
    wait_for(
        "the approver's login to be older than 3 s",
        Duration::from_secs(10),
        || logged_in_at.elapsed() > Duration::from_secs(4),
    );
    let (status, v) = s.decide(&stale, &id, "approve");
    assert_eq!(status, 403, "{v}");
    assert!(message(&v).contains("log in again"), "{v}");
    let (status, v) = s.decide(&stale, &id, "deny");
    assert_eq!(status, 403, "deny needs the same: {v}");
    assert_eq!(s.state_of(&dev1, &id), "pending");
    let (fresh, _) = common::console::log_in_api(&s.dev, "lead1", &lead1_secret, lead1_step);
    let (status, v) = s.decide(&fresh, &id, "approve");
    assert_eq!(status, 200, "{v}");
}

#[test]
fn a_request_for_a_cell_marked_x_is_refused_at_creation_and_at_use() {
    let s = Stack::start("");
    let dev1 = s.login("dev1");
    // From ELSEWHERE (127.0.0.3) the cell to LOCAL is X: refused at creation.
    let body = json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600, "reason": "INC-3"}).to_string();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--interface",
            "127.0.0.3",
            "--cacert",
        ])
        .arg(s.dev.var("PORTCULLIS_CA"))
        .args(["-X", "POST", "-H", "Content-Type: application/json", "-H"])
        .arg(format!("Authorization: Bearer {dev1}"))
        .args(["--data-binary", &body])
        .arg(format!("{}/v1/requests", s.dev.api()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (answer, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code.trim(), "403", "{answer}");
    assert!(
        answer.contains("(X)"),
        "the refusal names the X cell: {answer}"
    );
    // From LOCAL it is broker-only: created and approved. Used from ELSEWHERE: refused.
    let (status, v) = s.create(&dev1, serde_json::from_str(&body).unwrap());
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let lead1 = s.login("lead1");
    assert_eq!(s.decide(&lead1, &id, "approve").0, 200);
    assert_eq!(s.authorize_from(&dev1, Some("127.0.0.1")).0, 201);
    let (status, v) = s.authorize_from(&dev1, Some("127.0.0.3"));
    assert_eq!(status, 403, "{v}");
    assert!(message(&v).contains("(X)"), "{v}");
}

#[test]
fn break_glass_approves_itself_fires_its_own_event_and_ends_at_its_limit() {
    let s = Stack::start("");
    let dev1 = s.login("dev1");
    // Longer than the break-glass maximum, or without a reason: refused.
    let (status, v) = s.create(
        &dev1,
        json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600, "reason": "down", "break_glass": true}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.create(
        &dev1,
        json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 4, "break_glass": true}),
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.create(
        &dev1,
        json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 4, "reason": "site down", "break_glass": true}),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["state"], "approved");
    assert_eq!(v["break_glass"], true);
    let (status, session) = s.authorize(&dev1);
    assert_eq!(status, 201, "{session}");
    let lead1 = s.login("lead1");
    let fired = s.events(&lead1, "break_glass");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0].to_string().contains(&id));
    assert!(fired[0].to_string().contains("site down"));
    wait_for(
        "break-glass to end at its limit",
        Duration::from_secs(20),
        || s.state_of(&dev1, &id) == "expired",
    );
    assert_eq!(s.authorize(&dev1).0, 403);
}
