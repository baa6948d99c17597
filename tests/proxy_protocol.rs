//! Debian's HAProxy in front of a real controller's API and a real worker's proxy port, in TCP
//! mode with `send-proxy-v2` (and `send-proxy`, v1): the address the policy's source zones,
//! the audit and the worker's grant check see is the client's, named by the PROXY header; a
//! connection from the trusted proxy's address without a header is refused; a header from an
//! untrusted peer is never believed; direct clients keep working; the trusted proxy is not
//! held to the per-address connection cap, anyone else is.
//!
//! HAProxy runs as a private process of the test, on free ports of 127.0.0.1, its connections
//! to the backends from 127.0.0.9 (the only trusted proxy). Clients pick their address with
//! curl's `--interface` (127.0.0.2 is in zone BRANCH, 127.0.0.3 in GUEST).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::client::{listen, open_echo};
use common::cluster::{echo, Controller, Worker};
use common::netns::Place;
use common::ports::free_port;
use common::raw::{Auth, ClientKey};
use common::wait::poll;

const BALANCER: &str = "127.0.0.9";
const TRUSTED: &str = "trusted_proxies = [\"127.0.0.9/32\"]";

/// A private HAProxy, stopped when dropped.
struct HaProxy {
    child: Child,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HaProxy {
    /// Starts HAProxy with one TCP frontend per `(port, backend address, send-proxy keyword)`,
    /// each relaying from [`BALANCER`]; returns once every frontend accepts.
    fn start(dir: &Path, routes: &[(u16, &str, &str)]) -> HaProxy {
        let mut config = String::from(
            "global\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n",
        );
        for (i, (port, backend, send_proxy)) in routes.iter().enumerate() {
            config.push_str(&format!(
                "frontend f{i}\n    bind 127.0.0.1:{port}\n    default_backend b{i}\n\
                 backend b{i}\n    server s{i} {backend} {send_proxy} source {BALANCER}\n"
            ));
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let check = Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(&file)
            .output()
            .expect("haproxy is installed (scripts/test installs it)");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let haproxy = HaProxy { child };
        for (port, _, _) in routes {
            poll("HAProxy to listen", Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", *port)).map_err(|e| e.to_string())
            });
        }
        haproxy
    }
}

/// curl from the client address `from` to `url`; the status (0 when no HTTP answer came) and
/// the body.
fn curl(ca: &Path, from: &str, url: &str, extra: &[&str], body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(["--interface", from, "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(url);
    if let Some(b) = body {
        cmd.args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            b,
        ]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Asks for a session to `target` through `api` from `from`; the status and the body.
fn authorize(c: &Controller, api: &str, from: &str, target: &str) -> (u16, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let body =
        serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&spki)}).to_string();
    let auth = format!("Authorization: Bearer {}", c.token);
    curl(
        &c.ca,
        from,
        &format!("{api}/v1/targets/{target}/authorize-session"),
        &["-H", &auth],
        Some(&body),
    )
}

fn audit_events(c: &Controller, kind: &str) -> Vec<serde_json::Value> {
    let (code, body) = c.curl("GET", &format!("/v1/audit?type={kind}"), None);
    assert_eq!(code, 200, "{body}");
    let events: serde_json::Value = serde_json::from_str(&body).unwrap();
    events["items"].as_array().unwrap().clone()
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().unwrap().port()
}

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy-proxy.toml")
}

#[test]
fn haproxy_in_front_of_the_api_and_the_proxy_port_passes_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c/portcullis.db").display());
    let c = Controller::start_configured(
        &Place::host(),
        &dir.path().join("c"),
        &url,
        &policy(),
        TRUSTED,
        "",
        "",
    );
    // Clients reach the worker through HAProxy: the grant names HAProxy's frontend.
    let worker_front = free_port();
    let worker = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        &format!("{TRUSTED}\nproxy_public_addr = \"127.0.0.1:{worker_front}\""),
    )
    .unwrap_or_else(|e| panic!("the worker did not start: {e}"));
    c.create_target("echo", &echo());
    let api = c.api.trim_start_matches("https://").to_owned();
    let (v2_front, v1_front) = (free_port(), free_port());
    let _haproxy = HaProxy::start(
        dir.path(),
        &[
            (v2_front, &api, "send-proxy-v2"),
            (v1_front, &api, "send-proxy"),
            // With health checks that send a v2 LOCAL header.
            (
                worker_front,
                &worker.proxy,
                "send-proxy-v2 check check-send-proxy inter 200ms",
            ),
        ],
    );

    // Through HAProxy, v2 and v1: the source zone is the client's (BRANCH may, GUEST may not),
    // not the balancer's (BALANCER may nothing).
    for front in [v2_front, v1_front] {
        let via = format!("https://127.0.0.1:{front}");
        let (code, text) = authorize(&c, &via, "127.0.0.2", "echo");
        assert_eq!(code, 201, "from BRANCH through port {front}: {text}");
        let (code, text) = authorize(&c, &via, "127.0.0.3", "echo");
        assert_eq!(code, 403, "from GUEST through port {front}: {text}");
        assert!(text.contains("GUEST"), "{text}");
    }
    // The audit's source is the client's address, the zone its zone.
    let allowed = audit_events(&c, "session_authorized");
    assert_eq!(allowed.len(), 2, "{allowed:?}");
    for e in &allowed {
        assert_eq!(e["actor"]["source"], "127.0.0.2", "{e}");
        assert_eq!(e["details"]["source_zone"], "BRANCH", "{e}");
    }
    let denied = audit_events(&c, "session_denied");
    assert_eq!(denied.len(), 2, "{denied:?}");
    for e in &denied {
        assert_eq!(e["actor"]["source"], "127.0.0.3", "{e}");
    }

    // The trusted proxy's address without a header is refused; with one (curl's v1) it is
    // served, as the client the header names.
    let whoami = format!("{}/v1/whoami", c.api);
    let auth = format!("Authorization: Bearer {}", c.token);
    let (code, text) = curl(&c.ca, BALANCER, &whoami, &["-H", &auth], None);
    assert_eq!(
        code, 0,
        "no header from the trusted proxy, yet answered: {text}"
    );
    let (code, text) = curl(
        &c.ca,
        BALANCER,
        &whoami,
        &["-H", &auth, "--haproxy-protocol"],
        None,
    );
    assert_eq!(code, 200, "{text}");
    // Anyone else is served directly, and a header they send is not believed: it is taken for
    // the start of TLS, which fails.
    let (code, text) = curl(&c.ca, "127.0.0.3", &whoami, &["-H", &auth], None);
    assert_eq!(code, 200, "a direct client: {text}");
    let (code, text) = curl(
        &c.ca,
        "127.0.0.3",
        &whoami,
        &["-H", &auth, "--haproxy-protocol"],
        None,
    );
    assert_eq!(code, 0, "a header from an untrusted peer was read: {text}");

    // The CLI through HAProxy to the API and to the worker: the grant is for the source the
    // controller saw (127.0.0.1, from the header), and the worker sees the same source in
    // its header; had either ignored its header, the balancer's address would be refused.
    let mut cli = c.cli();
    cli.env("PORTCULLIS_ADDR", format!("https://127.0.0.1:{v2_front}"));
    let listener = listen(cli, "echo");
    let mut echoed = open_echo(listener.port);
    echoed.write_all(b"!").unwrap();
    let mut one = [0u8; 1];
    echoed.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"!");

    // HAProxy's health checks (v2 LOCAL) were taken for the balancer's own connections, not
    // refused.
    let refused = "connection from a trusted proxy refused";
    assert!(!worker.log().contains(refused), "{}", worker.log());

    // The worker refuses a connection from the trusted proxy's address without a header.
    let mut raw = connect_from(BALANCER, port_of(&worker.proxy));
    raw.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    poll(
        "the worker to refuse a headerless connection from the balancer",
        Duration::from_secs(10),
        || {
            let log = worker.log();
            if log.contains(refused) && log.contains("did not start with a PROXY protocol header") {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    );
}

/// A TCP connection to 127.0.0.1:`port` from the address `from` (std cannot bind before
/// connecting; tokio's `TcpSocket` can).
fn connect_from(from: &str, port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(from.parse().unwrap(), 0))
            .unwrap();
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap()
            .into_std()
            .unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

#[test]
fn the_trusted_proxy_is_not_held_to_the_per_address_cap_and_direct_clients_are() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c/portcullis.db").display());
    let c = Controller::start_configured(
        &Place::host(),
        &dir.path().join("c"),
        &url,
        &policy(),
        &format!("{TRUSTED}\n[api.connections]\nmax_per_address = 2\nidle_timeout = 60\n"),
        "",
        "",
    );
    let api = c.api.trim_start_matches("https://").to_owned();
    let front = free_port();
    let _haproxy = HaProxy::start(dir.path(), &[(front, &api, "send-proxy-v2")]);

    // Four connections through the balancer, twice the per-address cap, all from 127.0.0.9
    // as the controller's socket sees them: each finishes its TLS handshake and stays.
    let held: Vec<_> = (0..4)
        .map(|i| {
            tls_from("127.0.0.2", front, &c.ca)
                .unwrap_or_else(|e| panic!("connection {i} through the balancer refused: {e}"))
        })
        .collect();
    // And a request through it is still served.
    let whoami = format!("https://127.0.0.1:{front}/v1/whoami");
    let auth = format!("Authorization: Bearer {}", c.token);
    let (code, text) = curl(&c.ca, "127.0.0.2", &whoami, &["-H", &auth], None);
    assert_eq!(code, 200, "through the balancer past the cap: {text}");

    // A direct client gets two, and its third is closed before the handshake ends.
    let port = port_of(&api);
    let direct: Vec<_> = (0..2)
        .map(|_| tls_from("127.0.0.4", port, &c.ca).unwrap())
        .collect();
    let third = tls_from("127.0.0.4", port, &c.ca);
    assert!(third.is_err(), "a third direct connection was served");
    drop((held, direct));
}

/// A TLS connection to the API (via `port`, from the address `from`), its handshake complete:
/// proof that the controller admitted it.
fn tls_from(
    from: &str,
    port: u16,
    ca: &Path,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .unwrap();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = connect_from(from, port);
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

#[test]
fn the_worker_holds_the_trusted_proxy_to_its_total_handshake_cap_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c/portcullis.db").display());
    let c = Controller::start_configured(
        &Place::host(),
        &dir.path().join("c"),
        &url,
        &policy(),
        "",
        "",
        "",
    );
    let front = free_port();
    // Connections wait in the handshake gate until their hello: two per source, eight in all.
    let worker = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        &format!(
            "{TRUSTED}\nproxy_public_addr = \"127.0.0.1:{front}\"\n\
             max_handshakes_per_source = 2\nmax_handshakes = 8\nhello_timeout = 60\n"
        ),
    )
    .unwrap_or_else(|e| panic!("the worker did not start: {e}"));
    c.create_target("echo", &echo());
    let _haproxy = HaProxy::start(dir.path(), &[(front, &worker.proxy, "send-proxy-v2")]);
    let (code, body) = authorize(&c, &c.api, "127.0.0.2", "echo");
    assert_eq!(code, 201, "{body}");
    let grant: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fingerprint = grant["worker_key_fingerprint"].as_str().unwrap().to_owned();
    let key = ClientKey::generate();

    // Four connections through the balancer, twice the per-source cap, each with its TLS
    // handshake done and no hello yet: all hold a place in the gate.
    let through = format!("127.0.0.1:{front}");
    let held: Vec<_> = (0..4)
        .map(|i| {
            common::raw::connect(&through, &fingerprint, Auth::Key(&key))
                .unwrap_or_else(|e| panic!("connection {i} through the balancer refused: {e}"))
        })
        .collect();
    // A session through the balancer still gets in.
    let mut cli = c.cli();
    cli.env("PORTCULLIS_ADDR", &c.api);
    let listener = listen(cli, "echo");
    let mut echoed = open_echo(listener.port);
    echoed.write_all(b"!").unwrap();
    let mut one = [0u8; 1];
    echoed.read_exact(&mut one).unwrap();
    assert_eq!(&one, b"!");

    // A direct client gets two places and its third connection is closed at once.
    let direct: Vec<_> = (0..2)
        .map(|_| common::raw::connect(&worker.proxy, &fingerprint, Auth::Key(&key)).unwrap())
        .collect();
    let third = common::raw::connect(&worker.proxy, &fingerprint, Auth::Key(&key));
    assert!(third.is_err(), "a third direct connection got a place");
    drop((held, direct));
}
