//! The API's routes through `tower::ServiceExt::oneshot`, without a socket: a controller
//! started on an in-memory SQLite store, its router called request by request. Who is let
//! in, what a refusal says, and that every state change commits its audit event (and a
//! refused request commits none).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::extract::PeerAddr;
use crate::audit::{event, AuditEvent, Event};
use crate::config::Config;
use crate::state::AppState;
use crate::store::audit::{self as audit_rows, Filter};
use crate::store::workers::{self as worker_rows, WorkerRecord};
use crate::{Controller, Options};

/// Two zones: LOCAL (loopback) and LAB (a documentation range), and no cell from LOCAL to
/// LAB, so the matrix refuses every session there whatever the caller's roles.
pub(crate) const POLICY: &str = r#"
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
access = "allow"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "workers:admin", "sessions:read-all", "sessions:cancel-any", "policy:reload", "audit:read", "users:revoke"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "user"
groups = ["users"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
"#;

/// The address every request comes from (the listener puts the TLS peer's there).
const PEER: ([u8; 4], u16) = ([127, 0, 0, 1], 40_000);

/// A controller with the dev login on, on an in-memory store, and its router.
pub(crate) struct Api {
    pub(crate) router: Router,
    pub(crate) state: AppState,
    _controller: Controller,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Api {
        Api::start_with_policy(POLICY).await
    }

    /// A controller as [`Api::start`]'s, with the policy `policy`.
    pub(crate) async fn start_with_policy(policy_text: &str) -> Api {
        Api::start_with(policy_text, "", crate::clock::system()).await
    }

    /// A controller with the policy `policy_text`, `extra` config sections and `clock`.
    pub(crate) async fn start_with(
        policy_text: &str,
        extra: &str,
        clock: crate::clock::SharedClock,
    ) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, policy_text).unwrap();
        let text = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n\
             [policy]\nfile = \"{}\"\n{extra}",
            policy.display()
        );
        // A named in-memory database, one per test (`sqlite::memory:` cannot be used: the
        // store's SQLite options do not survive their round trip through a URL).
        static DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://api-test-{n}?mode=memory&cache=shared");
        let config = Config::parse(&text, "test.toml", |key| match key {
            "PORTCULLIS_DATABASE_URL" => Some(url.clone()),
            "PORTCULLIS_MASTER_KEY" => Some("ab".repeat(32)),
            _ => None,
        })
        .unwrap();
        let options = Options {
            dev_login: true,
            clock,
        };
        let controller = Controller::start_with(config, options).await.unwrap();
        let state = controller.state().clone();
        Api {
            router: super::router(state.clone()),
            state,
            _controller: controller,
            _dir: dir,
        }
    }

    /// One request with a raw body; the status and the body as JSON (`Null` when empty or
    /// not JSON).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let mut request = request
            .body(Body::from(body.unwrap_or_default().to_owned()))
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::from(PEER)));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// One request with a JSON body and no token; the whole response (for its headers).
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> axum::response::Response {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::from(PEER)));
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string());
        self.send(method, path, token, body.as_deref()).await
    }

    /// `POST /v1/targets` of `target` with `token`.
    pub(crate) async fn create_target(&self, token: &str, target: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/v1/targets", Some(token), Some(target))
            .await
    }

    /// A token from the dev login for `user` in `groups` (with MFA).
    pub(crate) async fn login(&self, user: &str, groups: &[&str]) -> String {
        let body = json!({"username": user, "groups": groups, "amr": ["mfa"]});
        let (status, body) = self
            .call(Method::POST, "/v1/auth/dev-login", None, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// The sequence number of the newest audit event (0 before the first).
    pub(crate) async fn last_seq(&self) -> u64 {
        self.events_after(0).await.last().map_or(0, |(seq, _)| *seq)
    }

    /// The type of every audit event committed after `seq`, oldest first, with its
    /// sequence number.
    pub(crate) async fn events_after(&self, seq: u64) -> Vec<(u64, String)> {
        let mut conn = self.state.store.conn().await.unwrap();
        let mut events: Vec<_> = audit_rows::list(&mut conn, &Filter::default(), 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.columns.seq > seq)
            .map(|e| (e.columns.seq, e.columns.kind))
            .collect();
        events.reverse();
        events
    }

    /// The types of the audit events `action` committed.
    pub(crate) async fn audited<T>(
        &self,
        action: impl std::future::Future<Output = T>,
    ) -> (T, Vec<String>) {
        let before = self.last_seq().await;
        let out = action.await;
        let kinds = self
            .events_after(before)
            .await
            .into_iter()
            .map(|(_, kind)| kind)
            .collect();
        (out, kinds)
    }

    /// A worker heard from just now, as the cluster link records one (with its event), so
    /// that authorize-session has one to pick.
    pub(crate) async fn live_worker(&self) -> String {
        let now = crate::clock::to_i64(self.state.clock.unix_secs());
        let id = crate::ids::new_id(crate::ids::IdKind::Worker);
        let mut tx = self.state.begin_audited().await.unwrap();
        worker_rows::insert(
            tx.write(),
            &WorkerRecord {
                id: id.clone(),
                name: "w1".into(),
                proxy_addr: "127.0.0.1:9401".into(),
                key_fingerprint: "00".repeat(32),
                state: worker_rows::ACTIVE.into(),
                created_at: now,
                last_seen_at: Some(now),
                cert_expires_at: now + 3600,
                draining_since: None,
                stopped_at: None,
            },
        )
        .await
        .unwrap();
        tx.commit(AuditEvent::new(
            crate::audit::Actor::worker(&id),
            Event::WorkerJoined {
                details: event::WorkerJoined {
                    worker_id: id.clone(),
                    name: "w1".into(),
                    proxy_addr: "127.0.0.1:9401".into(),
                    peer: "127.0.0.1:50000".into(),
                },
            },
        ))
        .await
        .unwrap();
        id
    }
}

/// A fresh client key, as `portcullis connect` sends it.
pub(crate) fn client_key() -> Value {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    json!({ "client_public_key": portcullis_proto::keys::b64(&spki) })
}

fn error_code(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn requests_without_a_usable_token_are_refused_and_change_nothing() {
    let api = Api::start().await;
    let admin = api.login("ada", &["admins"]).await;
    let target =
        json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"});
    // No token, another scheme, an empty one, one nobody issued.
    let refusals = [
        (None, "missing `Authorization: Bearer TOKEN`"),
        (Some(""), "must be `Bearer TOKEN`"),
        (Some("not-a-token"), "unknown, expired or revoked"),
    ];
    for (token, says) in refusals {
        let ((status, body), events) = api
            .audited(api.call(Method::POST, "/v1/targets", token, Some(target.clone())))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{body}");
        assert!(message(&body).contains(says), "{token:?}: {body}");
        assert_eq!(events, Vec::<String>::new(), "{token:?}");
    }
    let mut basic = Request::builder()
        .method(Method::GET)
        .uri("/v1/whoami")
        .header(header::AUTHORIZATION, format!("Basic {admin}"))
        .body(Body::empty())
        .unwrap();
    basic
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(PEER)));
    let response = api.router.clone().oneshot(basic).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The admin's own token still works: nothing above was created.
    let (status, body) = api
        .call(Method::GET, "/v1/targets", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], json!([]), "{body}");
}

#[tokio::test]
async fn credentials_issued_for_another_audience_are_not_api_tokens() {
    let api = Api::start().await;
    let admin = api.login("ada", &["admins"]).await;
    api.live_worker().await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A worker's join token, and a session's grant (signed for the worker that carries the
    // session): neither opens the API.
    let ((status, body), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/workers/join-tokens",
            Some(&admin),
            Some(json!({})),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(events, ["worker_join_token_created"]);
    let join_token = body["token"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(&admin),
            Some(client_key()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let grant = body["grant"].as_str().unwrap().to_owned();
    for (what, token) in [("join token", join_token), ("grant", grant)] {
        let (status, body) = api
            .call(Method::GET, "/v1/whoami", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(
            message(&body).contains("unknown, expired or revoked"),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn a_dev_login_authorizes_a_session_that_the_session_list_shows() {
    let api = Api::start().await;
    let admin = api.login("ada", &["admins"]).await;
    let worker = api.live_worker().await;
    let ((status, body), events) = api
        .audited(api.create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(events, ["target_created"]);

    let ((status, user), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/auth/dev-login",
            None,
            Some(json!({"username": "uma", "groups": ["users"], "amr": ["mfa"]})),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(events, ["login_succeeded"]);
    assert_eq!(user["user"]["username"], "uma", "{user}");
    let token = user["token"].as_str().unwrap();
    let (status, me) = api.call(Method::GET, "/v1/whoami", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "uma");
    assert_eq!(me["groups"], json!(["users"]));

    let ((status, auth), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(token),
            Some(client_key()),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    assert_eq!(events, ["session_authorized"]);
    assert_eq!(auth["worker_id"], worker.as_str(), "{auth}");
    assert_eq!(auth["worker_addr"], "127.0.0.1:9401", "{auth}");
    assert_eq!(auth["endpoint"], "127.0.0.1:7", "{auth}");
    assert!(
        !auth["grant"].as_str().unwrap_or_default().is_empty(),
        "{auth}"
    );
    let session = auth["session_id"].as_str().unwrap();

    let (status, list) = api
        .call(Method::GET, "/v1/sessions", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], session, "{list}");
    assert_eq!(items[0]["username"], "uma", "{list}");
    assert_eq!(items[0]["state"], "pending", "{list}");

    let ((status, ended), events) = api
        .audited(api.call(
            Method::POST,
            &format!("/v1/sessions/{session}/cancel"),
            Some(token),
            Some(json!({})),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["state"], "terminated", "{ended}");
    assert_eq!(events, ["session_terminated"]);

    let ((status, body), events) = api
        .audited(api.call(Method::POST, "/v1/auth/logout", Some(token), None))
        .await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(events, ["logged_out"]);
    let (status, _) = api.call(Method::GET, "/v1/whoami", Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refusals_are_403_with_their_reason_and_are_audited() {
    let api = Api::start().await;
    let admin = api.login("ada", &["admins"]).await;
    let user = api.login("uma", &["users"]).await;
    api.live_worker().await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "lab", "address": "192.0.2.10:22", "zone": "LAB", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The matrix: no cell from LOCAL to LAB, whoever asks.
    for token in [&admin, &user] {
        let ((status, body), events) = api
            .audited(api.call(
                Method::POST,
                "/v1/targets/lab/authorize-session",
                Some(token),
                Some(client_key()),
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(error_code(&body), "forbidden", "{body}");
        assert_eq!(
            message(&body),
            "session denied: the matrix has no cell LOCAL -> LAB: denied by default",
            "{body}"
        );
        assert_eq!(events, ["session_denied"]);
    }

    // A permission the user's roles lack: refused, naming it, with `permission_denied`.
    let ((status, body), events) = api
        .audited(api.create_target(
            &user,
            json!({"name": "mine", "address": "127.0.0.1:8", "zone": "LOCAL", "service": "echo"}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`targets:admin`"), "{body}");
    assert_eq!(events, ["permission_denied"]);
    let (_, list) = api
        .call(Method::GET, "/v1/targets", Some(&admin), None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn bad_json_bodies_are_4xx_that_say_what_is_wrong_and_change_nothing() {
    let api = Api::start().await;
    let admin = api.login("ada", &["admins"]).await;
    // Each is a 400 whose message names what is wrong.
    let cases = [
        ("{", "EOF"),
        ("[]", "expected struct CreateTarget"),
        (r#"{"address": "127.0.0.1:7"}"#, "missing field `name`"),
        (
            r#"{"name": "web", "address": "127.0.0.1:7", "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (r#"{"name": 7, "address": "127.0.0.1:7"}"#, "invalid type"),
    ];
    for (text, says) in cases {
        let ((status, body), events) = api
            .audited(api.send(Method::POST, "/v1/targets", Some(&admin), Some(text)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}: {body}");
        assert_eq!(error_code(&body), "invalid_request", "{text}: {body}");
        assert!(message(&body).contains(says), "{text}: {body}");
        assert_eq!(events, Vec::<String>::new(), "{text}");
    }
    // Not JSON at all: the content type is named.
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/targets")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("name=web"))
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(PEER)));
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A field the handler checks itself is named.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(&admin),
            Some(json!({"client_public_key": "not base64 DER"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "client_public_key", "{body}");
    let (_, list) = api
        .call(Method::GET, "/v1/targets", Some(&admin), None)
        .await;
    assert_eq!(list["items"], json!([]), "{list}");
}
