//! Per-session Proxmox API tokens on a controller started on an in-memory store, against a
//! small fake Proxmox over HTTPS that keeps tokens and ACL entries as Proxmox does: the
//! target's `proxmox_cluster`, the mint at authorize-session (intent first, `expire`,
//! `privsep=1`, the ACL grants), the worker's credential over the link, `pve_request`, and
//! the deletion at the end, across an outage and after an abandoned intent. The fake of the
//! integration tests (tests/common/) serves whole clusters; this one only what these ask.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use hyper::{Request, Response};
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind, Request as LinkRequest};
use portcullis_proto::pve::{ApiRequest, CredentialRequest};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use super::gateway_tests::{events_of, link};
use super::tests::{client_key, Api};
use crate::store::pve_tokens::{self as token_rows, TokenState};
use crate::store::sessions as session_rows;

const MGMT_TOKEN: &str = "portcullis-mgmt@pve!sessions=0d3a5c1e-8f9b-4c2d-a1e0-123456789abc";
const DISCOVERY_TOKEN: &str = "portcullis@pve!discovery=11111111-8f9b-4c2d-a1e0-123456789abc";

/// LOCAL holds the clients, the worker and the fake Proxmox. Role `tf` acts as `svc-tf` on
/// `/vms/100`; `ghost` as a user Proxmox does not have; `wide` on a path outside the
/// configured ones; `plain` names no identity.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[service]]
name = "proxmox-api"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["proxmox-api"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "audit:read"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "tf"
groups = ["tf"]
proxmox = { user = "svc-tf", roles = ["PVEVMUser"], paths = ["/vms/100"] }

[[role.grant]]
zones = ["LOCAL"]
services = ["proxmox-api"]

[[role]]
name = "ghost"
groups = ["ghost"]
proxmox = { user = "ghost", roles = ["PVEVMUser"], paths = ["/vms/100"] }

[[role.grant]]
zones = ["LOCAL"]
services = ["proxmox-api"]

[[role]]
name = "wide"
groups = ["wide"]
proxmox = { user = "svc-tf", roles = ["PVEAuditor"], paths = ["/storage/local"] }

[[role.grant]]
zones = ["LOCAL"]
services = ["proxmox-api"]

[[role]]
name = "plain"
groups = ["plain"]

[[role.grant]]
zones = ["LOCAL"]
services = ["proxmox-api"]
"#;

/// A token as the fake keeps it.
#[derive(Debug, Clone)]
struct FakeToken {
    secret: String,
    expire: String,
    privsep: String,
    comment: String,
}

#[derive(Default)]
struct Pve {
    tokens: Mutex<BTreeMap<String, FakeToken>>,
    /// (path, role, token id)
    acl: Mutex<Vec<(String, String, String)>>,
    /// Every answer is 503 (an outage behind a proxy).
    down: AtomicBool,
    made: std::sync::atomic::AtomicU64,
}

impl Pve {
    fn answer(
        &self,
        method: &hyper::Method,
        path: &str,
        form: &BTreeMap<String, String>,
    ) -> (u16, Value) {
        if self.down.load(Ordering::SeqCst) {
            return (503, json!({"data": null, "message": "proxy: no backend"}));
        }
        let segments: Vec<&str> = path.trim_start_matches("/api2/json/").split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["access", "users", user, "token", name]) => {
                if *user != "svc-tf@pve" {
                    return (
                        500,
                        json!({"data": null, "message": format!("no such user ('{user}')\n")}),
                    );
                }
                let id = format!("{user}!{name}");
                let mut tokens = self.tokens.lock().unwrap();
                if tokens.contains_key(&id) {
                    return (
                        400,
                        json!({"data": null, "message": "Token already exists.\n"}),
                    );
                }
                let n = self.made.fetch_add(1, Ordering::SeqCst);
                let secret = format!("5f0c6bd2-5b3e-4f1e-9c6a-{n:012}");
                tokens.insert(
                    id.clone(),
                    FakeToken {
                        secret: secret.clone(),
                        expire: form.get("expire").cloned().unwrap_or_default(),
                        privsep: form.get("privsep").cloned().unwrap_or_default(),
                        comment: form.get("comment").cloned().unwrap_or_default(),
                    },
                );
                (
                    200,
                    json!({"data": {"full-tokenid": id, "info": {}, "value": secret}}),
                )
            }
            ("DELETE", ["access", "users", user, "token", name]) => {
                let id = format!("{user}!{name}");
                let removed = self.tokens.lock().unwrap().remove(&id);
                match removed {
                    Some(_) => {
                        // As Proxmox: a deleted token's ACL entries are dropped with it.
                        self.acl.lock().unwrap().retain(|e| e.2 != id);
                        (200, json!({"data": null}))
                    }
                    None => (
                        500,
                        json!({"data": null, "message": format!("no such token '{name}' for user '{user}'\n")}),
                    ),
                }
            }
            ("PUT", ["access", "acl"]) => {
                let token = form.get("tokens").cloned().unwrap_or_default();
                if !self.tokens.lock().unwrap().contains_key(&token) {
                    // As Proxmox: an ACL change naming a token that does not exist is refused.
                    let message = format!("no such token '{token}'\n");
                    return (500, json!({"data": null, "message": message}));
                }
                let path = form.get("path").cloned().unwrap_or_default();
                let mut acl = self.acl.lock().unwrap();
                for role in form
                    .get("roles")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                {
                    let entry = (path.clone(), role.to_owned(), token.clone());
                    if form.get("delete").map(String::as_str) == Some("1") {
                        acl.retain(|e| *e != entry);
                    } else if !acl.contains(&entry) {
                        acl.push(entry);
                    }
                }
                (200, json!({"data": null}))
            }
            ("GET", ["access", "acl"]) => {
                let acl = self.acl.lock().unwrap();
                let list: Vec<Value> = acl
                    .iter()
                    .map(|(path, role, ugid)| json!({"path": path, "roleid": role, "type": "token", "ugid": ugid, "propagate": 1}))
                    .collect();
                (200, json!({"data": list}))
            }
            _ => (
                501,
                json!({"data": null, "message": "Method not implemented"}),
            ),
        }
    }
}

struct FakeProxmox {
    addr: SocketAddr,
    ca_pem: String,
    pve: Arc<Pve>,
    _task: tokio::task::JoinHandle<()>,
}

async fn fake_proxmox() -> FakeProxmox {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = portcullis_crypto::tls::https_server_config(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        b"http/1.1",
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pve = Arc::new(Pve::default());
    let state = pve.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let authorised = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                == Some(&format!("PVEAPIToken={MGMT_TOKEN}"));
                            let method = req.method().clone();
                            let path = req.uri().path().to_owned();
                            let bytes = axum::body::to_bytes(Body::new(req.into_body()), 1 << 20)
                                .await
                                .unwrap_or_default();
                            let form: BTreeMap<String, String> =
                                url::form_urlencoded::parse(&bytes).into_owned().collect();
                            let (status, body) = if authorised {
                                state.answer(&method, &path, &form)
                            } else {
                                (401, json!({"data": null}))
                            };
                            let mut response = Response::new(Body::from(body.to_string()));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    FakeProxmox {
        addr,
        ca_pem,
        pve,
        _task: task,
    }
}

fn private_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

struct Setup {
    api: Api,
    worker: String,
    fake: FakeProxmox,
    admin: String,
    _files: tempfile::TempDir,
}

async fn setup() -> Setup {
    let _ = portcullis_crypto::tls::install_process_default();
    let fake = fake_proxmox().await;
    let files = tempfile::tempdir().unwrap();
    let discovery = private_file(files.path(), "discovery.token", DISCOVERY_TOKEN);
    let mgmt = private_file(files.path(), "sessions.token", MGMT_TOKEN);
    let ca = private_file(files.path(), "pve-root-ca.pem", &fake.ca_pem);
    let extra = format!(
        "[[catalog.proxmox]]\nname = \"lab\"\nurls = [\"https://{}\"]\ntoken_file = \"{}\"\n\
         ca_file = \"{}\"\ninterval = \"1h\"\ntimeout = \"5s\"\n\
         [catalog.proxmox.sessions]\nrealm = \"pve\"\ntoken_file = \"{}\"\npaths = [\"/vms\"]\n\
         mint_timeout = \"10s\"\n",
        fake.addr,
        discovery.display(),
        ca.display(),
        mgmt.display()
    );
    let api = Api::start_with(POLICY, &extra, crate::clock::system()).await;
    let worker = api.live_worker().await;
    let admin = api.login("root", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "pve-1", "address": fake.addr.to_string(), "zone": "LOCAL",
                   "service": "proxmox-api", "proxmox_cluster": "lab"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["proxmox_cluster"], "lab", "{body}");
    Setup {
        api,
        worker,
        fake,
        admin,
        _files: files,
    }
}

async fn authorize(api: &Api, token: &str, lsh: Option<&str>) -> (StatusCode, Value) {
    let mut body = client_key();
    if let Some(lsh) = lsh {
        body["local_secret_sha256"] = json!(lsh);
    }
    api.call(
        Method::POST,
        "/v1/targets/pve-1/authorize-session",
        Some(token),
        Some(body),
    )
    .await
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // The poll interval between two looks at the condition, under the deadline above.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn token_state(api: &Api, session_id: &str) -> Option<TokenState> {
    let mut conn = api.state.store.conn().await.unwrap();
    token_rows::get(&mut conn, session_id)
        .await
        .unwrap()
        .map(|t| t.state)
}

/// Waits for the token of `session_id` to reach `state`, running the token job's rounds as
/// a running controller's job would (this controller serves no background jobs).
async fn wait_for_state(api: &Api, session_id: &str, state: TokenState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while token_state(api, session_id).await != Some(state) {
        crate::sessions::pve::job::run_once(&api.state)
            .await
            .unwrap();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the token of {session_id} to be {state:?}"
        );
        // The poll interval between two looks at the row, under the deadline above.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn all_event_text(api: &Api) -> String {
    let mut conn = api.state.store.conn().await.unwrap();
    crate::store::audit::list(&mut conn, &crate::store::audit::Filter::default(), 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.body)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_session_gets_a_token_the_worker_fetches_and_the_end_deletes_with_its_acls() {
    let s = setup().await;
    let (api, pve) = (&s.api, &s.fake.pve);
    let alice = api.login("alice", &["tf"]).await;
    let lsh = "ab".repeat(32);
    let ((status, auth), kinds) = api.audited(authorize(api, &alice, Some(&lsh))).await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    assert_eq!(kinds, ["session_authorized", "pve_token_minted"]);
    let sid = auth["session_id"].as_str().unwrap().to_owned();
    let token_id = format!("svc-tf@pve!{}", portcullis_proto::pve::token_name_for(&sid));
    assert_eq!(auth["proxmox"]["token_id"], token_id.as_str(), "{auth}");
    assert_eq!(auth["proxmox"]["cluster"], "lab");
    assert_eq!(auth["proxmox"]["paths"], json!(["/vms/100"]));
    // The token: expiring with the session, privilege-separated, named for the session.
    let made = pve.tokens.lock().unwrap().get(&token_id).cloned().unwrap();
    assert_eq!(made.expire, auth["expires_at"].to_string());
    assert_eq!(made.privsep, "1");
    assert!(
        made.comment.contains(&sid) && made.comment.contains("alice"),
        "{}",
        made.comment
    );
    assert_eq!(
        *pve.acl.lock().unwrap(),
        vec![(
            "/vms/100".to_owned(),
            "PVEVMUser".to_owned(),
            token_id.clone()
        )]
    );
    // The grant carries the token id and the local secret's hash; the client gets no secret.
    assert!(!auth.to_string().contains(&made.secret));
    let grant = auth["grant"].as_str().unwrap().to_owned();
    // The worker carrying the session gets the token; another worker does not.
    let answer = link(
        api,
        &s.worker,
        LinkRequest::PveCredential(CredentialRequest {
            grant: grant.clone(),
        }),
    )
    .await;
    let portcullis_proto::link::Response::PveCredential(credential) = answer else {
        panic!("no credential: {answer:?}");
    };
    assert_eq!(credential.token_id, token_id);
    assert_eq!(credential.secret, made.secret);
    assert_eq!(credential.server_name, "127.0.0.1");
    assert_eq!(credential.authority, s.fake.addr.to_string());
    assert_eq!(credential.ca_pem.as_deref(), Some(s.fake.ca_pem.as_str()));
    let other = link(
        api,
        "w_other",
        LinkRequest::PveCredential(CredentialRequest {
            grant: grant.clone(),
        }),
    )
    .await;
    assert!(
        matches!(other, portcullis_proto::link::Response::Error { .. }),
        "{other:?}"
    );
    // A request through the proxy is audited as pve_request, for the session.
    let request = ConnectionEvent {
        event_id: "c_1:req:1".into(),
        session_id: sid.clone(),
        connection_id: "c_1".into(),
        at: 1,
        kind: ConnectionEventKind::ApiRequest(ApiRequest {
            method: "POST".into(),
            path: "/api2/json/nodes/pve1/qemu?vmid=REDACTED".into(),
            status: 200,
            bytes_up: 10,
            bytes_down: 20,
            millis: 3,
            refused: None,
        }),
    };
    let (_, kinds) = api
        .audited(link(
            api,
            &s.worker,
            LinkRequest::Events {
                events: vec![request],
            },
        ))
        .await;
    assert_eq!(kinds, ["pve_request"]);
    let logged = events_of(api, "pve_request").await;
    assert_eq!(logged[0]["session"], sid.as_str(), "{}", logged[0]);
    // The end deletes the token and its ACL entries, within seconds.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{sid}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    wait_for_state(api, &sid, TokenState::Gone).await;
    assert!(pve.tokens.lock().unwrap().is_empty());
    assert!(pve.acl.lock().unwrap().is_empty());
    let revoked = events_of(api, "pve_token_revoked").await;
    assert_eq!(
        revoked[0]["details"]["token_id"],
        token_id.as_str(),
        "{}",
        revoked[0]
    );
    assert_eq!(revoked[0]["details"]["outcome"], "revoked");
    // The secret is wiped from the store, and never reached an event.
    let mut conn = api.state.store.conn().await.unwrap();
    assert!(token_rows::get(&mut conn, &sid)
        .await
        .unwrap()
        .unwrap()
        .secret
        .is_none());
    drop(conn);
    assert!(!all_event_text(api).await.contains(&made.secret));
    let after = link(
        api,
        &s.worker,
        LinkRequest::PveCredential(CredentialRequest { grant }),
    )
    .await;
    assert!(
        matches!(after, portcullis_proto::link::Response::Error { .. }),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_deletion_is_retried_across_an_outage() {
    let s = setup().await;
    let (api, pve) = (&s.api, &s.fake.pve);
    let alice = api.login("alice", &["tf"]).await;
    let (status, auth) = authorize(api, &alice, None).await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    let sid = auth["session_id"].as_str().unwrap().to_owned();
    pve.down.store(true, Ordering::SeqCst);
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{sid}/cancel"),
            Some(&s.admin),
            None,
        )
        .await;
    assert!(status.is_success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while events_of(api, "pve_token_revoke_failed").await.is_empty() {
        assert!(Instant::now() < deadline, "no pve_token_revoke_failed");
        // The poll interval between two looks at the audit, under the deadline above.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(token_state(api, &sid).await, Some(TokenState::Revoking));
    assert_eq!(pve.tokens.lock().unwrap().len(), 1);
    pve.down.store(false, Ordering::SeqCst);
    // The job's next rounds (backoff from 1 s) finish it once Proxmox is back.
    wait_for_state(api, &sid, TokenState::Gone).await;
    assert!(pve.tokens.lock().unwrap().is_empty() && pve.acl.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_abandoned_intent_ends_its_session_and_deletes_the_token_by_its_derived_id() {
    let s = setup().await;
    let (api, pve) = (&s.api, &s.fake.pve);
    // A controller that died after Proxmox made the token, before it recorded it: the
    // session is `minting`, its intent older than mint_timeout, the token and ACL exist.
    let alice = api.login("alice", &["tf"]).await;
    let (status, auth) = authorize(api, &alice, None).await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    let template = auth["session_id"].as_str().unwrap().to_owned();
    let mut conn = api.state.store.conn().await.unwrap();
    let mut session = session_rows::get(&mut conn, &template)
        .await
        .unwrap()
        .unwrap();
    let mut intent = token_rows::get(&mut conn, &template)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let sid = "s_crashed1";
    session.id = sid.into();
    session.state = session_rows::SessionState::Minting;
    intent.session_id = sid.into();
    intent.token_name = portcullis_proto::pve::token_name_for(sid);
    intent.state = TokenState::Intent;
    intent.secret = None;
    intent.created_at -= 60;
    let token_id = intent.token_id();
    {
        let mut tx = api.state.begin_audited().await.unwrap();
        session_rows::insert(tx.write(), &session, None, &Default::default())
            .await
            .unwrap();
        token_rows::insert_intent(tx.write(), &intent)
            .await
            .unwrap();
        tx.commit(crate::audit::AuditEvent::new(
            crate::audit::Actor::system(),
            crate::audit::Event::SessionActivated,
        ))
        .await
        .unwrap();
    }
    pve.tokens.lock().unwrap().insert(
        token_id.clone(),
        FakeToken {
            secret: "lost".into(),
            expire: "0".into(),
            privsep: "1".into(),
            comment: String::new(),
        },
    );
    pve.acl
        .lock()
        .unwrap()
        .push(("/vms/100".into(), "PVEVMUser".into(), token_id.clone()));
    wait_for_state(api, sid, TokenState::Gone).await;
    let mut conn = api.state.store.conn().await.unwrap();
    let ended = session_rows::get(&mut conn, sid).await.unwrap().unwrap();
    assert_eq!(ended.state, session_rows::SessionState::Terminated);
    assert_eq!(
        ended.termination_reason.map(|r| r.to_string()).as_deref(),
        Some("credential_mint_abandoned")
    );
    wait_for("the token and its ACL gone", || {
        !pve.tokens.lock().unwrap().contains_key(&token_id)
            && !pve.acl.lock().unwrap().iter().any(|e| e.2 == token_id)
    })
    .await;
}

#[tokio::test]
async fn a_refused_mint_ends_the_session_and_says_what_proxmox_answered() {
    let s = setup().await;
    let api = &s.api;
    let ghost = api.login("ghost", &["ghost"]).await;
    let ((status, body), kinds) = api.audited(authorize(api, &ghost, None)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"], "pve_token_mint_failed", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no such user"),
        "{body}"
    );
    assert_eq!(
        kinds,
        [
            "session_authorized",
            "pve_token_mint_failed",
            "session_terminated"
        ]
    );
    let failed = events_of(api, "pve_token_mint_failed").await;
    let sid = failed[0]["session"].as_str().unwrap().to_owned();
    wait_for_state(api, &sid, TokenState::Gone).await;
}

#[tokio::test]
async fn no_identity_a_path_outside_the_configured_ones_or_a_bad_cluster_is_refused() {
    let s = setup().await;
    let api = &s.api;
    let plain = api.login("bob", &["plain"]).await;
    let ((status, body), kinds) = api.audited(authorize(api, &plain, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no role names a Proxmox identity"),
        "{body}"
    );
    assert_eq!(kinds, ["session_denied"]);
    let wide = api.login("carol", &["wide"]).await;
    let (status, body) = authorize(api, &wide, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("/storage/local"),
        "{body}"
    );
    assert!(s.fake.pve.tokens.lock().unwrap().is_empty());
    // A bad local secret hash, and a target naming a cluster without a sessions table.
    let alice = api.login("alice", &["tf"]).await;
    let (status, body) = authorize(api, &alice, Some("not-hex")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "local_secret_sha256", "{body}");
    let (status, body) = api
        .create_target(
            &s.admin,
            json!({"name": "pve-2", "address": "127.0.0.1:8006", "zone": "LOCAL",
                   "service": "proxmox-api", "proxmox_cluster": "elsewhere"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "proxmox_cluster", "{body}");
    let (status, body) = api
        .call(
            Method::PATCH,
            "/v1/targets/pve-1",
            Some(&s.admin),
            Some(json!({"proxmox_cluster": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("proxmox_cluster").is_none_or(Value::is_null),
        "{body}"
    );
}
