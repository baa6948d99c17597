//! The client against a small HTTPS server in the test (tokio-rustls + hyper, certificates
//! from rcgen): trust by CA and by fingerprint, a wrong pin, the token header, refusals in
//! words, a reason-phrase-only error, failover. The fake Proxmox of the integration tests
//! (tests/common/) serves whole clusters; this one serves only what these tests ask.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use hyper::{Request, Response};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;
use crate::catalog::config::TokenSource;

const TOKEN: &str = "portcullis@pve!discovery=0d3a5c1e-8f9b-4c2d-a1e0-123456789abc";
const NODES: &str = include_str!("../../../../../tests/fixtures/proxmox/nodes.json");

struct Server {
    addr: SocketAddr,
    /// The `Authorization` header of every request, and its path.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    ca_pem: String,
    cert_der: Vec<u8>,
    _task: tokio::task::JoinHandle<()>,
}

/// (status, reason phrase, body) by path and query.
fn route(path: &str) -> (u16, Option<&'static str>, String) {
    match path {
        "/api2/json/nodes" => (200, None, NODES.to_owned()),
        "/api2/json/cluster/resources?type=vm" => (
            200,
            None,
            r#"{"data":[{"type":"qemu","vmid":100,"name":"vm100","node":"node1","status":"running","template":0}]}"#.into(),
        ),
        "/api2/json/nodes/node1/qemu/100/config" => (200, None, r#"{"data":{"agent":"1"}}"#.into()),
        // An older server: the words only in the reason phrase.
        "/api2/json/nodes/node1/qemu/100/agent/network-get-interfaces" => (
            500,
            Some("QEMU guest agent is not running"),
            r#"{"data":null}"#.into(),
        ),
        "/api2/json/legacy" => (
            500,
            Some("VM 999 does not exist"),
            r#"{"data":null}"#.into(),
        ),
        "/api2/json/forbidden" => (
            403,
            Some("Permission check failed (/vms/100, VM.Audit)"),
            r#"{"data":null}"#.into(),
        ),
        "/api2/json/garbage" => (200, None, "<html>".into()),
        _ => (
            501,
            Some("Method not implemented"),
            r#"{"data":null}"#.into(),
        ),
    }
}

/// An HTTPS server whose certificate (issued by its own CA) names `names`.
async fn server(names: &[&str]) -> Server {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_der = cert.der().to_vec();
    let config = portcullis_crypto::tls::https_server_config(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        b"http/1.1",
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let path = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default();
                            log.lock().unwrap().push((auth.clone(), path.clone()));
                            let (status, reason, body) = if req.method() != hyper::Method::GET {
                                (405, None, String::new())
                            } else if auth != format!("PVEAPIToken={TOKEN}") {
                                (
                                    401,
                                    Some("authentication failure"),
                                    r#"{"data":null}"#.to_owned(),
                                )
                            } else {
                                route(&path)
                            };
                            let mut response = Response::new(Body::from(body));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if let Some(reason) = reason {
                                response.extensions_mut().insert(
                                    hyper::ext::ReasonPhrase::try_from(reason.as_bytes()).unwrap(),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        seen,
        ca_pem,
        cert_der,
        _task: task,
    }
}

fn cluster(urls: &[String], trust: ServerTrust) -> ProxmoxCluster {
    ProxmoxCluster {
        name: "lab".into(),
        urls: urls.iter().map(|u| url::Url::parse(u).unwrap()).collect(),
        token: TokenSource::File("/unused".into()),
        trust,
        interval: Duration::from_secs(300),
        timeout: Duration::from_secs(5),
        node_targets: true,
        guest_agent: true,
        sdn: true,
        name_suffix: String::new(),
        service_tag_prefix: String::new(),
        default_services: BTreeMap::new(),
        sessions: None,
    }
}

fn token() -> SecretString {
    SecretString::from(TOKEN.to_owned())
}

fn ca_trust(server: &Server) -> (tempfile::TempDir, ServerTrust) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pve-root-ca.pem");
    std::fs::write(&path, &server.ca_pem).unwrap();
    (dir, ServerTrust::CaFile(path))
}

fn pin(server: &Server) -> ServerTrust {
    ServerTrust::Fingerprint(portcullis_crypto::digest::sha256(&server.cert_der))
}

/// A URL nothing listens on (a port just released).
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("https://{addr}")
}

#[tokio::test]
async fn the_cluster_ca_is_the_only_root_and_every_request_carries_the_token() {
    let server = server(&["127.0.0.1", "pve1.lab"]).await;
    let (_dir, trust) = ca_trust(&server);
    let client = Client::new(
        &cluster(&[format!("https://{}", server.addr)], trust),
        token(),
    )
    .unwrap();
    assert!(!format!("{client:?}").contains("0d3a5c1e"));
    let (api, data) = client.first("nodes").await.unwrap();
    assert_eq!(data.as_array().map(Vec::len), Some(4));
    assert_eq!(api.url().as_str(), format!("https://{}/", server.addr));
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            format!("PVEAPIToken={TOKEN}"),
            "/api2/json/nodes".to_owned()
        )]
    );

    // A certificate of the same CA that does not name the address dialled is refused.
    let other = server_named_elsewhere().await;
    let (_dir, trust) = ca_trust(&other);
    let client = Client::new(
        &cluster(&[format!("https://{}", other.addr)], trust),
        token(),
    )
    .unwrap();
    let err = client.first("nodes").await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(
        other.seen.lock().unwrap().is_empty(),
        "no request before a trusted handshake"
    );
}

async fn server_named_elsewhere() -> Server {
    server(&["pve9.elsewhere"]).await
}

#[tokio::test]
async fn a_pinned_fingerprint_is_enough_whatever_the_name_and_a_wrong_one_is_refused() {
    // Proxmox's own node certificate names the node, not the address the controller dials.
    let server = server(&["pve1.lab"]).await;
    let url = format!("https://{}", server.addr);
    let client = Client::new(&cluster(std::slice::from_ref(&url), pin(&server)), token()).unwrap();
    client.first("nodes").await.unwrap();

    let wrong = ServerTrust::Fingerprint([0x80; 32]);
    let client = Client::new(&cluster(&[url], wrong), token()).unwrap();
    let err = client.first("nodes").await.unwrap_err();
    assert!(matches!(err, ProxmoxError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("not the pinned"), "{err}");
    assert_eq!(
        server.seen.lock().unwrap().len(),
        1,
        "the wrong pin sent nothing"
    );
}

#[tokio::test]
async fn refusals_and_reason_phrase_only_errors_are_in_words() {
    let server = server(&["127.0.0.1"]).await;
    let url = format!("https://{}", server.addr);
    let client = Client::new(&cluster(std::slice::from_ref(&url), pin(&server)), token()).unwrap();
    let (api, _) = client.first("nodes").await.unwrap();
    let err = super::super::discover::Api::get(&api, "legacy")
        .await
        .unwrap_err();
    let ProxmoxError::Api {
        status, message, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((*status, message.as_str()), (500, "VM 999 does not exist"));
    let err = super::super::discover::Api::get(&api, "forbidden")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("VM.Audit") && err.to_string().contains("lacks a privilege"),
        "{err}"
    );
    let err = super::super::discover::Api::get(&api, "garbage")
        .await
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::BadAnswer { .. }), "{err}");
    let err = super::super::discover::Api::get(&api, "nosuch")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HTTP 501") && err.to_string().contains("Method not implemented"),
        "{err}"
    );

    // Another token: 401, in words, and never the secret.
    let other = "portcullis@pve!discovery=ffffffff-0000-0000-0000-000000000000";
    let client = Client::new(
        &cluster(&[url], pin(&server)),
        SecretString::from(other.to_owned()),
    )
    .unwrap();
    let err = client.first("nodes").await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ProxmoxError::Api { status: 401, .. }),
        "{text}"
    );
    assert!(
        text.contains("token was refused") && text.contains("authentication failure"),
        "{text}"
    );
    assert!(!text.contains("ffffffff"), "{text}");
}

#[tokio::test]
async fn an_unreachable_url_moves_on_and_an_answer_is_authoritative() {
    let server = server(&["127.0.0.1"]).await;
    let good = format!("https://{}", server.addr);
    let closed = closed_url().await;
    let mut c = cluster(&[closed.clone(), good.clone()], pin(&server));
    let client = Client::new(&c, token()).unwrap();
    let d = super::super::discover(&c, &client).await.unwrap();
    assert_eq!(d.url, format!("{good}/"));
    assert_eq!(d.nodes.len(), 4);
    assert_eq!(d.guests.len(), 1);
    assert!(d.guests[0].addresses.is_empty());
    // The agent's failure, said only in the reason phrase, is a note naming the guest.
    assert!(
        d.notes
            .iter()
            .any(|n| n.starts_with("qemu 100") && n.contains("guest agent is not running")),
        "{:?}",
        d.notes
    );
    // The rest of the sync used the URL that answered.
    let paths: Vec<String> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, p)| p.clone())
        .collect();
    assert!(
        paths.contains(&"/api2/json/cluster/resources?type=vm".to_owned()),
        "{paths:?}"
    );

    // A 401 from the first URL is the cluster's answer: the second is not tried.
    let first = server.seen.lock().unwrap().len();
    c.urls.reverse();
    let bad = Client::new(&c, SecretString::from("a@pve!b=c".to_owned())).unwrap();
    let err = bad.first("nodes").await.unwrap_err();
    assert!(
        matches!(err, ProxmoxError::Api { status: 401, .. }),
        "{err}"
    );
    assert_eq!(server.seen.lock().unwrap().len(), first + 1);

    // None answers: each URL and why.
    let other_closed = closed_url().await;
    let c = cluster(&[closed.clone(), other_closed.clone()], pin(&server));
    let err = Client::new(&c, token())
        .unwrap()
        .first("nodes")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProxmoxError::Unreachable(_)), "{text}");
    assert!(
        text.contains(&closed) && text.contains(&other_closed) && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn a_malformed_token_or_an_unusable_ca_file_is_refused_at_setup() {
    let c = cluster(
        &["https://127.0.0.1:1".into()],
        ServerTrust::Fingerprint([0; 32]),
    );
    let err = Client::new(&c, SecretString::from("just-a-secret".to_owned())).unwrap_err();
    assert!(
        matches!(err, ProxmoxError::Token(_)) && !err.to_string().contains("just-a-secret"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("ca.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let c = cluster(&["https://127.0.0.1:1".into()], ServerTrust::CaFile(empty));
    let err = Client::new(&c, token()).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
    let c = cluster(
        &["https://127.0.0.1:1".into()],
        ServerTrust::CaFile(dir.path().join("missing.pem")),
    );
    assert!(matches!(
        Client::new(&c, token()),
        Err(ProxmoxError::Setup(_))
    ));
}

/// The sync runs discovery on a spawned task: its future must be `Send`.
#[test]
fn discovery_can_run_on_a_spawned_task() {
    fn send<T: Send>(_: &T) {}
    let c = cluster(
        &["https://127.0.0.1:1".into()],
        ServerTrust::Fingerprint([0; 32]),
    );
    let client = Client::new(&c, token()).unwrap();
    let future = super::super::discover(&c, &client);
    send(&future);
    let source = TokenSource::File("/nonexistent".into());
    send(&super::super::load_token(&source, None));
}
