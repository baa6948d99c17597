//! The outbound-only control plane under attack: a worker that poses as the controller to
//! another worker, strangers on `cluster_listen`, several controllers dialling one worker,
//! and connections that never finish their handshake on either of the worker's listeners or
//! on the controller's cluster listener.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::client::{closes_within, listen, open_echo, refused};
use common::cluster::{echo, Controller, Worker};
use common::raw::{present, Auth, ClientKey};
use common::wait::{poll, wait_for};
use portcullis_proto::grant::{self, GrantClaims, GrantKey, GRANT_ISSUER};
use portcullis_proto::link::{self, Frame, Request, Response};
use portcullis_proto::proxy::{RefusalCode, WorkerReply};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("portcullis.db").display())
}

/// A controller that dials the workers at `links`.
fn dialling_controller(dir: &Path, url: &str, links: &[&str]) -> Controller {
    let list = links
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Controller::start_full(dir, url, &format!("dial_workers = [{list}]"), "")
}

/// An outbound-only worker listening for controllers on `link`.
fn dialled_worker(dir: &Path, link: &str, token: &str, extra: &str) -> Worker {
    let config = format!("cluster_listen = \"{link}\"\n{extra}");
    Worker::start(dir, &[], Some(token), &config).unwrap()
}

fn create_echo_target(c: &Controller) {
    let body =
        serde_json::json!({"name": "echo", "address": echo(), "zone": "LOCAL", "service": "echo"})
            .to_string();
    let (code, text) = c.curl("POST", "/v1/targets", Some(&body));
    assert_eq!(code, 201, "{text}");
}

/// Accepts any server certificate: the tests play a client that does not care who the
/// worker is.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        portcullis_crypto::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Dials a worker's `cluster_listen` as a controller would, with the identity (certificate
/// and key) of the worker whose state is in `state`.
fn dial_link_as_worker(link_addr: &str, state: &Path) -> Tls {
    let _ = portcullis_crypto::tls::install_process_default();
    let cert = CertificateDer::from_pem_file(state.join("worker.crt")).unwrap();
    let ca = CertificateDer::from_pem_file(state.join("ca.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(state.join("worker.key")).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
            .with_client_auth_cert(vec![cert, ca], key)
            .unwrap();
    config.alpn_protocols = vec![link::ALPN.to_vec()];
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("portcullis-worker").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(link_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn read_frame(tls: &mut Tls) -> std::io::Result<Frame> {
    let mut len = [0u8; 4];
    tls.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut body)?;
    link::decode(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn write_frame(tls: &mut Tls, frame: &Frame) -> std::io::Result<()> {
    let body = link::encode(frame).unwrap();
    tls.write_all(&(body.len() as u32).to_be_bytes())?;
    tls.write_all(&body)?;
    tls.flush()
}

/// Plays the controller on a link the worker accepted: answers its hello and every later
/// request with what hands the worker `keys` and admits every session.
fn pose_as_controller(mut tls: Tls, keys: Vec<GrantKey>, stop: Arc<AtomicBool>) {
    let sync = || {
        Response::Sync(link::Sync {
            grant_keys: keys.clone(),
            ended: vec![],
            heartbeat_ms: 200,
            controller_id: "c_impostor".into(),
            tls_ca: None,
        })
    };
    while !stop.load(Ordering::SeqCst) {
        let Ok(Frame::Request { id, body }) = read_frame(&mut tls) else {
            return;
        };
        let answer = match body {
            Request::Hello(_) | Request::Heartbeat { .. } => sync(),
            Request::AdmitFirst(_) => Response::Admitted,
            Request::Events { events } => Response::EventsAck {
                event_ids: events.into_iter().map(|e| e.event_id).collect(),
            },
            _ => Response::Ok,
        };
        if write_frame(&mut tls, &Frame::Response { id, body: answer }).is_err() {
            return;
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_worker_certificate_cannot_pose_as_the_controller_to_another_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (link1, link2) = (free_addr(), free_addr());
    let c = dialling_controller(
        &dir.path().join("c"),
        &sqlite(&dir.path().join("c")),
        &[&link1, &link2],
    );
    let w1 = dialled_worker(&dir.path().join("w1"), &link1, &c.join_token(), "");
    let w2 = dialled_worker(&dir.path().join("w2"), &link2, &c.join_token(), "");
    assert_ne!(w1.id, w2.id);
    let echo_addr = echo();
    let (_, text) = c.curl("GET", &format!("/v1/workers/{}", w2.id), None);
    let w2_fingerprint = serde_json::from_str::<serde_json::Value>(&text).unwrap()
        ["key_fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // w1 is compromised: its attacker dials w2's cluster_listen with w1's certificate and, if
    // the worker lets it, answers as the controller with a grant key of its own.
    let attacker_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let keys = vec![GrantKey {
        kid: "k_impostor".into(),
        public_key: portcullis_proto::keys::b64(attacker_key.public_key_raw()),
    }];
    let mut tls = dial_link_as_worker(&link2, &dir.path().join("w1/state"));
    let stop = Arc::new(AtomicBool::new(false));
    let handshake = match read_frame(&mut tls) {
        Ok(Frame::Request {
            id,
            body: Request::Hello(_),
        }) => {
            // The worker took the impostor for a controller: play the part.
            write_frame(
                &mut tls,
                &Frame::Response {
                    id,
                    body: Response::Sync(link::Sync {
                        grant_keys: keys.clone(),
                        ended: vec![],
                        heartbeat_ms: 200,
                        controller_id: "c_impostor".into(),
                        tls_ca: None,
                    }),
                },
            )
            .unwrap();
            // The worker has applied the Sync when it sends its next request (or drops the
            // link, as it did when another link replaced the real controller's).
            if let Ok(Frame::Request { id, .. }) = read_frame(&mut tls) {
                let answer = Frame::Response {
                    id,
                    body: Response::Ok,
                };
                let _ = write_frame(&mut tls, &answer);
                let (keys, stop) = (keys.clone(), stop.clone());
                std::thread::spawn(move || pose_as_controller(tls, keys, stop));
            }
            Ok(())
        }
        Ok(other) => panic!("unexpected first frame {other:?}"),
        Err(e) => Err(e.to_string()),
    };

    // A grant forged with the attacker's key, for a session the controller never made.
    let client = ClientKey::generate();
    let now = unix_now();
    let claims = GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GrantClaims::audience_for(&w2.id),
        sub: "u_attacker".into(),
        sid: "s_000000000000000000000001".into(),
        tid: "t_anything".into(),
        ckh: client.fingerprint(),
        src: "127.0.0.1".into(),
        dst: echo_addr,
        lim: 0,
        iat: now,
        exp: now + 600,
        gw: None,
        pve: None,
    };
    let forged = grant::sign(&claims, "k_impostor", &attacker_key.serialize_der()).unwrap();
    let reply = present(&w2.proxy, &w2_fingerprint, Auth::Key(&client), &forged);
    stop.store(true, Ordering::SeqCst);
    match reply {
        Ok((WorkerReply::Refused { code, reason }, _)) => {
            assert_eq!(code, RefusalCode::InvalidGrant, "{reason}");
        }
        Ok((other, _)) => panic!("the forged grant was not refused: {other:?}"),
        Err(e) => panic!("no reply to the forged grant: {e}"),
    }
    // And the impostor never got past TLS: the worker refused a certificate that does not
    // name the controller.
    let err = handshake.expect_err("a worker certificate was accepted as a controller's");
    assert!(
        err.to_lowercase().contains("alert") || err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // The real controller still serves sessions through w2.
    drop(w1);
    create_echo_target(&c);
    let l = listen(c.cli(), "echo");
    drop(open_echo(l.port));
}

#[test]
fn garbage_connections_to_cluster_listen_refuse_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let link = free_addr();
    let c = dialling_controller(
        &dir.path().join("c"),
        &sqlite(&dir.path().join("c")),
        &[&link],
    );
    let _w = dialled_worker(&dir.path().join("w1"), &link, &c.join_token(), "");
    create_echo_target(&c);
    // Strangers hammer cluster_listen: garbage, a bare connect-and-close, a TLS record cut
    // short, one after another for the whole burst.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let hammer = {
        let (stop, made, link) = (stop.clone(), made.clone(), link.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = made.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = TcpStream::connect(&link) {
                    match n % 3 {
                        0 => drop(s.write_all(b"GET / HTTP/1.1\r\n\r\n\x1b[31m")),
                        1 => {}
                        _ => drop(s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 0x01])),
                    }
                    let _ = s.shutdown(Shutdown::Both);
                }
                // Pacing of the hammer (about 100 garbage connections a second), not a wait.
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    wait_for(
        "the first garbage connections",
        Duration::from_secs(5),
        || made.load(Ordering::SeqCst) >= 5,
    );
    let before = made.load(Ordering::SeqCst);
    let mut refusals = 0;
    for _ in 0..10 {
        let l = listen(c.cli(), "echo");
        if refused(l.port) {
            refusals += 1;
        }
    }
    let during = made.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    hammer.join().unwrap();
    assert_eq!(refusals, 0, "{refusals} of 10 new sessions were refused");
    assert!(
        during >= 5,
        "only {during} garbage connections during the burst"
    );
}

/// The TCP connections process `pid` holds to local port `port`, by socket inode.
fn connections_to(pid: u32, port: u16) -> Vec<String> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let remote_port = u16::from_str_radix(cols.get(2)?.rsplit(':').next()?, 16).ok()?;
            // 01: ESTABLISHED.
            (remote_port == port && cols.get(3)? == &"01" && inodes.contains(*cols.get(9)?))
                .then(|| cols[9].to_owned())
        })
        .collect()
}

#[test]
fn two_controllers_dialling_one_worker_both_keep_their_links() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::pg::fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let link = free_addr();
    let port: u16 = link.rsplit(':').next().unwrap().parse().unwrap();
    let a = dialling_controller(&dir.path().join("a"), &url, &[&link]);
    let mut b = dialling_controller(&dir.path().join("b"), &url, &[&link]);
    let _w = dialled_worker(&dir.path().join("w1"), &link, &a.join_token(), "");
    create_echo_target(&a);
    // Both controllers hold a link (an established connection each) ...
    wait_for(
        "a link from each controller",
        Duration::from_secs(20),
        || {
            connections_to(a.child.id(), port).len() == 1
                && connections_to(b.child.id(), port).len() == 1
        },
    );
    let (first_a, first_b) = (
        connections_to(a.child.id(), port),
        connections_to(b.child.id(), port),
    );
    // ... and each serves sessions.
    drop(open_echo(listen(a.cli(), "echo").port));
    drop(open_echo(listen(b.cli(), "echo").port));
    assert_eq!(
        connections_to(a.child.id(), port),
        first_a,
        "a's link was replaced"
    );
    assert_eq!(
        connections_to(b.child.id(), port),
        first_b,
        "b's link was replaced"
    );
    // One controller goes away: the worker keeps the other's link, and new sessions through
    // it are admitted at once.
    let _ = b.child.kill();
    let _ = b.child.wait();
    let l = listen(a.cli(), "echo");
    let started = Instant::now();
    assert!(
        !refused(l.port),
        "the first session after the other controller left was refused"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        connections_to(a.child.id(), port),
        first_a,
        "a's link was replaced"
    );
}

/// Bytes of a TLS record header, one at a time, forever (until the peer closes).
fn trickle(mut s: TcpStream) -> Duration {
    let started = Instant::now();
    for byte in [0x16u8, 0x03, 0x01, 0x40, 0x00].iter().cycle() {
        if s.write_all(&[*byte]).is_err() {
            break;
        }
        // The trickle's pace (a byte every 100 ms) is what is being tested, not a wait.
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(30) {
            panic!("a trickling connection was kept for 30 s");
        }
    }
    started.elapsed()
}

/// A TCP connection from `source` (any 127.0.0.0/8 address) to `addr`.
fn connect_from(source: &str, addr: &str) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        stream.into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

#[test]
fn idle_and_trickling_connections_are_closed_within_the_handshake_limits() {
    let dir = tempfile::tempdir().unwrap();
    let link = free_addr();
    let c = dialling_controller(
        &dir.path().join("c"),
        &sqlite(&dir.path().join("c")),
        &[&link],
    );
    let limits = "handshake_timeout_secs = 1.5\nhello_timeout_secs = 1\nmax_handshakes = 64\nmax_handshakes_per_source = 4";
    let w = dialled_worker(&dir.path().join("w1"), &link, &c.join_token(), limits);
    create_echo_target(&c);
    let limit = Duration::from_millis(1500 + 1500);

    // Idle, on both listeners: closed at the handshake timeout.
    for addr in [&w.proxy, &link] {
        let mut idle = TcpStream::connect(addr.as_str()).unwrap();
        let took = closes_within(&mut idle, limit);
        assert!(
            took >= Duration::from_millis(1400),
            "{addr}: closed after {took:?}"
        );
    }
    // Trickling a TLS record a byte at a time, on both: the timeout covers the whole
    // handshake, not each read.
    for addr in [&w.proxy, &link] {
        let took = trickle(TcpStream::connect(addr.as_str()).unwrap());
        assert!(
            took < limit + Duration::from_millis(500),
            "{addr}: kept for {took:?}"
        );
    }
    // On the proxy port, a client that finishes TLS but trickles its hello: closed at the
    // hello timeout.
    let (_, text) = c.curl("GET", &format!("/v1/workers/{}", w.id), None);
    let fingerprint = serde_json::from_str::<serde_json::Value>(&text).unwrap()["key_fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = ClientKey::generate();
    let mut tls = common::raw::connect(&w.proxy, &fingerprint, Auth::Key(&client)).unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in [0u8, 0, 1, 0, b'{', b'"'].iter().cycle().take(60) {
        if tls.write_all(&[*byte]).and_then(|()| tls.flush()).is_err() {
            closed = true;
            break;
        }
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 256];
        match tls.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {} // the refusal frame; the close follows
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a trickled hello was kept for {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    // The cap: four idle connections from one address fill its share; a fifth from it is
    // closed at once, while a client from another address gets its session.
    // (The session is authorised first: the held connections last 1.5 s.)
    let l = listen(c.cli(), "echo");
    for addr in [&w.proxy, &link] {
        // Accepted in order: the four are in their handshake when the fifth comes.
        let held: Vec<TcpStream> = (0..4).map(|_| connect_from("127.0.0.2", addr)).collect();
        let mut fifth = connect_from("127.0.0.2", addr);
        let took = closes_within(&mut fifth, Duration::from_millis(1000));
        assert!(took < Duration::from_millis(1000), "{addr}: {took:?}");
        if addr == &w.proxy {
            drop(open_echo(l.port));
        }
        drop(held);
    }
}

#[test]
fn enrolment_succeeds_while_an_idle_connection_is_held_open() {
    let dir = tempfile::tempdir().unwrap();
    let link = free_addr();
    let cdir = dir.path().join("c");
    // The controller's join token must exist before the worker starts: a first controller
    // issues it, without dialling anyone.
    let c = Controller::start_full(&cdir, &sqlite(&cdir), "", "");
    let token = c.join_token();
    drop(c);
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (wdir, link) = (dir.path().join("w1"), link.clone());
        std::thread::spawn(move || {
            let _ = tx.send(dialled_worker(&wdir, &link, &token, ""));
        });
    }
    // Someone connects first and says nothing.
    let idle = poll("the worker to listen", Duration::from_secs(20), || {
        TcpStream::connect(&link)
    });
    // Now the controller dials in: the worker enrols through it at once.
    let started = Instant::now();
    let c = dialling_controller(&cdir, &sqlite(&cdir), &[&link]);
    let w = rx
        .recv_timeout(Duration::from_secs(8))
        .expect("the worker did not enrol while an idle connection was open");
    assert!(started.elapsed() < Duration::from_secs(8));
    let (code, text) = c.curl("GET", &format!("/v1/workers/{}", w.id), None);
    assert_eq!(code, 200, "{text}");
    drop(idle);
}

/// A TLS connection to a controller's cluster listener, without a client certificate, with
/// its handshake finished.
fn tls_to_controller_link(addr: &str) -> Tls {
    let _ = portcullis_crypto::tls::install_process_default();
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer))
            .with_no_client_auth();
    config.alpn_protocols = vec![link::ALPN.to_vec()];
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(link::CONTROLLER_SERVER_NAME).unwrap(),
    )
    .unwrap();
    let tcp = connect_from("127.0.0.3", addr);
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Whether `s` is still open `after` from now (nothing to read, no close).
fn still_open(s: &mut TcpStream, after: Duration) -> bool {
    s.set_read_timeout(Some(after)).unwrap();
    matches!(s.read(&mut [0u8; 16]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[test]
fn the_controllers_link_listener_caps_connections_in_their_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("c");
    let limits = "handshake_timeout = 2\nfirst_frame_timeout = 1\nmax_handshakes = 16\nmax_handshakes_per_source = 3";
    let c = Controller::start_full(&cdir, &sqlite(&cdir), limits, "");
    let link = c.cluster.clone();
    let token = c.join_token();

    // Idle TCP connections from one address fill its share ...
    let opened = Instant::now();
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.2", &link)).collect();
    // ... while a real worker enrols and links from another.
    let worker = {
        let (wdir, link) = (dir.path().join("w1"), link.clone());
        std::thread::spawn(move || Worker::start(&wdir, &[link], Some(&token), "").unwrap())
    };
    // Every further connection from the full address is closed at once.
    for _ in 0..4 {
        let mut extra = connect_from("127.0.0.2", &link);
        let took = closes_within(&mut extra, Duration::from_millis(1000));
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }
    // The held ones are closed at the configured handshake timeout, not before.
    for s in &mut held {
        let limit =
            (opened + Duration::from_millis(3000)).saturating_duration_since(Instant::now());
        closes_within(s, limit);
        assert!(
            opened.elapsed() >= Duration::from_millis(1900),
            "closed after {:?}",
            opened.elapsed()
        );
    }
    // A connection that finishes TLS but sends no frame: closed at the first-frame timeout.
    let mut quiet = tls_to_controller_link(&link);
    let finished = Instant::now();
    quiet
        .sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let closed = !matches!(quiet.read(&mut [0u8; 16]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    let took = finished.elapsed();
    assert!(
        closed,
        "a connection without a first frame was kept for {took:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2000),
        "{took:?}"
    );

    // The worker linked and serves a session.
    let _w = worker.join().unwrap();
    create_echo_target(&c);
    let l = listen(c.cli(), "echo");
    drop(open_echo(l.port));
    // Its authenticated link holds no place: its address still has all three.
    let mut mine: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.1", &link)).collect();
    let last = mine.last_mut().unwrap();
    assert!(
        still_open(last, Duration::from_millis(500)),
        "the worker's own link counted against its address"
    );
    let mut fourth = connect_from("127.0.0.1", &link);
    let took = closes_within(&mut fourth, Duration::from_millis(1000));
    assert!(took < Duration::from_millis(1000), "{took:?}");
    drop(open_echo(l.port));
}
