//! The SSH gateway's side in the controller, on a controller started on an in-memory store:
//! a gateway-mode authorisation, then what its worker asks over the link (host certificate,
//! credential; forwards and refused channels in `gateway_forward_tests`), each with what it
//! commits and audits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use portcullis_proto::gateway::CredentialRequest;
use portcullis_proto::grant::GrantKey;
use portcullis_proto::link::{Request, Response};
use serde_json::{json, Value};

use super::tests::{client_key, Api};
use crate::keys::Purpose;
use crate::store::audit::{self as audit_rows, Filter};
use crate::store::sessions as session_rows;

/// LOCAL (clients, worker, targets) and LAB may be reached through the broker; FAR has no
/// cell. Role `gw` runs SSH through the gateway with `ssh -L` allowed, role `cert` in
/// certificate mode.
pub(super) const POLICY: &str = r#"
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
pub(super) fn ssh_key(comment: &str) -> String {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let mut public = key.public_key().clone();
    public.set_comment(comment);
    public.to_openssh().unwrap()
}

/// A controller with the gateway policy, a live worker and the target `web`.
pub(super) async fn start() -> (Api, String) {
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
pub(super) async fn authorize(api: &Api, token: &str, key: &str) -> Value {
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
pub(super) async fn events_of(api: &Api, kind: &str) -> Vec<Value> {
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

pub(super) async fn link(api: &Api, worker: &str, request: Request) -> Response {
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
