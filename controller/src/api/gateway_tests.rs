//! The SSH gateway's side in the controller, on a controller started on an in-memory store:
//! a gateway-mode authorisation, then what its worker asks over the link (host certificate,
//! credential, forwards, refused channels), each with what it commits and audits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use portcullis_proto::gateway::{ChannelRefusal, CredentialRequest, VetForward};
use portcullis_proto::grant::GrantKey;
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind, EndReason, Request, Response};
use serde_json::{json, Value};

use super::tests::{client_key, Api};
use crate::keys::Purpose;
use crate::store::audit::{self as audit_rows, Filter};
use crate::store::sessions::{self as session_rows, SessionState};

/// LOCAL (clients, worker, targets) and LAB may be reached through the broker; FAR has no
/// cell. Role `gw` runs SSH through the gateway with `ssh -L` allowed, role `cert` in
/// certificate mode.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "LAB"
cidrs = ["192.0.2.0/24"]

[[zone]]
name = "FAR"
cidrs = ["198.51.100.0/24"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]

[[cell]]
from = "LOCAL"
to = "LAB"
access = "allow"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "audit:read"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "gw"
groups = ["gateway"]
ssh_mode = "gateway"
ssh = { forward_local = true }

[[role.grant]]
zones = ["LOCAL", "LAB"]
services = ["echo"]
logins = ["{{preferred_username}}"]

[[role]]
name = "cert"
groups = ["cert"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
logins = ["{{preferred_username}}"]
"#;

/// A fresh OpenSSH key pair's public half, with a comment.
fn ssh_key(comment: &str) -> String {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let mut public = key.public_key().clone();
    public.set_comment(comment);
    public.to_openssh().unwrap()
}

/// A controller with the gateway policy, a live worker and the target `web`.
async fn start() -> (Api, String) {
    let api = Api::start_with_policy(POLICY).await;
    let worker = api.live_worker().await;
    let admin = api.login("root", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:2222", "zone": "LOCAL", "service": "echo",
                   "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy9kvxOzR9cK82Y/ZGA67h2GTxNCKoOvISANSHgTAVI"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (api, worker)
}

/// authorize-session of `web` by `token` with the SSH key `key`.
async fn authorize(api: &Api, token: &str, key: &str) -> Value {
    let mut body = client_key();
    body["ssh_public_key"] = json!(key);
    let (status, auth) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    auth
}

async fn grant_keys(api: &Api) -> Vec<GrantKey> {
    api.state
        .keys
        .verification_keys(Purpose::Grant)
        .await
        .unwrap()
        .into_iter()
        .map(|k| GrantKey {
            kid: k.id,
            public_key: portcullis_proto::keys::b64(&k.public_key),
        })
        .collect()
}

/// The bodies of the audit events of `kind`, oldest first.
async fn events_of(api: &Api, kind: &str) -> Vec<Value> {
    let mut conn = api.state.store.conn().await.unwrap();
    let filter = Filter {
        kind: Some(kind.into()),
        ..Filter::default()
    };
    let mut bodies: Vec<Value> = audit_rows::list(&mut conn, &filter, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect();
    bodies.reverse();
    bodies
}

async fn link(api: &Api, worker: &str, request: Request) -> Response {
    crate::link::handler::handle(&api.state, worker, "127.0.0.1:9401", request).await
}

async fn gateway_ca(api: &Api) -> ssh_key::PublicKey {
    let (status, _) = api
        .call(Method::GET, "/v1/ssh/gateway-ca", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let line = super::super::gateway::host_ca_line(&api.state.keys)
        .await
        .unwrap();
    ssh_key::PublicKey::from_openssh(&line).unwrap()
}

#[tokio::test]
async fn a_gateway_session_binds_the_users_key_in_its_grant_and_certifies_nothing_for_the_user() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let key = ssh_key("alice@laptop");
    let ((), events) = api
        .audited(async {
            let auth = authorize(&api, &alice, &key).await;
            assert_eq!(auth["ssh_mode"], "gateway", "{auth}");
            assert!(auth["ssh_certificate"].is_null(), "{auth}");
            assert_eq!(auth["ssh_principals"], json!(["alice"]));
            let served = gateway_ca(&api).await.to_openssh().unwrap();
            assert_eq!(auth["gateway_host_ca"], served.as_str(), "{auth}");
            let claims = portcullis_proto::grant::verify(
                auth["grant"].as_str().unwrap(),
                &grant_keys(&api).await,
                &worker,
                api.state.clock.unix_secs(),
            )
            .unwrap();
            let gw = claims.gw.expect("gateway claims");
            assert!(
                key.starts_with(&gw.key) && !gw.key.contains("alice@laptop"),
                "{}",
                gw.key
            );
            assert_eq!(gw.logins, ["alice"]);
            assert!(gw.rights.forward_local && gw.rights.shell && !gw.rights.agent);
            let mut conn = api.state.store.conn().await.unwrap();
            let session = session_rows::get(&mut conn, &claims.sid)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(session.ssh_mode, portcullis_policy::SshMode::Gateway);
        })
        .await;
    assert_eq!(events, ["session_authorized"]);
    let authorized = events_of(&api, "session_authorized").await;
    assert_eq!(authorized[0]["details"]["ssh_mode"], "gateway");
    assert!(authorized[0]["details"]["ssh_certificate"].is_null());

    // The same target in certificate mode: the user's key is certified, no host CA is sent.
    let carol = api.login("carol", &["cert"]).await;
    let auth = authorize(&api, &carol, &ssh_key("carol")).await;
    assert!(auth.get("ssh_mode").is_none(), "{auth}");
    assert!(auth["gateway_host_ca"].is_null(), "{auth}");
    assert!(auth["ssh_certificate"].as_str().is_some(), "{auth}");
    let authorized = events_of(&api, "session_authorized").await;
    assert_eq!(authorized[1]["details"]["ssh_mode"], "certificate");
}

#[tokio::test]
async fn a_gateways_host_certificate_is_signed_by_the_host_ca_for_the_gateway_name_only() {
    let (api, worker) = start().await;
    let host = ssh_key("");
    let ((answer, before), events) = api
        .audited(async {
            let before = api.state.clock.unix_secs();
            let request = Request::GatewayHostCertificate {
                public_key: host.clone(),
            };
            (link(&api, &worker, request).await, before)
        })
        .await;
    assert!(
        events.is_empty(),
        "nothing stored, nothing audited: {events:?}"
    );
    let Response::SshCertificate {
        certificate,
        valid_before,
    } = answer
    else {
        panic!("not a certificate: {answer:?}");
    };
    let cert = ssh_key::Certificate::from_openssh(&certificate).unwrap();
    assert_eq!(cert.cert_type(), ssh_key::certificate::CertType::Host);
    assert_eq!(
        cert.valid_principals(),
        [portcullis_proto::gateway::HOST_ALIAS]
    );
    assert_eq!(cert.key_id(), format!("worker:{worker}"));
    assert_eq!(cert.valid_before(), valid_before);
    assert!((before + 24 * 3600..=before + 24 * 3600 + 5).contains(&valid_before));
    let ca = gateway_ca(&api).await;
    assert_eq!(cert.signature_key(), ca.key_data());
    // The user CA is another key: it never signs host certificates.
    let user_ca = api.state.keys.active(Purpose::SshCa).await.unwrap();
    let user_ca = crate::ssh::ca_public_openssh(&user_ca.public_key).unwrap();
    assert_ne!(
        cert.signature_key(),
        ssh_key::PublicKey::from_openssh(&user_ca)
            .unwrap()
            .key_data()
    );

    let refused = link(
        &api,
        &worker,
        Request::GatewayHostCertificate {
            public_key: "not a key".into(),
        },
    )
    .await;
    assert!(
        matches!(&refused, Response::Refused { reason } if reason.contains("not an OpenSSH public key")),
        "{refused:?}"
    );

    // A rotated host CA signs from then on, and is the one served.
    api.state.keys.rotate(Purpose::SshHostCa).await.unwrap();
    let rotated = gateway_ca(&api).await;
    assert_ne!(rotated.key_data(), ca.key_data());
    let Response::SshCertificate { certificate, .. } = link(
        &api,
        &worker,
        Request::GatewayHostCertificate { public_key: host },
    )
    .await
    else {
        panic!("no certificate after the rotation");
    };
    let cert = ssh_key::Certificate::from_openssh(&certificate).unwrap();
    assert_eq!(cert.signature_key(), rotated.key_data());
}

#[tokio::test]
async fn a_gateway_credential_is_minted_for_the_workers_key_recorded_and_revoked_with_the_session()
{
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let grant = auth["grant"].as_str().unwrap().to_owned();
    let session_id = auth["session_id"].as_str().unwrap().to_owned();
    let worker_key = ssh_key("");
    let request = |grant: &str| {
        Request::GatewayCredential(CredentialRequest {
            grant: grant.to_owned(),
            public_key: worker_key.clone(),
        })
    };

    let (answer, events) = api.audited(link(&api, &worker, request(&grant))).await;
    assert_eq!(events, ["gateway_credential_issued"]);
    let Response::GatewayCredential(credential) = answer else {
        panic!("no credential: {answer:?}");
    };
    assert_eq!(credential.target_name, "web");
    assert_eq!(credential.host_keys.len(), 1);
    assert!(credential.host_cas.is_empty());
    assert_eq!(
        credential.valid_before,
        auth["expires_at"].as_u64().unwrap()
    );
    let cert = ssh_key::Certificate::from_openssh(&credential.certificate).unwrap();
    assert_eq!(cert.cert_type(), ssh_key::certificate::CertType::User);
    assert_eq!(cert.key_id(), session_id);
    assert_eq!(cert.valid_principals(), ["alice"]);
    assert_eq!(
        cert.public_key(),
        ssh_key::PublicKey::from_openssh(&worker_key)
            .unwrap()
            .key_data()
    );
    let user_ca = api.state.keys.active(Purpose::SshCa).await.unwrap();
    let user_ca = crate::ssh::ca_public_openssh(&user_ca.public_key).unwrap();
    assert_eq!(
        cert.signature_key(),
        ssh_key::PublicKey::from_openssh(&user_ca)
            .unwrap()
            .key_data()
    );
    let issued = events_of(&api, "gateway_credential_issued").await;
    assert_eq!(issued[0]["session"], session_id.as_str());
    assert_eq!(
        issued[0]["details"]["ssh_certificate"]["serial"],
        cert.serial().to_string()
    );
    assert!(!issued[0].to_string().contains("BEGIN"), "no key material");

    // Another worker, a certificate-mode grant: refused, nothing committed.
    let (answer, events) = api.audited(link(&api, "w_other", request(&grant))).await;
    assert!(
        matches!(&answer, Response::Refused { reason } if reason.contains("grant does not verify")),
        "{answer:?}"
    );
    assert!(events.is_empty());
    let carol = api.login("carol", &["cert"]).await;
    let plain = authorize(&api, &carol, &ssh_key("carol")).await;
    let answer = link(&api, &worker, request(plain["grant"].as_str().unwrap())).await;
    assert!(
        matches!(&answer, Response::Refused { reason } if reason.contains("not in gateway mode")),
        "{answer:?}"
    );

    // The session's end puts the gateway's certificate into the KRL, and no new one is made.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session_id}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended = events_of(&api, "session_terminated").await;
    assert_eq!(
        ended[0]["details"]["ssh_certificates_revoked"],
        json!([cert.serial().to_string()])
    );
    let answer = link(&api, &worker, request(&grant)).await;
    assert!(
        matches!(&answer, Response::Refused { reason } if reason.contains("has ended")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_vetted_forward_is_a_session_of_the_user_that_ends_with_the_gateway_session() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let parent = auth["session_id"].as_str().unwrap().to_owned();
    let vet = |host: &str, port: u16| {
        Request::VetForward(VetForward {
            session_id: parent.clone(),
            connection_id: "c_user".into(),
            host: host.into(),
            port,
        })
    };

    let (answer, events) = api
        .audited(link(&api, &worker, vet("192.0.2.10", 8080)))
        .await;
    assert_eq!(events, ["session_authorized"]);
    let Response::ForwardVetted(vetted) = answer else {
        panic!("not vetted: {answer:?}");
    };
    assert_eq!(vetted.endpoint, "192.0.2.10:8080");
    assert!(vetted.expires_at <= auth["expires_at"].as_u64().unwrap());
    let child = {
        let mut conn = api.state.store.conn().await.unwrap();
        session_rows::get(&mut conn, &vetted.session_id)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(child.parent_session_id.as_deref(), Some(parent.as_str()));
    assert_eq!(child.state, SessionState::Active);
    assert_eq!(
        (child.worker_id.as_str(), child.endpoint.as_str()),
        (worker.as_str(), "192.0.2.10:8080")
    );
    let authorized = events_of(&api, "session_authorized").await;
    let last = authorized.last().unwrap();
    assert_eq!(last["session"], vetted.session_id.as_str());
    assert_eq!(last["details"]["parent_session"], parent.as_str());
    assert_eq!(last["details"]["destination"], "192.0.2.10:8080");
    assert_eq!(last["actor"]["user"], "alice");

    // The worker reports the forward's connection under the new session.
    let opened = ConnectionEvent {
        event_id: "c_fwd:opened".into(),
        session_id: vetted.session_id.clone(),
        connection_id: "c_fwd".into(),
        at: api.state.clock.unix_secs(),
        kind: ConnectionEventKind::Opened {
            client_addr: "127.0.0.1".into(),
            endpoint: vetted.endpoint.clone(),
        },
    };
    let closed = ConnectionEvent {
        event_id: "c_fwd:closed".into(),
        kind: ConnectionEventKind::Closed {
            bytes_up: 3,
            bytes_down: 4,
            reason: EndReason::Closed,
        },
        ..opened.clone()
    };
    let (answer, events) = api
        .audited(link(
            &api,
            &worker,
            Request::Events {
                events: vec![opened, closed],
            },
        ))
        .await;
    assert!(
        matches!(&answer, Response::EventsAck { event_ids } if event_ids.len() == 2),
        "{answer:?}"
    );
    assert_eq!(events, ["connection_opened", "connection_closed"]);

    // The matrix refuses FAR: refused naming the cell, and audited on the gateway session.
    let (answer, events) = api
        .audited(link(&api, &worker, vet("198.51.100.7", 5432)))
        .await;
    let Response::Refused { reason } = answer else {
        panic!("not refused: {answer:?}");
    };
    assert!(
        reason.contains("198.51.100.7:5432") && reason.contains("LOCAL -> FAR"),
        "{reason}"
    );
    assert_eq!(events, ["session_denied"]);
    let denied = events_of(&api, "session_denied").await;
    assert_eq!(denied[0]["session"], parent.as_str());
    assert_eq!(denied[0]["details"]["destination"], "198.51.100.7:5432");
    assert_eq!(denied[0]["details"]["target_zone"], "FAR");

    // The worker's own loopback, by name or address, is never vetted.
    for host in ["localhost", "127.0.0.1", "::1"] {
        let answer = link(&api, &worker, vet(host, 22)).await;
        assert!(
            matches!(&answer, Response::Refused { reason } if reason.contains("never dials")),
            "{host}: {answer:?}"
        );
    }
    // Only the gateway session's own worker may ask.
    let answer = link(&api, "w_other", vet("192.0.2.10", 8080)).await;
    assert!(matches!(answer, Response::Refused { .. }), "{answer:?}");

    // A second forward, still open when the gateway session ends: it ends with it.
    let Response::ForwardVetted(open) = link(&api, &worker, vet("192.0.2.11", 80)).await else {
        panic!("second forward not vetted");
    };
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{parent}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conn = api.state.store.conn().await.unwrap();
    let child = session_rows::get(&mut conn, &open.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.state, SessionState::Terminated);
    assert_eq!(child.termination_reason, Some(EndReason::Canceled));
    drop(conn);
    let ended: Vec<String> = events_of(&api, "session_terminated")
        .await
        .iter()
        .map(|e| e["session"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ended.contains(&parent) && ended.contains(&open.session_id),
        "{ended:?}"
    );
    let answer = link(&api, &worker, vet("192.0.2.10", 8080)).await;
    assert!(
        matches!(&answer, Response::Refused { reason } if reason.contains("has ended")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_refused_channel_is_audited_with_its_session_channel_destination_login_and_rule() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let session = auth["session_id"].as_str().unwrap().to_owned();
    let refused = ConnectionEvent {
        event_id: "c_1:refused:1".into(),
        session_id: session.clone(),
        connection_id: "c_1".into(),
        at: api.state.clock.unix_secs(),
        kind: ConnectionEventKind::ChannelRefused(ChannelRefusal {
            channel: "tcpip-forward".into(),
            destination: Some("0.0.0.0:8080".into()),
            login: "alice".into(),
            rule: portcullis_proto::gateway::rule_for_right("forward_remote"),
        }),
    };
    let (answer, events) = api
        .audited(link(
            &api,
            &worker,
            Request::Events {
                events: vec![refused.clone()],
            },
        ))
        .await;
    assert!(matches!(answer, Response::EventsAck { .. }), "{answer:?}");
    assert_eq!(events, ["ssh_channel_refused"]);
    let recorded = &events_of(&api, "ssh_channel_refused").await[0];
    assert_eq!(recorded["session"], session.as_str());
    assert_eq!(recorded["decision"], "deny");
    assert_eq!(
        recorded["reason"],
        "ssh.forward_remote is not granted to the session's roles"
    );
    assert_eq!(
        recorded["details"],
        json!({"connection_id": "c_1", "channel": "tcpip-forward",
               "destination": "0.0.0.0:8080", "login": "alice"})
    );
    // Reported by another worker than the session's: dropped, as its other events are.
    let (_, events) = api
        .audited(link(
            &api,
            "w_other",
            Request::Events {
                events: vec![refused],
            },
        ))
        .await;
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_policy_reload_checks_a_forward_by_its_address_and_ends_it_alone_when_refused() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let parent = auth["session_id"].as_str().unwrap().to_owned();
    let vet = Request::VetForward(VetForward {
        session_id: parent.clone(),
        connection_id: "c_user".into(),
        host: "192.0.2.10".into(),
        port: 8080,
    });
    let Response::ForwardVetted(vetted) = link(&api, &worker, vet).await else {
        panic!("not vetted");
    };
    let state_of = |id: String| {
        let api = &api;
        async move {
            let mut conn = api.state.store.conn().await.unwrap();
            session_rows::get(&mut conn, &id).await.unwrap().unwrap()
        }
    };
    let path = api.state.config.policy_file.clone().unwrap();

    // The same policy again: the forward (a destination, not a target) is still allowed.
    let outcome = crate::policy_file::reload(&api.state, crate::audit::Actor::system())
        .await
        .unwrap();
    assert_eq!(outcome.sessions_ended, 0);
    assert!(state_of(vetted.session_id.clone()).await.state.is_live());

    // The role no longer grants LAB: the forward ends, its gateway session stays.
    let narrower = POLICY.replace(r#"zones = ["LOCAL", "LAB"]"#, r#"zones = ["LOCAL"]"#);
    assert_ne!(narrower, POLICY);
    std::fs::write(&path, narrower).unwrap();
    let outcome = crate::policy_file::reload(&api.state, crate::audit::Actor::system())
        .await
        .unwrap();
    assert_eq!(outcome.sessions_ended, 1);
    let child = state_of(vetted.session_id.clone()).await;
    assert_eq!(child.termination_reason, Some(EndReason::PolicyChanged));
    assert!(state_of(parent).await.state.is_live());
}
