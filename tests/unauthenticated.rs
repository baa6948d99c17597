//! What a client with no credentials can do to a real controller process: hold the API's
//! connections (idle, trickling headers or a body, HTTP/2 prior knowledge), hammer its
//! connection caps, and make it write audit events (garbage, missing or malformed bearer
//! tokens, wrong join tokens). Every connection must close within the configured limits, a
//! legitimate request must get through while the caps are hammered, and failures must be
//! summed per address into one event per window.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{sigterm, wait_exit, Controller};
use common::wait::wait_for;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn url(c: &Controller) -> String {
    format!("sqlite://{}", c.dir.join("portcullis.db").display())
}

/// A controller whose config ends with `extra` (sections of its own, e.g. `[api.connections]`).
fn controller(dir: &Path, extra: &str) -> Controller {
    let db = format!("sqlite://{}", dir.join("portcullis.db").display());
    Controller::start_full(dir, &db, "", extra)
}

fn api_addr(c: &Controller) -> SocketAddr {
    c.api.trim_start_matches("https://").parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all local), so
/// one test can play several client addresses.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
        let stream = socket.connect(to).await.unwrap();
        let std = stream.into_std().unwrap();
        std.set_nonblocking(false).unwrap();
        std
    })
}

fn tls_over(tcp: TcpStream, ca: &Path, server_name: &str, alpn: &[u8]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !alpn.is_empty() {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

fn api_tls(c: &Controller) -> Tls {
    tls_over(
        TcpStream::connect(api_addr(c)).unwrap(),
        &c.ca,
        "127.0.0.1",
        b"",
    )
}

/// Sends one HTTP/1.1 request and reads its response: (status, body).
fn request(tls: &mut Tls, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).unwrap();
    tls.flush().unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).unwrap();
        assert_eq!(n, 1, "connection closed inside a response head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Whether the peer has closed: a read that ends (EOF, reset, TLS error) rather than waits.
fn is_closed(read: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>) -> Option<bool> {
    let mut buf = [0u8; 256];
    match read(&mut buf) {
        Ok(0) => Some(true),
        Ok(_) => None,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Some(false),
        Err(_) => Some(true),
    }
}

/// Writes `prefix`, then one `trickle` byte every 200 ms (none if empty), until the
/// controller closes the connection; returns how long that took, or panics past `limit`.
fn closes_while_trickling(
    tls: &mut Tls,
    prefix: &[u8],
    trickle: &[u8],
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    if !prefix.is_empty() && (tls.write_all(prefix).is_err() || tls.flush().is_err()) {
        return start.elapsed();
    }
    loop {
        if is_closed(&mut |b| tls.read(b)) == Some(true) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "connection still open after {limit:?}"
        );
        if !trickle.is_empty() && (tls.write_all(trickle).is_err() || tls.flush().is_err()) {
            return start.elapsed();
        }
    }
}

/// Whether a plain TCP connection is still open (its read waits rather than ends).
fn tcp_open(s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reader = s;
    is_closed(&mut |b| reader.read(b)) == Some(false)
}

#[test]
fn idle_and_trickling_connections_are_closed_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(
        dir.path(),
        "[api.connections]\nhandshake_timeout = 1\nheader_timeout = 1\nidle_timeout = 1\n\
         body_timeout = 1.5\n",
    );
    // Each limit plus what a loaded test machine may add.
    let slack = Duration::from_secs(2);
    let limit = |secs: f64| Duration::from_secs_f64(secs) + slack;
    let addr = api_addr(&c);

    std::thread::scope(|s| {
        // No bytes at all: the TLS handshake never starts.
        s.spawn(|| {
            let mut tcp = TcpStream::connect(addr).unwrap();
            let start = Instant::now();
            tcp.set_read_timeout(Some(limit(1.0))).unwrap();
            assert_eq!(
                is_closed(&mut |b| tcp.read(b)),
                Some(true),
                "silent TCP kept open"
            );
            assert!(start.elapsed() < limit(1.0));
        });
        // A finished handshake and no request.
        s.spawn(|| {
            let mut tls = api_tls(&c);
            closes_while_trickling(&mut tls, b"", b"", limit(1.0));
        });
        // A request head a byte at a time.
        s.spawn(|| {
            let mut tls = api_tls(&c);
            closes_while_trickling(
                &mut tls,
                b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                b"a",
                limit(1.0),
            );
        });
        // A body a byte at a time (the head is complete and the handler is waiting).
        s.spawn(|| {
            let mut tls = api_tls(&c);
            closes_while_trickling(
                &mut tls,
                b"POST /v1/auth/oidc/redeem HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
                b" ",
                limit(1.5),
            );
        });
        // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then nothing.
        s.spawn(|| {
            let mut tls = api_tls(&c);
            let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
            closes_while_trickling(&mut tls, &preface, b"", limit(1.0));
        });
        // Keep-alive: a request is answered, then the idle connection is closed.
        s.spawn(|| {
            let mut tls = api_tls(&c);
            let (status, _) = request(&mut tls, "GET", "/v1/health", &[]);
            assert_eq!(status, 200);
            closes_while_trickling(&mut tls, b"", b"", limit(1.0));
        });
    });

    // The controller still serves.
    let (code, body) = c.curl("GET", "/v1/whoami", None);
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_legitimate_request_succeeds_while_the_caps_are_hammered() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(
        dir.path(),
        "[api.connections]\nmax = 12\nmax_per_address = 4\nhandshake_timeout = 60\n\
         idle_timeout = 60\n",
    );
    let addr = api_addr(&c);

    // One address: its fifth connection is closed at once, its first four stay.
    let mine: Vec<TcpStream> = (0..4).map(|_| connect_from([127, 0, 0, 2], addr)).collect();
    let mut fifth = connect_from([127, 0, 0, 2], addr);
    fifth
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert_eq!(
        is_closed(&mut |b| fifth.read(b)),
        Some(true),
        "a fifth connection from one address was kept"
    );
    assert!(mine.iter().all(tcp_open), "the first four were closed");

    // Many addresses, far past the global cap, while a legitimate client keeps asking. Each
    // address keeps its newest six connections (more than its cap of four).
    let stop = AtomicBool::new(false);
    let opened = AtomicUsize::new(0);
    let held = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for last in 3..=10u8 {
            let (stop, opened, held) = (&stop, &opened, &held);
            s.spawn(move || {
                let mut mine = std::collections::VecDeque::new();
                while !stop.load(Ordering::Relaxed) {
                    mine.push_back(connect_from([127, 0, 0, last], addr));
                    if mine.len() > 6 {
                        mine.pop_front();
                    }
                    opened.fetch_add(1, Ordering::Relaxed);
                    // Pacing of the hammer (50 connections a second per address), not a wait.
                    std::thread::sleep(Duration::from_millis(20));
                }
                held.lock().unwrap().extend(mine);
            });
        }
        // Let the hammer fill the table first.
        wait_for(
            "the hammer to open 60 connections",
            Duration::from_secs(20),
            || opened.load(Ordering::Relaxed) >= 60,
        );
        for _ in 0..5 {
            let start = Instant::now();
            let (code, body) = c.curl("GET", "/v1/whoami", None);
            assert_eq!(
                code, 200,
                "a legitimate request failed under the hammer: {body}"
            );
            assert!(start.elapsed() < Duration::from_secs(5));
        }
        stop.store(true, Ordering::Relaxed);
    });

    // However many were opened, the controller holds no more than its cap.
    let held = held.into_inner().unwrap();
    let open =
        held.iter().filter(|s| tcp_open(s)).count() + mine.iter().filter(|s| tcp_open(s)).count();
    assert!(
        open <= 12,
        "{open} of {} connections still open, over the cap of 12",
        held.len() + 4
    );
    assert!(opened.load(Ordering::Relaxed) >= 60);
}

/// `portcullis audit list --type KIND --json`, oldest first.
fn events_of(c: &Controller, kind: &str) -> Vec<Value> {
    let out = c
        .cli()
        .args(["audit", "list", "--type", kind, "--limit", "1000", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.reverse();
    v
}

fn total(events: &[Value]) -> u64 {
    events
        .iter()
        .map(|e| e["details"]["count"].as_u64().unwrap_or(1))
        .sum()
}

fn reason_count(events: &[Value], reason: &str) -> u64 {
    events
        .iter()
        .filter_map(|e| e["details"]["reasons"][reason].as_u64())
        .sum()
}

#[test]
fn unauthenticated_failures_are_summed_per_address_into_one_event_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(dir.path(), "[audit]\ndenial_window = 1\n");
    let mut tls = api_tls(&c);
    let sent = [
        ("Authorization: Bearer garbage-token", 40),
        ("X-No-Authorization: 1", 5),
        ("Authorization: Basic YWRtaW46YWRtaW4=", 5),
        ("Authorization: Bearer", 5),
    ];
    for (header, n) in sent {
        for _ in 0..n {
            let (status, body) = request(&mut tls, "GET", "/v1/whoami", &[header]);
            assert_eq!(status, 401, "{header}: {body}");
        }
    }
    let mut events = Vec::new();
    wait_for(
        "55 refusals in the audit log",
        Duration::from_secs(15),
        || {
            events = events_of(&c, "token_rejected");
            total(&events) >= 55
        },
    );
    assert_eq!(total(&events), 55, "{events:#?}");
    // Four kinds of refusal within a second or two: one event per window, not 55.
    assert!(events.len() <= 3, "{} events for 55 refusals", events.len());
    for e in &events {
        assert_eq!(e["actor"]["source"], "127.0.0.1");
        assert_eq!(e["decision"], "deny");
        assert!(e["details"]["first_at"].is_string() && e["details"]["last_at"].is_string());
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    assert_eq!(
        reason_count(&events, "unknown, expired or revoked token"),
        40
    );
    assert_eq!(reason_count(&events, "no Authorization header"), 5);
    assert_eq!(
        reason_count(&events, "Authorization is not a bearer token"),
        5
    );
    assert_eq!(reason_count(&events, "empty bearer token"), 5);
    // The chain still verifies.
    let out = c.cli().args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn failures_still_in_their_window_are_written_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = controller(dir.path(), "[audit]\ndenial_window = 600\n");
    let mut tls = api_tls(&c);
    for _ in 0..3 {
        let (status, _) = request(&mut tls, "GET", "/v1/whoami", &["Authorization: Bearer x"]);
        assert_eq!(status, 401);
    }
    drop(tls);
    sigterm(&c.child);
    wait_exit(&mut c.child, Duration::from_secs(20));
    let db = url(&c);
    drop(c);
    let c = Controller::start_full(dir.path(), &db, "", "[audit]\ndenial_window = 600\n");
    let events = events_of(&c, "token_rejected");
    assert_eq!(total(&events), 3, "{events:#?}");
}

/// One `join` on the cluster link without a client certificate, as an enrolling worker (or
/// anyone) sends it; returns the controller's answer.
fn join(c: &Controller, token: &str, name: &str) -> Value {
    let tcp = TcpStream::connect(&c.cluster).unwrap();
    let mut tls = tls_over(
        tcp,
        &c.ca,
        "portcullis-controller",
        portcullis_proto::link::ALPN,
    );
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let public_key =
        portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key));
    let frame = serde_json::json!({
        "frame": "request",
        "id": 1,
        "body": {"type": "join", "token": token, "name": name, "public_key": public_key,
                 "proxy_addr": "127.0.0.1:1"},
    });
    let bytes = serde_json::to_vec(&frame).unwrap();
    tls.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
    tls.write_all(&bytes).unwrap();
    tls.flush().unwrap();
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut body).unwrap();
    serde_json::from_slice::<Value>(&body).unwrap()["body"].clone()
}

#[test]
fn join_attempts_are_rate_limited_per_address_and_audited_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = controller(
        dir.path(),
        "join_rate_limit_per_minute = 3\n[audit]\ndenial_window = 1\n",
    );
    let good = c.join_token();
    // Same CA hash, wrong secret.
    let wrong = format!("{}x", &good[..good.len() - 1]);
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(join(&c, &wrong, "web-1"));
    }
    for a in &answers[..3] {
        assert_eq!(a["type"], "error");
        assert!(
            a["message"]
                .as_str()
                .unwrap()
                .contains("unknown, already used"),
            "{a}"
        );
    }
    for a in &answers[3..] {
        assert!(
            a["message"]
                .as_str()
                .unwrap()
                .contains("too many join attempts"),
            "{a}"
        );
    }
    // Rate limited before anything else: even the right token gets no certificate now.
    let a = join(&c, &good, "web-1");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("too many join attempts"),
        "{a}"
    );
    let (code, body) = c.curl("GET", "/v1/workers", None);
    assert_eq!(code, 200);
    assert!(!body.contains("web-1"), "{body}");

    let mut events = Vec::new();
    wait_for(
        "6 failed joins in the audit log",
        Duration::from_secs(15),
        || {
            events = events_of(&c, "worker_join_failed");
            total(&events) >= 6
        },
    );
    assert_eq!(total(&events), 6, "{events:#?}");
    assert!(events.len() <= 3, "{} events for 6 attempts", events.len());
    assert_eq!(
        reason_count(&events, "unknown, used or expired join token"),
        3
    );
    assert_eq!(reason_count(&events, "rate limited"), 3);
    for e in &events {
        // The peer is the actor; the claimed name is only a labelled detail.
        assert_eq!(e["actor"]["source"], "127.0.0.1", "{e}");
        assert!(e["actor"]["user"].is_null(), "{e}");
        assert_eq!(e["details"]["attempted_name"], "web-1", "{e}");
    }
}

#[test]
fn when_descriptors_run_out_the_listener_backs_off_logs_once_and_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    // A first start writes the config, the CA and the admin's token; then the same controller
    // runs again under a descriptor limit far below its connection cap.
    let mut c = controller(dir.path(), "");
    sigterm(&c.child);
    wait_exit(&mut c.child, Duration::from_secs(20));
    let log = dir.path().join("stderr.log");
    let mut child = KillOnDrop(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 48 && exec \"$0\" controller run --config \"$1\"")
            .arg(common::dev::bin())
            .arg(&c.config)
            .env("PORTCULLIS_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    let ready: Value = serde_json::from_str(&ready).unwrap();
    c.api = format!("https://{}", ready["api"].as_str().unwrap());
    let addr = api_addr(&c);

    // Far more connections than descriptors, from addresses under their own cap.
    let mut held = Vec::new();
    for i in 0..90u8 {
        held.push(connect_from([127, 0, 0, 2 + i % 3], addr));
    }
    let start = Instant::now();
    for _ in 0..3 {
        let (code, body) = c.curl("GET", "/v1/whoami", None);
        assert_eq!(
            code, 200,
            "a legitimate request failed out of descriptors: {body}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    wait_for("an accept-failure line", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("API accept failed"))
    });
    // Keep the pressure through an observation window (not a wait for a condition: a listener
    // that spins would log many lines in it), then count the log lines.
    for i in 0..30u8 {
        held.push(connect_from([127, 0, 0, 2 + i % 3], addr));
    }
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.matches("API accept failed").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} accept-failure lines (one per 10 s expected):\n{text}"
    );
}

/// A child process stopped when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
