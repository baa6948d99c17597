//! `portcullis connect http`, `--listen-addr` with `--allow`, and `--target NAME`, end to
//! end: `portcullis dev` and the CLI as real processes, curl as the browser, and a small HTTP
//! server of the test's own as the web target (it answers with the path and Host it saw, and
//! redirects to its own origin as it knows it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dev::{curl, Dev};
use common::wait::wait_for;

/// A web target: every request is answered with `path=P host=H`, except `/redirect`, which
/// redirects to `SCHEME://HOST/landed` with the Host it was sent, and a request with
/// `Upgrade: echo`, which switches protocols and then echoes bytes (as a WebSocket would
/// carry them). Each answer closes its connection (so the proxy opens another brokered
/// connection for the next request). With `tls`, it speaks HTTPS with that configuration.
fn web_server(tls: Option<Arc<rustls::ServerConfig>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tls = tls.clone();
            std::thread::spawn(move || match tls {
                None => answer(stream, "http"),
                Some(config) => {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    answer(rustls::StreamOwned::new(conn, stream), "https");
                }
            });
        }
    });
    addr
}

fn answer(mut stream: impl Read + Write, scheme: &str) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let header = |wanted: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let host = header("host");
    if header("upgrade") == "echo" {
        let switched =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n";
        if stream
            .write_all(switched.as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream
                .write_all(&buf[..n])
                .and_then(|()| stream.flush())
                .is_err()
            {
                return;
            }
        }
        return;
    }
    let response = if path == "/redirect" {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {scheme}://{host}/landed\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )
    } else {
        let body = format!("path={path} host={host}\n");
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// A self-signed certificate for `names` and its HTTPS server configuration; the
/// certificate's PEM and its SHA-256 fingerprint (hex).
fn https_config(names: &[&str]) -> (Arc<rustls::ServerConfig>, String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().clone();
    let fingerprint = portcullis_crypto::digest::sha256_hex(der.as_ref());
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = portcullis_crypto::tls::https_server_config(vec![der], key, b"http/1.1").unwrap();
    (Arc::new(config), cert.pem(), fingerprint)
}

fn create_target(dev: &Dev, name: &str, address: &str, extra: serde_json::Value) {
    let mut body = serde_json::json!({
        "name": name, "address": address, "zone": "LOCAL", "service": "echo",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(
        dev,
        "POST",
        "/v1/targets",
        Some(&admin),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
}

/// A running `portcullis connect ...` whose first stdout line was JSON; killed at drop.
struct Running {
    child: Child,
    line: serde_json::Value,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// Runs the CLI with `args` (its config directory in `config`) and waits for its JSON line.
fn start(dev: &Dev, config: &std::path::Path, args: &[&str]) -> Running {
    let mut child = dev
        .cli()
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (sink, pipe) = (stderr.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("[connect] {line}");
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let line = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{args:?} printed no JSON line ({e}: {line:?}); stderr:\n{}",
            stderr.lock().unwrap()
        )
    });
    Running {
        child,
        line,
        stderr,
    }
}

/// Runs the CLI to its end.
fn run(dev: &Dev, config: &std::path::Path, args: &[&str]) -> Output {
    dev.cli()
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn curl_local(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The sessions of `target`, as the admin sees them.
fn sessions_of(dev: &Dev, target: &str) -> Vec<serde_json::Value> {
    let (code, body) = curl(
        dev,
        "GET",
        "/v1/sessions",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v
        .as_array()
        .cloned()
        .or_else(|| v["items"].as_array().cloned())
        .unwrap_or_default();
    list.into_iter()
        .filter(|s| s["target_name"] == target)
        .collect()
}

#[test]
fn the_browser_gets_the_target_over_local_https_with_its_host_and_redirects_kept_local() {
    let dev = Dev::start(&[]);
    let web = web_server(None);
    create_target(&dev, "web", &web, serde_json::json!({}));
    let config = tempfile::tempdir().unwrap();

    let served = start(&dev, config.path(), &["connect", "http", "web", "--json"]);
    let line = &served.line;
    let port = line["port"].as_u64().unwrap();
    let url = line["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("https://localhost:{port}/"), "{line}");
    assert_eq!(
        line["host"],
        web.as_str(),
        "the target's address is its Host: {line}"
    );
    assert_eq!(line["upstream"], "http", "{line}");
    let ca = line["ca_file"].as_str().unwrap().to_owned();
    assert!(ca.starts_with(config.path().to_str().unwrap()), "{ca}");

    // curl checks the local leaf against the local CA; the target sees its own Host.
    let out = curl_local(&["--cacert", &ca, &format!("{url}hello?x=1")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("path=/hello?x=1 host={web}\n"));
    // A redirect to the target's own origin comes back as the local URL.
    let out = curl_local(&[
        "--cacert",
        &ca,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{url}redirect"),
    ]);
    let head = text(&out.stdout);
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    assert!(
        head.lines().any(
            |l| l.trim_end() == format!("location: https://localhost:{port}/landed")
                || l.trim_end() == format!("Location: https://localhost:{port}/landed")
        ),
        "{head}"
    );
    // Followed, it lands on the target through the tunnel.
    let out = curl_local(&["--cacert", &ca, "-L", &format!("{url}redirect")]);
    assert_eq!(text(&out.stdout), format!("path=/landed host={web}\n"));
    // Without the local CA, curl refuses the certificate: the listener is really HTTPS.
    let out = curl_local(&[&format!("{url}hello")]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    drop(served);

    // --host-header (and --target NAME): the target sees that Host, and its redirect to it is
    // rewritten back too.
    let served = start(
        &dev,
        config.path(),
        &[
            "connect",
            "http",
            "--target",
            "web",
            "--host-header",
            "app.lan:8080",
            "--json",
        ],
    );
    let port = served.line["port"].as_u64().unwrap();
    let url = served.line["url"].as_str().unwrap().to_owned();
    let out = curl_local(&["--cacert", &ca, &format!("{url}x")]);
    assert_eq!(text(&out.stdout), "path=/x host=app.lan:8080\n");
    let out = curl_local(&[
        "--cacert",
        &ca,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{url}redirect"),
    ]);
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(
        head.contains(&format!("location: https://localhost:{port}/landed")),
        "{head}"
    );
    // SIGTERM (as Ctrl-C) ends the process and cancels its session.
    let session = served.line["session_id"].as_str().unwrap().to_owned();
    let mut served = served;
    let killed = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = served.child.wait().unwrap();
    // As `connect --listen-port` does: a requested stop is a clean end.
    assert_eq!(status.code(), Some(0), "{}", served.stderr());
    let ended = sessions_of(&dev, "web");
    let ended = ended.iter().find(|s| s["id"] == session.as_str()).unwrap();
    assert_eq!(ended["state"], "terminated", "{ended}");
    assert_eq!(ended["termination_reason"], "canceled", "{ended}");
}

#[test]
fn listen_addr_lets_in_only_the_allow_list_and_connect_target_reaches_a_target_named_ssh() {
    let dev = Dev::start(&[]);
    let web = web_server(None);
    create_target(&dev, "web", &web, serde_json::json!({}));
    let config = tempfile::tempdir().unwrap();

    let served = start(
        &dev,
        config.path(),
        &[
            "connect",
            "http",
            "web",
            "--listen-addr",
            "127.0.0.2",
            "--allow",
            "127.0.0.3/32",
            "--json",
        ],
    );
    let port = served.line["port"].as_u64().unwrap();
    let url = served.line["url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("http://127.0.0.2:{port}/"),
        "plain http off 127.0.0.1"
    );
    assert!(served.line.get("ca_file").is_none(), "{}", served.line);
    let out = curl_local(&["--interface", "127.0.0.3", &format!("{url}from-3")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("path=/from-3 host={web}\n"));
    // From 127.0.0.1 the connection is closed before anything is brokered.
    let out = curl_local(&["--interface", "127.0.0.1", &format!("{url}from-1")]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    wait_for("the refusal on stderr", Duration::from_secs(10), || {
        served
            .stderr()
            .contains("closed: not in --allow (1 refused so far)")
    });
    assert!(
        served.stderr().contains("is plain http"),
        "{}",
        served.stderr()
    );
    drop(served);

    // A target named like a subcommand, through plain `connect --target`.
    create_target(
        &dev,
        "ssh",
        dev.ready["echo"].as_str().unwrap(),
        serde_json::json!({}),
    );
    let held = start(
        &dev,
        config.path(),
        &["connect", "--target", "ssh", "--listen-port", "0", "--json"],
    );
    assert_eq!(held.line["target"], "ssh", "{}", held.line);
    let port = held.line["port"].as_u64().unwrap() as u16;
    let mut echo = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    echo.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    echo.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

/// A policy like dev's whose admin role logs into SSH through the worker's gateway.
fn gateway_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let dev_policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/policy-dev.toml"
    ))
    .unwrap();
    let policy = dev_policy.replacen(
        "groups = [\"admins\"]\n",
        "groups = [\"admins\"]\nssh_mode = \"gateway\"\n",
        1,
    );
    assert_ne!(policy, dev_policy, "the dev policy's admin role was found");
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path
}

#[test]
fn listen_addr_is_refused_for_sessions_that_inject_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let policy = gateway_policy(dir.path());
    let dev = Dev::start(&["--policy", policy.to_str().unwrap()]);
    let config = tempfile::tempdir().unwrap();
    let exposed = [
        "--listen-port",
        "0",
        "--listen-addr",
        "127.0.0.2",
        "--allow",
        "127.0.0.3",
    ];

    // Leased secrets show in the target's record: refused before any session.
    create_target(
        &dev,
        "db",
        dev.ready["echo"].as_str().unwrap(),
        serde_json::json!({"vault_secrets": ["database/creds/readonly"]}),
    );
    let mut args = vec!["connect", "db"];
    args.extend(exposed);
    let out = run(&dev, config.path(), &args);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("leased secrets") && said.contains("127.0.0.1"),
        "{said}"
    );
    let out = run(
        &dev,
        config.path(),
        &["connect", "http", "db", "--listen-addr", "127.0.0.2"],
    );
    assert!(
        text(&out.stderr).contains("leased secrets"),
        "{}",
        text(&out.stderr)
    );
    assert!(sessions_of(&dev, "db").is_empty(), "no session was opened");

    // Gateway mode is the policy's decision: known only once authorised, then cancelled.
    let key = dir.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let public = format!("{}.pub", key.display());
    let mut args = vec!["connect", "echo", "--ssh-key", &public];
    args.extend(exposed);
    let out = run(&dev, config.path(), &args);
    let said = text(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("gateway") && said.contains("refusing to listen on 127.0.0.2"),
        "{said}"
    );
    let sessions = sessions_of(&dev, "echo");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["state"], "terminated", "{sessions:?}");
    assert_eq!(
        sessions[0]["termination_reason"], "canceled",
        "{sessions:?}"
    );
    // On 127.0.0.1 the same session is served.
    let mut args = vec![
        "connect",
        "echo",
        "--ssh-key",
        &public,
        "--json",
        "--listen-port",
        "0",
    ];
    args.push("--listen-addr");
    args.push("127.0.0.1");
    let held = start(&dev, config.path(), &args);
    assert_eq!(held.line["ssh"]["mode"], "gateway", "{}", held.line);
}

#[test]
fn an_https_target_is_checked_by_ca_or_fingerprint_and_a_refusal_names_its_fingerprint() {
    let dev = Dev::start(&[]);
    let (tls, cert_pem, fingerprint) = https_config(&["app.lan"]);
    let web = web_server(Some(tls));
    create_target(&dev, "app", &web, serde_json::json!({}));
    let config = tempfile::tempdir().unwrap();
    let target_ca = config.path().join("app-ca.pem");
    std::fs::write(&target_ca, cert_pem).unwrap();
    let https = ["--scheme", "https", "--host-header", "app.lan", "--json"];

    // Checked against --target-ca, for the Host's name; the redirect to https://app.lan is
    // rewritten back.
    let mut args = vec![
        "connect",
        "http",
        "app",
        "--target-ca",
        target_ca.to_str().unwrap(),
    ];
    args.extend(https);
    let served = start(&dev, config.path(), &args);
    assert_eq!(served.line["upstream"], "https", "{}", served.line);
    let url = served.line["url"].as_str().unwrap().to_owned();
    let port = served.line["port"].as_u64().unwrap();
    let ca = served.line["ca_file"].as_str().unwrap().to_owned();
    let out = curl_local(&["--cacert", &ca, &format!("{url}over-tls")]);
    assert_eq!(
        text(&out.stdout),
        "path=/over-tls host=app.lan\n",
        "{}",
        text(&out.stderr)
    );
    let out = curl_local(&[
        "--cacert",
        &ca,
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{url}redirect"),
    ]);
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(
        head.contains(&format!("location: https://localhost:{port}/landed")),
        "{head}"
    );

    // An Upgrade the target accepts is spliced both ways (the Proxmox console's WebSocket).
    let mut roots = rustls::RootCertStore::empty();
    let local_ca = std::fs::read(&ca).unwrap();
    use rustls_pki_types::pem::PemObject as _;
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(&local_ca).unwrap())
        .unwrap();
    let client = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::new(client),
        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = text(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for message in [&b"ping"[..], b"second frame"] {
        tls.write_all(message).unwrap();
        tls.flush().unwrap();
        let mut back = vec![0u8; message.len()];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(back, message);
    }
    drop(tls);
    drop(served);

    // Pinned by its fingerprint (colons and case as Proxmox shows them).
    let colons: Vec<String> = fingerprint
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    let colons = colons.join(":");
    let mut args = vec!["connect", "http", "app", "--target-fingerprint", &colons];
    args.extend(https);
    let served = start(&dev, config.path(), &args);
    let url = served.line["url"].as_str().unwrap().to_owned();
    let out = curl_local(&["--cacert", &ca, &format!("{url}pinned")]);
    assert_eq!(
        text(&out.stdout),
        "path=/pinned host=app.lan\n",
        "{}",
        text(&out.stderr)
    );
    drop(served);

    // Checked against the system's roots: refused, with the fingerprint to pin in the 502
    // and on stderr.
    let mut args = vec!["connect", "http", "app"];
    args.extend(https);
    let served = start(&dev, config.path(), &args);
    let url = served.line["url"].as_str().unwrap().to_owned();
    let out = curl_local(&[
        "--cacert",
        &ca,
        "-w",
        "\n%{http_code}",
        &format!("{url}unchecked"),
    ]);
    let said = text(&out.stdout);
    assert!(said.ends_with("\n502"), "{said}");
    assert!(
        said.contains(&format!("--target-fingerprint {colons}")),
        "{said}"
    );
    assert!(!said.contains("path="), "the target was not asked: {said}");
    wait_for("the refusal on stderr", Duration::from_secs(10), || {
        served.stderr().contains("--target-fingerprint")
    });
    drop(served);

    // --insecure-target: served, with a loud warning.
    let mut args = vec!["connect", "http", "app", "--insecure-target"];
    args.extend(https);
    let served = start(&dev, config.path(), &args);
    let url = served.line["url"].as_str().unwrap().to_owned();
    let out = curl_local(&["--cacert", &ca, &format!("{url}blind")]);
    assert_eq!(text(&out.stdout), "path=/blind host=app.lan\n");
    wait_for("the warning on stderr", Duration::from_secs(10), || {
        served.stderr().contains("warning: --insecure-target")
    });
}
