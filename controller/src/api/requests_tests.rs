//! `/v1/requests` and authorize-session under requests, through the router (as `tests.rs`)
//! on a manual clock: approvals by distinct, freshly logged-in approvers with MFA, the
//! window and its end, revoke, the matrix's X cells, break-glass, runs and their proofs,
//! `GET /v1/audit?run=ID`; every change with its event.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::tests::{client_key, Api};
use crate::ManualClock;

/// LOCAL (loopback) to itself is broker-only for `echo`; LOCAL to LAB is marked X. Nobody
/// holds `echo` standing: only requests grant it.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "LAB"
cidrs = ["192.0.2.0/24"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "broker-only"
services = ["echo"]

[[cell]]
from = "LOCAL"
to = "LAB"
access = "deny"

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "audit:read", "policy:reload"]

[[role]]
name = "echo-oncall"
groups = ["developers"]
[[role.grant]]
zones = ["*"]
services = ["echo"]
[role.requestable]
approvers = ["leads"]
max_duration = "1h"
reason_required = true
[role.requestable.break_glass]
max_duration = "10m"

[[role]]
name = "echo-two"
groups = ["developers"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
[role.requestable]
approvers = ["leads"]
approvals = 2
max_duration = "1h"
"#;

struct Rig {
    api: Api,
    clock: Arc<ManualClock>,
    dev: String,
    lead: String,
    admin: String,
}

async fn rig() -> Rig {
    let clock = Arc::new(ManualClock::at_unix(1_900_000_000));
    let api = Api::start_with(POLICY, "", clock.clone()).await;
    api.live_worker().await;
    let admin = api.login("root", &["admins"]).await;
    for (name, address) in [
        ("echo", "127.0.0.1:7"),
        ("echo2", "127.0.0.2:7"),
        ("lab", "192.0.2.10:7"),
    ] {
        let (status, body) = api
            .create_target(
                &admin,
                json!({"name": name, "address": address, "service": "echo"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let dev = api.login("dev1", &["developers"]).await;
    let lead = api.login("lead1", &["leads"]).await;
    Rig {
        api,
        clock,
        dev,
        lead,
        admin,
    }
}

impl Rig {
    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.api
            .call(Method::POST, path, Some(token), Some(body))
            .await
    }

    async fn create(&self, body: Value) -> (StatusCode, Value) {
        self.post(&self.dev, "/v1/requests", body).await
    }

    /// A pending request of dev1's for `echo` (echo-oncall) and its id.
    async fn pending(&self) -> String {
        let (status, v) = self
            .create(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600, "reason": "INC-1"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn decide(&self, token: &str, id: &str, verb: &str) -> (StatusCode, Value) {
        self.post(
            token,
            &format!("/v1/requests/{id}/{verb}"),
            json!({"reason": "checked"}),
        )
        .await
    }

    async fn authorize(&self, target: &str, extra: Value) -> (StatusCode, Value) {
        let mut body = client_key();
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        self.post(
            &self.dev,
            &format!("/v1/targets/{target}/authorize-session"),
            body,
        )
        .await
    }

    async fn show(&self, id: &str) -> Value {
        let (status, v) = self
            .api
            .call(
                Method::GET,
                &format!("/v1/requests/{id}"),
                Some(&self.dev),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn session(&self, id: &str) -> Value {
        let (status, v) = self
            .api
            .call(
                Method::GET,
                &format!("/v1/sessions/{id}"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn sweep(&self) {
        crate::sessions::sweeper::sweep_once(&self.api.state)
            .await
            .unwrap();
    }

    /// The stored body of the newest event of `kind`.
    async fn last_event(&self, kind: &str) -> Value {
        let (status, v) = self
            .api
            .call(
                Method::GET,
                &format!("/v1/audit?type={kind}&limit=1"),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["items"][0].clone()
    }
}

fn message(v: &Value) -> String {
    v["message"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_owned)
}

#[tokio::test]
async fn an_approved_request_opens_sessions_for_its_window_and_its_end_ends_them() {
    let r = rig().await;
    let (status, v) = r.authorize("echo", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no standing access: {v}");
    // The role wants a reason.
    let (status, v) = r
        .create(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("reason"), "{v}");
    let (id, events) = r.api.audited(r.pending()).await;
    assert_eq!(events, ["access_requested"]);
    assert!(id.starts_with("ar_"), "{id}");
    let shown = r.show(&id).await;
    assert_eq!(
        (shown["state"].as_str(), shown["approvals_needed"].as_u64()),
        (Some("pending"), Some(1))
    );
    assert_eq!(
        r.authorize("echo", json!({})).await.0,
        StatusCode::FORBIDDEN,
        "pending"
    );

    // Not an approver, then an approver.
    let other = r.api.login("dev2", &["developers"]).await;
    let ((status, v), events) = r.api.audited(r.decide(&other, &id, "approve")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(events, ["permission_denied"]);
    r.clock.advance(Duration::from_secs(5));
    let ((status, v), events) = r.api.audited(r.decide(&r.lead, &id, "approve")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(events, ["access_approved"]);
    assert_eq!(v["state"], "approved");
    assert_eq!(v["approvals"][0]["username"], "lead1");
    let window_end = v["expires_at"].as_u64().unwrap();
    assert_eq!(
        window_end,
        1_900_000_005 + 600,
        "the window starts at the approval"
    );
    assert_eq!(
        r.last_event("access_approved").await["details"]["final"],
        true
    );

    // The approved request opens a session, capped at its window, named in its event.
    let ((status, auth), events) = r.api.audited(r.authorize("echo", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    assert_eq!(events, ["session_authorized"]);
    assert!(auth["expires_at"].as_u64().unwrap() <= window_end, "{auth}");
    let session = auth["session_id"].as_str().unwrap().to_owned();
    let authorized = r.last_event("session_authorized").await;
    assert_eq!(
        authorized["details"]["access_request"],
        id.as_str(),
        "{authorized}"
    );
    // A policy reload judges the session with its request's role: it stays.
    let (status, v) = r
        .api
        .call(Method::POST, "/v1/policy/reload", Some(&r.admin), None)
        .await;
    assert!(status.is_success(), "{v}");
    assert_eq!(r.session(&session).await["state"], "pending");
    // Only what it names: echo2 is in the role's zones but not in the request.
    assert_eq!(
        r.authorize("echo2", json!({})).await.0,
        StatusCode::FORBIDDEN
    );

    // The window ends: the sweep expires the request and ends its session.
    r.clock.advance(Duration::from_secs(601));
    let ((), events) = r.api.audited(r.sweep()).await;
    assert!(events.contains(&"access_expired".to_owned()), "{events:?}");
    assert_eq!(r.show(&id).await["state"], "expired");
    // Its session was capped at the window, so it expired with it.
    let ended = r.session(&session).await;
    assert_eq!(
        (
            ended["state"].as_str(),
            ended["termination_reason"].as_str()
        ),
        (Some("terminated"), Some("expired")),
        "{ended}"
    );
    assert_eq!(
        r.authorize("echo", json!({})).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn two_approvals_need_two_distinct_approvers_never_the_requester() {
    let r = rig().await;
    let both = r.api.login("both", &["developers", "leads"]).await;
    let (status, v) = r
        .post(
            &both,
            "/v1/requests",
            json!({"role": "echo-two", "targets": ["echo"], "duration_secs": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["approvals_needed"], 2);
    let (status, v) = r.decide(&both, &id, "approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("requester"), "{v}");
    let (status, v) = r.decide(&r.lead, &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["approvals_needed"].as_u64()),
        (Some("pending"), Some(1))
    );
    assert_eq!(
        r.last_event("access_approved").await["details"]["final"],
        false
    );
    let (status, v) = r.decide(&r.lead, &id, "approve").await;
    assert!(
        matches!(status, StatusCode::FORBIDDEN | StatusCode::CONFLICT),
        "{status} {v}"
    );
    let lead2 = r.api.login("lead2", &["leads"]).await;
    let (status, v) = r.decide(&lead2, &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
    // Decided: no more approvals or denials.
    assert_eq!(r.decide(&lead2, &id, "deny").await.0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn an_approver_without_a_fresh_mfa_login_is_told_to_log_in_again() {
    let r = rig().await;
    let id = r.pending().await;
    r.clock.advance(Duration::from_secs(11 * 60));
    for verb in ["approve", "deny"] {
        let ((status, v), events) = r.api.audited(r.decide(&r.lead, &id, verb)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
        assert!(message(&v).contains("log in again"), "{v}");
        assert_eq!(events, ["permission_denied"]);
    }
    // Without MFA at all.
    let (status, v) = r
        .api
        .call(
            Method::POST,
            "/v1/auth/dev-login",
            None,
            Some(json!({"username": "lead3", "groups": ["leads"], "amr": ["pwd"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let no_mfa = v["token"].as_str().unwrap().to_owned();
    assert_eq!(
        r.decide(&no_mfa, &id, "approve").await.0,
        StatusCode::FORBIDDEN
    );
    let fresh = r.api.login("lead1", &["leads"]).await;
    let (status, v) = r.decide(&fresh, &id, "deny").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["decided_by"].as_str()),
        (Some("denied"), Some("lead1"))
    );
    assert_eq!(
        r.authorize("echo", json!({})).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn revoke_ends_the_request_and_its_sessions_at_once() {
    let r = rig().await;
    let id = r.pending().await;
    assert_eq!(r.decide(&r.lead, &id, "approve").await.0, StatusCode::OK);
    let (_, auth) = r.authorize("echo", json!({})).await;
    let session = auth["session_id"].as_str().unwrap().to_owned();
    let other = r.api.login("dev2", &["developers"]).await;
    assert_eq!(
        r.decide(&other, &id, "revoke").await.0,
        StatusCode::FORBIDDEN
    );
    let ((status, v), events) = r.api.audited(r.decide(&r.dev, &id, "revoke")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "revoked");
    assert_eq!(events, ["access_revoked", "session_terminated"]);
    assert_eq!(r.session(&session).await["state"], "terminated");
    assert_eq!(
        r.authorize("echo", json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        r.decide(&r.dev, &id, "revoke").await.0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn a_request_never_opens_a_cell_marked_x() {
    let r = rig().await;
    let ((status, v), events) = r
        .api
        .audited(r.create(json!({"role": "echo-oncall", "targets": ["lab"], "duration_secs": 600, "reason": "INC-3"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        events,
        ["permission_denied"],
        "a refused request is audited"
    );
    assert!(message(&v).contains("(X)"), "{v}");
    assert!(
        message(&v).contains("lab"),
        "the refusal names the target: {v}"
    );
    let (status, v) = r
        .create(
            json!({"role": "echo-oncall", "zone": "LAB", "duration_secs": 600, "reason": "INC-3"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
}

#[tokio::test]
async fn break_glass_approves_itself_with_its_own_event() {
    let r = rig().await;
    let (status, v) = r
        .create(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 3600, "reason": "down", "break_glass": true}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "over the break-glass maximum: {v}"
    );
    let ((status, v), events) = r
        .api
        .audited(r.create(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 300, "reason": "site down", "break_glass": true})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(events, ["break_glass"]);
    assert_eq!(
        (v["state"].as_str(), v["break_glass"].as_bool()),
        (Some("approved"), Some(true))
    );
    assert_eq!(v["expires_at"], 1_900_000_300);
    let fired = r.last_event("break_glass").await;
    assert_eq!(fired["reason"], "site down", "{fired}");
    assert_eq!(r.authorize("echo", json!({})).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn lists_show_ones_own_the_roles_one_approves_or_everything_to_auditors() {
    let r = rig().await;
    let id = r.pending().await;
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (token, sees) in [(&r.dev, true), (&r.lead, true), (&r.admin, true)] {
        let (status, v) = r
            .api
            .call(Method::GET, "/v1/requests?state=pending", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(ids(&v) == [id.clone()], sees, "{v}");
    }
    let other = r.api.login("dev2", &["developers"]).await;
    let (_, v) = r
        .api
        .call(Method::GET, "/v1/requests", Some(&other), None)
        .await;
    assert!(ids(&v).is_empty(), "{v}");
    let (status, _) = r
        .api
        .call(
            Method::GET,
            &format!("/v1/requests/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = r
        .api
        .call(
            Method::GET,
            "/v1/requests?state=granted",
            Some(&r.dev),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

/// A run's key, and its proof for a session's client key.
struct RunKey(portcullis_crypto::ed25519::SigningKey);

impl RunKey {
    fn new() -> RunKey {
        let pkcs8 = portcullis_crypto::ed25519::SigningKey::generate_pkcs8().unwrap();
        RunKey(portcullis_crypto::ed25519::SigningKey::from_pkcs8(&pkcs8).unwrap())
    }

    fn public(&self) -> String {
        let raw: [u8; 32] = self.0.public_key().try_into().unwrap();
        portcullis_proto::keys::b64(&portcullis_proto::keys::ed25519_spki(&raw))
    }

    /// An authorize-session body under run `id`, signed by this key (or not).
    fn body(&self, id: &str, signed: bool) -> Value {
        let mut body = client_key();
        let key = body["client_public_key"].as_str().unwrap().to_owned();
        let message = portcullis_proto::access::run_proof_message(id, &key);
        let proof = match signed {
            true => portcullis_proto::keys::b64(&self.0.sign(&message)),
            false => portcullis_proto::keys::b64(&RunKey::new().0.sign(&message)),
        };
        body["under_request"] = json!({"request_id": id, "run_proof": proof});
        body
    }
}

#[tokio::test]
async fn a_run_opens_sessions_only_with_its_proof_and_ends_with_its_command() {
    let r = rig().await;
    let (status, v) = r
        .create(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600, "reason": "release",
                       "run_command": ["ansible-playbook", "site.yml"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["run"]["command"][0], "ansible-playbook");
    let key = RunKey::new();
    let start = json!({"run_public_key": key.public(), "keepalive_secs": 10});
    let start_path = format!("/v1/requests/{id}/run/start");
    assert_eq!(
        r.post(&r.dev, &start_path, start.clone()).await.0,
        StatusCode::CONFLICT,
        "pending"
    );
    assert_eq!(r.decide(&r.lead, &id, "approve").await.0, StatusCode::OK);
    // Not the requester's run.
    assert_eq!(
        r.post(&r.lead, &start_path, start.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let ((status, v), events) = r
        .api
        .audited(r.post(&r.dev, &start_path, start.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(events, ["run_started"]);
    assert_eq!(
        r.post(&r.dev, &start_path, start).await.0,
        StatusCode::CONFLICT,
        "once"
    );

    // A request with a run serves only sessions that carry its proof.
    let (status, v) = r.authorize("echo", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = r
        .post(
            &r.dev,
            "/v1/targets/echo/authorize-session",
            key.body(&id, false),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("proof"), "{v}");
    let (status, v) = r
        .post(
            &r.dev,
            "/v1/targets/echo2/authorize-session",
            key.body(&id, true),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("target list"), "{v}");
    let (status, auth) = r
        .post(
            &r.dev,
            "/v1/targets/echo/authorize-session",
            key.body(&id, true),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    let session = auth["session_id"].as_str().unwrap().to_owned();

    let keepalive = format!("/v1/requests/{id}/run/keepalive");
    assert_eq!(
        r.post(&r.dev, &keepalive, json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    let ((status, v), events) = r
        .api
        .audited(r.post(
            &r.dev,
            &format!("/v1/requests/{id}/run/finish"),
            json!({"exit_status": 3}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        events,
        ["run_finished", "access_revoked", "session_terminated"]
    );
    assert_eq!(
        (v["state"].as_str(), v["run"]["exit_status"].as_i64()),
        (Some("revoked"), Some(3))
    );
    assert_eq!(v["run"]["outcome"], "exited");
    assert_eq!(v["run"]["sessions"], json!([session]));
    assert_eq!(r.session(&session).await["state"], "terminated");
    assert_eq!(
        r.post(&r.dev, &keepalive, json!({})).await.0,
        StatusCode::CONFLICT
    );

    // The run as a unit: the request's events and its session's, in order.
    let (status, v) = r
        .api
        .call(
            Method::GET,
            &format!("/v1/audit?run={id}"),
            Some(&r.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "access_requested",
            "access_approved",
            "run_started",
            "session_authorized",
            "run_finished",
            "access_revoked",
            "session_terminated"
        ],
        "{v}"
    );
}

#[tokio::test]
async fn a_run_without_keepalives_is_lost_and_its_sessions_end() {
    let r = rig().await;
    let (_, v) = r
        .create(json!({"role": "echo-oncall", "targets": ["echo"], "duration_secs": 600, "reason": "release",
                       "run_command": ["make", "deploy"]}))
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(r.decide(&r.lead, &id, "approve").await.0, StatusCode::OK);
    let key = RunKey::new();
    let start = json!({"run_public_key": key.public(), "keepalive_secs": 10});
    assert_eq!(
        r.post(&r.dev, &format!("/v1/requests/{id}/run/start"), start)
            .await
            .0,
        StatusCode::OK
    );
    let (_, auth) = r
        .post(
            &r.dev,
            "/v1/targets/echo/authorize-session",
            key.body(&id, true),
        )
        .await;
    let session = auth["session_id"].as_str().unwrap().to_owned();
    r.clock.advance(Duration::from_secs(30));
    r.sweep().await;
    assert_eq!(
        r.show(&id).await["state"],
        "approved",
        "three intervals are not over yet"
    );
    r.clock.advance(Duration::from_secs(1));
    let ((), events) = r.api.audited(r.sweep()).await;
    assert_eq!(
        events,
        ["run_finished", "access_revoked", "session_terminated"]
    );
    let v = r.show(&id).await;
    assert_eq!(
        (v["state"].as_str(), v["run"]["outcome"].as_str()),
        (Some("revoked"), Some("lost"))
    );
    assert_eq!(r.session(&session).await["state"], "terminated");
}
