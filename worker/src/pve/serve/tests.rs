//! The proxy end to end inside the process: a client on an in-memory stream, the worker's
//! HTTP server and its credential fetch over a fake link, and a fake Proxmox API over real
//! HTTPS on loopback (its own CA, a certificate for `pve1.test` and 127.0.0.1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use portcullis_proto::link::{
    ConnectionEventKind, EndReason, Request as LinkRequest, Response as LinkResponse,
};
use portcullis_proto::pve::{ApiRequest, Credential, PveClaims};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::{serve, Connection, Served};
use crate::Shared;

const SID: &str = "s_pve";
const TOK: &str = "pc-alice@pve!pc-spve";
const TOKEN_SECRET: &str = "5f0c6bd2-5b3e-4f1e-9c6a-00000000beef";
const INJECTED: &str = "PVEAPIToken=pc-alice@pve!pc-spve=5f0c6bd2-5b3e-4f1e-9c6a-00000000beef";
const LOCAL: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

/// A request the fake Proxmox received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

/// A fake Proxmox API over HTTPS: it records what it receives and counts its connections.
struct FakePve {
    addr: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
    cert_sha256: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl FakePve {
    async fn start() -> FakePve {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["pve1.test".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_sha256 = portcullis_crypto::digest::sha256_hex(cert.der());
        let config = portcullis_crypto::tls::https_server_config(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            b"http/1.1",
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        let kept = acceptor.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                connections2.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let seen = seen.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(request, &seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakePve {
            addr,
            acceptor: kept,
            ca_pem: ca.pem(),
            cert_sha256,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The credential the controller would hand over, trusting the CA.
    fn credential(&self) -> Credential {
        Credential {
            token_id: TOK.into(),
            secret: TOKEN_SECRET.into(),
            expires_at: 0,
            server_name: "pve1.test".into(),
            authority: format!("pve1.test:{}", self.addr.port()),
            ca_pem: Some(self.ca_pem.clone()),
            fingerprint: None,
        }
    }
}

type AnswerBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// `.../chunked`: a body in three chunks of unknown length; anything else: a small JSON.
async fn answer(
    request: Request<hyper::body::Incoming>,
    seen: &Mutex<Vec<Seen>>,
) -> http::Response<AnswerBody> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = head.uri.path().to_owned();
    seen.lock().unwrap().push(Seen {
        method: head.method,
        headers: head.headers,
        body,
    });
    if path.ends_with("/chunked") {
        let frames = ["first,", "second,", "third"]
            .map(|s| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(s))));
        let stream = futures_util::stream::iter(frames);
        return http::Response::new(BodyExt::boxed(StreamBody::new(stream)));
    }
    let json = format!(r#"{{"data":{{"path":"{path}"}}}}"#);
    http::Response::new(BodyExt::boxed(Full::new(Bytes::from(json))))
}

use http_body_util::BodyExt;

/// A worker with session [`SID`] admitted and a link whose controller hands over
/// `credential` (or refuses with `Err`), counting the asks.
struct Harness {
    shared: Arc<Shared>,
    asks: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::for_tests(dir.path());
        let exp = shared.clock.unix_secs() + 3600;
        shared.table.admit(SID, 0, exp);
        Harness {
            shared,
            asks: Arc::default(),
            _dir: dir,
        }
    }

    fn link(&self, credential: Result<Credential, &'static str>) -> impl Sized + '_ {
        let asks = self.asks.clone();
        self.shared.link.fake_link(move |request| {
            assert!(
                matches!(request, LinkRequest::PveCredential(_)),
                "{request:?}"
            );
            asks.fetch_add(1, Ordering::SeqCst);
            match &credential {
                Ok(c) => LinkResponse::PveCredential(c.clone()),
                Err(message) => LinkResponse::error(*message),
            }
        })
    }

    /// A connection of the session to `endpoint`, served in a task: the client's end.
    fn connect(
        &self,
        claims: &PveClaims,
        endpoint: SocketAddr,
        n: u32,
    ) -> (DuplexStream, tokio::task::JoinHandle<Served>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let connection = Connection {
            session_id: SID.into(),
            connection_id: format!("c_{n}"),
            grant: "the-grant".into(),
            claims: claims.clone(),
            endpoint,
        };
        let shared = self.shared.clone();
        let served = tokio::spawn(async move { serve(&shared, server, None, connection).await });
        (client, served)
    }

    /// The API request events spooled so far.
    fn requests(&self) -> Vec<(String, ApiRequest)> {
        self.shared
            .spool
            .pending(1000)
            .into_iter()
            .filter_map(|e| match e.kind {
                ConnectionEventKind::ApiRequest(r) => Some((e.event_id, r)),
                _ => None,
            })
            .collect()
    }

    async fn wait_for_requests(&self, n: usize) -> Vec<(String, ApiRequest)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let requests = self.requests();
            if requests.len() >= n || tokio::time::Instant::now() > deadline {
                return requests;
            }
            // The poll interval between two looks at the request log, under the deadline above.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn claims() -> PveClaims {
    PveClaims {
        tok: TOK.into(),
        lsh: None,
        aw: false,
    }
}

type Client = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn open_client(stream: DuplexStream) -> Client {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends a request and reads its answer whole: status, headers, body.
async fn send(
    client: &mut Client,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    client.ready().await.unwrap();
    let response = tokio::time::timeout(WAIT, client.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (head.status, head.headers, body)
}

/// Writes raw bytes and reads until the proxy closes the connection.
async fn raw(mut stream: DuplexStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .expect("the proxy did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_session_token_replaces_what_the_client_sent_and_each_request_is_recorded() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (stream, _) = h.connect(&claims(), pve.addr, 1);
    let mut client = open_client(stream).await;
    let (status, _, body) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"data":{"path":"/api2/json/version"}}"#);
    let bogus = [
        (
            "Authorization",
            "PVEAPIToken=root@pam!mine=11111111-2222-3333-4444-555555555555",
        ),
        ("Cookie", "PVEAuthCookie=PVE:root@pam::sig"),
        ("CSRFPreventionToken", "abc:def"),
        ("Proxy-Authorization", "Basic eDp5"),
        ("X-Portcullis-Session-Secret", "whatever"),
    ];
    let (status, _, _) = send(
        &mut client,
        "POST",
        "/api2/json/nodes/pve1/qemu?vmid=100&name=secret-name",
        &bogus,
        b"vmid=100",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = pve.seen();
    assert_eq!(seen.len(), 2);
    let authority = format!("pve1.test:{}", pve.addr.port());
    for request in &seen {
        let auth: Vec<_> = request.headers.get_all("authorization").iter().collect();
        assert_eq!(auth, [INJECTED]);
        assert_eq!(request.headers["host"], authority.as_str());
        for stripped in [
            "cookie",
            "csrfpreventiontoken",
            "proxy-authorization",
            "x-portcullis-session-secret",
        ] {
            assert!(
                !request.headers.contains_key(stripped),
                "{stripped} forwarded"
            );
        }
    }
    assert_eq!(seen[1].method, Method::POST);
    assert_eq!(seen[1].body, "vmid=100");
    assert_eq!(seen[1].headers["content-length"], "8");
    // One credential fetch for the session.
    assert_eq!(h.asks.load(Ordering::SeqCst), 1);
    let requests = h.wait_for_requests(2).await;
    assert_eq!(requests[0].0, "c_1:req:1");
    assert_eq!(requests[1].0, "c_1:req:2");
    let post = &requests[1].1;
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.path,
        "/api2/json/nodes/pve1/qemu?vmid=<redacted>&name=<redacted>"
    );
    assert_eq!(
        (post.status, post.bytes_up, post.refused.as_deref()),
        (200, 8, None)
    );
    assert_eq!(
        post.bytes_down,
        r#"{"data":{"path":"/api2/json/nodes/pve1/qemu"}}"#.len() as u64
    );
    // No secret in any event.
    let events = serde_json::to_string(&h.shared.spool.pending(1000)).unwrap();
    assert!(
        !events.contains(TOKEN_SECRET) && !events.contains("secret-name"),
        "{events}"
    );
}

#[tokio::test]
async fn access_writes_are_refused_unless_the_grant_allows_them() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (stream, _) = h.connect(&claims(), pve.addr, 1);
    let mut client = open_client(stream).await;
    let target = "/api2/json/access/users/bob@pve/token/mine";
    let (status, headers, body) = send(&mut client, "POST", target, &[], b"privsep=0").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["connection"], "close");
    assert!(
        String::from_utf8_lossy(&body).contains("/api2/json/access/"),
        "{body:?}"
    );
    assert!(pve.seen().is_empty(), "the refused write went upstream");
    let requests = h.wait_for_requests(1).await;
    assert_eq!(requests[0].1.refused.as_deref(), Some("access_write"));
    assert_eq!(requests[0].1.status, 403);

    // Reads under /access/ go through; with the policy's leave, writes too.
    let (stream, _) = h.connect(&claims(), pve.addr, 2);
    let mut client = open_client(stream).await;
    let (status, _, _) = send(&mut client, "GET", "/api2/json/access/acl", &[], b"").await;
    assert_eq!(status, StatusCode::OK);
    let allowed = PveClaims {
        aw: true,
        ..claims()
    };
    let (stream, _) = h.connect(&allowed, pve.addr, 3);
    let mut client = open_client(stream).await;
    let (status, _, _) = send(&mut client, "POST", target, &[], b"privsep=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pve.seen().len(), 2);
}

#[tokio::test]
async fn smuggling_shaped_requests_are_refused_and_never_go_upstream() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let shapes: [(&str, &str); 5] = [
        ("POST /api2/json/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        ("POST /api2/json/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", "400"),
        ("GET http://evil.example/api2/json/nodes HTTP/1.1\r\nHost: evil.example\r\n\r\n", "400"),
        ("GET /api2/json/nodes HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "400"),
        ("GET /api2/json/../../pve2/js/x HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
    ];
    for (n, (request, status)) in shapes.iter().enumerate() {
        let (stream, _) = h.connect(&claims(), pve.addr, n as u32);
        let answer = raw(stream, request.as_bytes()).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} -> {answer}"
        );
    }
    assert!(pve.seen().is_empty(), "{:?}", pve.seen());
    let refused: Vec<_> = h
        .wait_for_requests(3)
        .await
        .into_iter()
        .filter_map(|(_, r)| r.refused)
        .collect();
    for code in ["target_form", "upgrade", "ambiguous_path"] {
        assert!(
            refused.iter().any(|r| r == code),
            "{code} not in {refused:?}"
        );
    }
}

#[tokio::test]
async fn bodies_up_to_512_kib_go_through_and_larger_ones_get_413_chunked_or_not() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (stream, _) = h.connect(&claims(), pve.addr, 1);
    let mut client = open_client(stream).await;
    let full = vec![b'a'; 512 * 1024];
    let (status, _, _) = send(
        &mut client,
        "POST",
        "/api2/json/nodes/pve1/storage/upload",
        &[],
        &full,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pve.seen()[0].body.len(), 512 * 1024);

    let over = vec![b'a'; 512 * 1024 + 1];
    let (status, _, _) = send(
        &mut client,
        "POST",
        "/api2/json/nodes/pve1/storage/upload",
        &[],
        &over,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked: the length is known only as it arrives.
    let (stream, _) = h.connect(&claims(), pve.addr, 2);
    let mut head =
        b"POST /api2/json/nodes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..9 {
        head.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        head.extend(std::iter::repeat_n(b'b', 64 * 1024));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(stream, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A small chunked body goes upstream with its length.
    let (stream, _) = h.connect(&claims(), pve.addr, 3);
    let small = b"POST /api2/json/nodes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let answer = raw(stream, small).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = pve.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.body, "hello");
    assert_eq!(last.headers["content-length"], "5");
    assert!(!last.headers.contains_key("transfer-encoding"));
    assert_eq!(seen.len(), 2, "an oversized body went upstream");
}

#[tokio::test]
async fn task_polling_reuses_one_upstream_connection_and_chunked_answers_stream_back() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (stream, _) = h.connect(&claims(), pve.addr, 1);
    let mut client = open_client(stream).await;
    let status =
        "/api2/json/nodes/pve1/tasks/UPID%3Apve1%3A0000%3Aqmcreate%3A100%3Aroot%40pam%3A/status";
    for _ in 0..50 {
        let (code, _, _) = send(&mut client, "GET", status, &[], b"").await;
        assert_eq!(code, StatusCode::OK);
    }
    let (code, headers, body) =
        send(&mut client, "GET", "/api2/json/nodes/chunked", &[], b"").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, "first,second,third");
    assert_eq!(headers["transfer-encoding"], "chunked");
    assert_eq!(pve.seen().len(), 51);
    assert_eq!(
        pve.connections.load(Ordering::SeqCst),
        1,
        "keep-alive upstream"
    );
    // A second client connection of the session shares the pool and the credential.
    let (stream, _) = h.connect(&claims(), pve.addr, 2);
    let mut client = open_client(stream).await;
    send(&mut client, "GET", "/api2/json/version", &[], b"").await;
    assert_eq!(pve.connections.load(Ordering::SeqCst), 1);
    assert_eq!(h.asks.load(Ordering::SeqCst), 1);
    let requests = h.wait_for_requests(52).await;
    assert_eq!(requests.len(), 52);
    let chunked = requests.iter().find(|(id, _)| id == "c_1:req:51").unwrap();
    assert_eq!(chunked.1.bytes_down, "first,second,third".len() as u64);
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_proxy() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (mut stream, _) = h.connect(&claims(), pve.addr, 1);
    stream
        .write_all(b"PUT /api2/json/nodes/pve1/qemu/100/config HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 25];
    tokio::time::timeout(WAIT, stream.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    let answer = raw(stream, b"cores=2").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = pve.seen();
    assert_eq!(seen[0].body, "cores=2");
    assert!(!seen[0].headers.contains_key("expect"));
}

#[tokio::test]
async fn a_wrong_ca_or_fingerprint_is_refused_with_502_and_the_right_pin_works() {
    let pve = FakePve::start().await;
    let other = FakePve::start().await;
    for (n, credential) in [
        Credential {
            ca_pem: Some(other.ca_pem.clone()),
            ..pve.credential()
        },
        Credential {
            ca_pem: None,
            fingerprint: Some(other.cert_sha256.clone()),
            ..pve.credential()
        },
        // The CA is right but the certificate does not name this server.
        Credential {
            server_name: "pve2.test".into(),
            ..pve.credential()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let h = Harness::new();
        let _link = h.link(Ok(credential));
        let (stream, _) = h.connect(&claims(), pve.addr, n as u32);
        let mut client = open_client(stream).await;
        let (status, _, body) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("TLS handshake"), "{body}");
    }
    assert!(pve.seen().is_empty());
    // The pinned certificate, and the CA with the IP as the server name (an IP SAN).
    for credential in [
        Credential {
            ca_pem: None,
            fingerprint: Some(pve.cert_sha256.clone()),
            ..pve.credential()
        },
        Credential {
            server_name: "127.0.0.1".into(),
            ..pve.credential()
        },
    ] {
        let h = Harness::new();
        let _link = h.link(Ok(credential));
        let (stream, _) = h.connect(&claims(), pve.addr, 9);
        let mut client = open_client(stream).await;
        let (status, _, _) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_local_secret_is_required_when_the_grant_names_one() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let lsh = portcullis_crypto::digest::sha256_hex(LOCAL.as_bytes());
    let claims = PveClaims {
        lsh: Some(lsh),
        ..claims()
    };
    let (stream, _) = h.connect(&claims, pve.addr, 1);
    let mut client = open_client(stream).await;
    let bogus = ("Authorization", "PVEAPIToken=portcullis@local!session=nope");
    let (status, _, _) = send(&mut client, "GET", "/api2/json/version", &[bogus], b"").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A stranger costs no credential fetch.
    assert_eq!(h.asks.load(Ordering::SeqCst), 0);
    let local_token = format!("PVEAPIToken=portcullis@local!session={LOCAL}");
    for header in [
        ("Authorization", local_token.as_str()),
        ("X-Portcullis-Session-Secret", LOCAL),
    ] {
        let (stream, _) = h.connect(&claims, pve.addr, 2);
        let mut client = open_client(stream).await;
        let (status, _, _) = send(&mut client, "GET", "/api2/json/version", &[header], b"").await;
        assert_eq!(status, StatusCode::OK);
    }
    for seen in pve.seen() {
        assert_eq!(seen.headers["authorization"], INJECTED);
        assert!(!seen.headers.contains_key("x-portcullis-session-secret"));
    }
    let requests = h.wait_for_requests(3).await;
    assert_eq!(requests[0].1.refused.as_deref(), Some("local_secret"));
}

#[tokio::test]
async fn a_controller_refusal_or_an_unreachable_proxmox_is_a_502_with_a_sentence() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Err("the session is not live"));
    let (stream, _) = h.connect(&claims(), pve.addr, 1);
    let mut client = open_client(stream).await;
    let (status, _, body) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        String::from_utf8_lossy(&body).contains("the session is not live"),
        "{body:?}"
    );
    let requests = h.wait_for_requests(1).await;
    assert_eq!(requests[0].1.status, 502);
    assert!(pve.seen().is_empty());

    // Nothing listens on the endpoint.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = closed.local_addr().unwrap();
    drop(closed);
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (stream, _) = h.connect(&claims(), endpoint, 1);
    let mut client = open_client(stream).await;
    let (status, _, body) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        String::from_utf8_lossy(&body).contains("cannot reach the Proxmox API"),
        "{body:?}"
    );
}

#[tokio::test]
async fn concurrent_connections_fetch_the_credential_once_and_the_session_end_drops_it() {
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let mut served = Vec::new();
    let mut asked = Vec::new();
    for n in 0..8 {
        let (stream, handle) = h.connect(&claims(), pve.addr, n);
        served.push(handle);
        asked.push(async move {
            let mut client = open_client(stream).await;
            let status = send(&mut client, "GET", "/api2/json/version", &[], b"")
                .await
                .0;
            (status, client)
        });
    }
    // The clients stay connected: the session's end closes their connections.
    let mut clients = Vec::new();
    for (status, client) in futures_util::future::join_all(asked).await {
        assert_eq!(status, StatusCode::OK);
        clients.push(client);
    }
    assert_eq!(h.asks.load(Ordering::SeqCst), 1);
    assert_eq!(h.shared.pve.len(), 1);
    h.shared.table.end(SID, EndReason::Canceled);
    for handle in served {
        let served = tokio::time::timeout(WAIT, handle).await.unwrap().unwrap();
        assert_eq!(served.why, EndReason::Canceled);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.shared.pve.len() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the credential outlived its session"
        );
        // The poll interval between two looks at the credential table, under the deadline above.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream whose first connection answers one request, then reads the next one and
/// closes without answering (a server closing an idle keep-alive connection as a request
/// arrives); later connections answer every request. Counts connections.
async fn closing_upstream(pve: &FakePve) -> (SocketAddr, Arc<AtomicUsize>) {
    // The same certificate as `pve`, raw HTTP behind it.
    let acceptor = pve.acceptor.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut served = 0;
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if tls.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if first && served == 1 {
                        return;
                    }
                    let body = r#"{"data":{}}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    served += 1;
                }
            });
        }
    });
    (addr, connections)
}

#[tokio::test]
async fn a_get_that_meets_a_closing_connection_is_sent_again_and_a_post_is_not() {
    let pve = FakePve::start().await;
    for (method, expected) in [("GET", StatusCode::OK), ("POST", StatusCode::BAD_GATEWAY)] {
        let (addr, connections) = closing_upstream(&pve).await;
        let h = Harness::new();
        let _link = h.link(Ok(pve.credential()));
        let (stream, _) = h.connect(&claims(), addr, 1);
        let mut client = open_client(stream).await;
        let (status, _, _) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = send(&mut client, method, "/api2/json/nodes", &[], b"").await;
        assert_eq!(status, expected, "{method}: {body:?}");
        let dialled = connections.load(Ordering::SeqCst);
        assert_eq!(dialled, if method == "GET" { 2 } else { 1 }, "{method}");
    }
}

/// A bench hook, not a test: small GETs through the proxy (client, HTTP server, vetting,
/// pooled HTTPS upstream) against the same GETs sent straight over the proxy's own HTTPS
/// client, one keep-alive connection each. Prints one JSON line. Run with
/// `cargo test -p portcullis-worker --release --lib bench_small_get -- --ignored --nocapture`
/// (`PVE_BENCH_REQUESTS`, default 2000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: run it by name with --ignored"]
async fn bench_small_get_through_the_proxy_and_straight() {
    let n: usize = std::env::var("PVE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let pve = FakePve::start().await;
    let h = Harness::new();
    let _link = h.link(Ok(pve.credential()));
    let (stream, _) = h.connect(&claims(), pve.addr, 1);
    let mut client = open_client(stream).await;
    let mut through = Vec::with_capacity(n);
    let started = std::time::Instant::now();
    for _ in 0..n {
        let at = std::time::Instant::now();
        let (status, _, _) = send(&mut client, "GET", "/api2/json/version", &[], b"").await;
        assert_eq!(status, StatusCode::OK);
        through.push(at.elapsed());
    }
    let through_total = started.elapsed();

    let connector = Arc::new(
        super::super::upstream::Connector::new(&pve.credential(), pve.addr, None).unwrap(),
    );
    let mut straight = Vec::with_capacity(n);
    let started = std::time::Instant::now();
    for _ in 0..n {
        let at = std::time::Instant::now();
        let make = || {
            Request::get("/api2/json/version")
                .header("host", "pve1.test")
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let (response, checkout) = connector.send(make, &mut None).await.unwrap();
        response.into_body().collect().await.unwrap();
        checkout.give_back();
        straight.push(at.elapsed());
    }
    let straight_total = started.elapsed();
    let p99 = |mut v: Vec<Duration>| {
        v.sort();
        v[(v.len() * 99 / 100).min(v.len() - 1)].as_micros()
    };
    println!(
        "{}",
        serde_json::json!({
            "requests": n,
            "proxy_rps": (n as f64 / through_total.as_secs_f64()).round(),
            "proxy_p99_us": p99(through),
            "straight_rps": (n as f64 / straight_total.as_secs_f64()).round(),
            "straight_p99_us": p99(straight),
        })
    );
}
