//! Input an attacker chose, or that came in from outside (an identity provider, rows written
//! before today's checks): it reaches no log line, terminal table or target label as control
//! characters, and one user cannot flood the controller with sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::Read as _;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::dev::{curl, Dev};
use common::raw::{present_hello, Auth, ClientKey};
use common::wait::wait_for;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use sqlx::Connection as _;

/// An OSC sequence (set the window title) ended by BEL, then a forged log line.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\nFORGED INFO portcullis: all is well";

fn token(dev: &Dev) -> String {
    dev.var("PORTCULLIS_TOKEN")
}

/// A session for the dev's echo target: the authorisation as JSON.
fn authorize(dev: &Dev, token: &str, key: &ClientKey) -> (u16, Value) {
    let body = json!({"client_public_key": portcullis_proto::keys::b64(&key.spki())}).to_string();
    let (code, text) = curl(
        dev,
        "POST",
        "/v1/targets/echo/authorize-session",
        Some(token),
        Some(&body),
    );
    (
        code,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// A TLS connection to the controller's cluster port with no client certificate (a
/// stranger), checking the controller against the dev CA.
fn link_stranger(dev: &Dev) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let _ = portcullis_crypto::tls::install_process_default();
    let ca = std::fs::read(dev.var("PORTCULLIS_CA")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![portcullis_proto::link::ALPN.to_vec()];
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(portcullis_proto::link::CONTROLLER_SERVER_NAME).unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(dev.ready["cluster"].as_str().unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn send_frame(stream: &mut impl std::io::Write, frame: &Value) {
    let bytes = serde_json::to_vec(frame).unwrap();
    stream
        .write_all(&u32::try_from(bytes.len()).unwrap().to_be_bytes())
        .unwrap();
    stream.write_all(&bytes).unwrap();
    stream.flush().unwrap();
}

#[test]
fn peers_cannot_write_control_characters_into_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    let dev = Dev::start_logging(&[], &log);

    // The controller's cluster port: a frame of an unknown type, and an enrolment with an
    // unknown field (serde quotes both in its error).
    let mut link = link_stranger(&dev);
    send_frame(
        &mut link,
        &json!({"frame": "request", "id": 1, "body": {"type": HOSTILE}}),
    );
    let _ = link.read(&mut [0u8; 64]);
    let mut link = link_stranger(&dev);
    send_frame(
        &mut link,
        &json!({"frame": "request", "id": 1, "body": {"type": "join", "token": "t",
            "public_key": "k", "name": "n", "proxy_addr": "p", HOSTILE: 1}}),
    );
    let _ = link.read(&mut [0u8; 64]);

    // The worker's proxy: a hello with an unknown field, from a client with a session key.
    let key = ClientKey::generate();
    let (code, auth) = authorize(&dev, &token(&dev), &key);
    assert_eq!(code, 201, "{auth}");
    let hello = json!({
        "protocol_version": portcullis_proto::PROTOCOL_VERSION,
        "grant": auth["grant"],
        HOSTILE: true,
    });
    let (reply, _) = present_hello(
        auth["worker_addr"].as_str().unwrap(),
        auth["worker_key_fingerprint"].as_str().unwrap(),
        Auth::Key(&key),
        &hello,
    )
    .unwrap();
    assert_eq!(reply["code"], "bad_handshake", "{reply}");

    let read = || std::fs::read(&log).unwrap();
    wait_for(
        "the three refusals in the log",
        Duration::from_secs(10),
        || {
            let text = String::from_utf8_lossy(&read()).to_string();
            text.matches("worker link closed").count() >= 2 && text.contains("connection refused")
        },
    );
    let bytes = read();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("unknown variant") && text.contains("unknown field"),
        "the refusals name what was wrong: {text}"
    );
    assert!(
        text.contains("\\u{1b}]0;pwned\\u{7}\\nFORGED"),
        "the attacker's text is shown escaped: {text}"
    );
    for (i, line) in text.lines().enumerate() {
        assert!(
            !line.starts_with("FORGED"),
            "line {i} was forged by a peer: {line}"
        );
        assert!(
            !line.contains(['\u{1b}', '\u{7}', '\r']),
            "line {i} holds a raw control character: {line:?}"
        );
    }
}

#[test]
fn labels_with_control_or_bidi_characters_are_refused_by_field() {
    let dev = Dev::start(&[]);
    let t = token(&dev);
    let cases = [
        (
            json!({"name": "a1", "address": "127.0.0.1:9", "zone": "dmz\u{1b}[2J"}),
            "zone",
        ),
        (
            json!({"name": "a2", "address": "127.0.0.1:9", "service": "ssh\nx"}),
            "service",
        ),
        (
            json!({"name": "a3", "address": "127.0.0.1:9", "pool": "p\u{7}"}),
            "pool",
        ),
        (
            json!({"name": "a4", "address": "127.0.0.1:9", "tags": ["ok", "exe.\u{202e}fdp"]}),
            "tags",
        ),
        (
            json!({"name": "a5", "address": "127.0.0.1:9", "tags": ["\u{2066}x"]}),
            "tags",
        ),
    ];
    for (body, field) in cases {
        let (code, text) = curl(
            &dev,
            "POST",
            "/v1/targets",
            Some(&t),
            Some(&body.to_string()),
        );
        assert_eq!(code, 400, "{body}: {text}");
        let err: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["field"], field, "{text}");
        assert!(
            err["message"].as_str().unwrap().contains("control"),
            "{text}"
        );
    }
    let (code, text) = curl(
        &dev,
        "PATCH",
        "/v1/targets/echo",
        Some(&t),
        Some(r#"{"zone": "LOCAL\u202e"}"#),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains(r#""field":"zone""#), "{text}");
    // Ordinary non-ASCII labels stay allowed.
    let body = json!({"name": "b1", "address": "127.0.0.1:9", "pool": "Zoë", "tags": ["büro"]});
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&t),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
}

fn sql(db: &Path, statements: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
    });
}

#[test]
fn cli_tables_escape_what_the_identity_provider_or_old_rows_hold() {
    let dev = Dev::start(&[]);
    let key = ClientKey::generate();
    let (code, auth) = authorize(&dev, &token(&dev), &key);
    assert_eq!(code, 201, "{auth}");
    // A user name as an identity provider may send it, and a label from before labels were
    // checked: written straight into the store.
    sql(
        &dev.state_dir.join("portcullis.db"),
        &[
            "UPDATE users SET username = 'eve' || char(27) || ']52;c;cm0gLXJmIH4=' || char(7) || char(10) || 'x'",
            "UPDATE targets SET zone = 'LOCAL' || char(27) || '[2J', tags = '[\"a\\u000d\\u001b[31m\"]'",
        ],
    );
    for args in [["sessions", "list"], ["targets", "list"]] {
        let out = dev.cli().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.lines().count(),
            2,
            "{args:?}: a header and one row: {stdout:?}"
        );
        assert!(
            !stdout.contains(['\u{1b}', '\u{7}', '\r']),
            "{args:?}: {stdout:?}"
        );
        assert!(stdout.contains("\\u{1b}"), "{args:?}: {stdout:?}");
    }
}

#[test]
fn one_user_cannot_flood_the_controller_with_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("limits.toml");
    std::fs::write(
        &config,
        "[sessions.per_user]\nmax_live = 3\nauthorize_per_minute = 5\n",
    )
    .unwrap();
    let dev = Dev::start(&["--config", config.to_str().unwrap()]);
    let t = token(&dev);
    let key = ClientKey::generate();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (code, auth) = authorize(&dev, &t, &key);
        assert_eq!(code, 201, "{auth}");
        sessions.push(auth["session_id"].as_str().unwrap().to_owned());
    }
    // The fourth live session: refused with what to do.
    let (code, err) = authorize(&dev, &t, &key);
    assert_eq!(code, 429, "{err}");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("sessions.per_user.max_live") && message.contains("sessions cancel"),
        "{err}"
    );
    // Ending one frees a place.
    let (code, text) = curl(
        &dev,
        "POST",
        &format!("/v1/sessions/{}/cancel", sessions[0]),
        Some(&t),
        Some("{}"),
    );
    assert_eq!(code, 200, "{text}");
    let (code, auth) = authorize(&dev, &t, &key);
    assert_eq!(code, 201, "{auth}");
    // Six requests so far this minute (unless the minute turned meanwhile): past five, the
    // rate limit answers, whatever the live count.
    let mut limited = None;
    for _ in 0..6 {
        let (code, err) = authorize(&dev, &t, &key);
        assert_eq!(code, 429, "{err}");
        let message = err["message"].as_str().unwrap().to_owned();
        if message.contains("authorize_per_minute") {
            limited = Some(message);
            break;
        }
    }
    let message = limited.expect("the rate limit answered within the next minute");
    assert!(message.contains("retry in"), "{message}");
    // Both refusals are audited; the rate limit once per minute, however often it answers.
    for _ in 0..3 {
        let _ = authorize(&dev, &t, &key);
    }
    let out = dev
        .cli()
        .args(["audit", "list", "--type", "session_limit_reached", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let limits: Vec<&str> = events
        .iter()
        .map(|e| e["details"]["limit"].as_str().unwrap())
        .collect();
    assert!(
        limits.contains(&"sessions.per_user.max_live"),
        "{events:#?}"
    );
    // Once, or twice if a minute began during the test.
    let rate = limits
        .iter()
        .filter(|l| **l == "sessions.per_user.authorize_per_minute")
        .count();
    assert!((1..=2).contains(&rate), "{events:#?}");
    for e in &events {
        assert_eq!(e["decision"], "deny", "{e}");
        assert_eq!(e["actor"]["user"], "admin", "{e}");
    }
}
