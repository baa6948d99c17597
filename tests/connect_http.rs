//! `portcullis connect http`, `--listen-addr` with `--allow`, and `--target NAME`, end to
//! end: `portcullis dev` and the CLI as real processes, curl as the browser, and a small HTTP
//! server of the test's own as the web target (it answers with the path and Host it saw, and
//! redirects to its own origin as it knows it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dev::{curl, Dev};
use common::wait::wait_for;

/// A web target: every request is answered with `path=P host=H`, except `/redirect`, which
/// redirects to `http://HOST/landed` with the Host it was sent. Each answer closes its
/// connection (so the proxy opens another brokered connection for the next request).
fn web_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn answer(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("host") {
                host = value.trim().to_owned();
            }
        }
    }
    let response = if path == "/redirect" {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{host}/landed\r\nContent-Length: 0\r\n\
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
}

fn create_target(dev: &Dev, name: &str, address: &str, extra: serde_json::Value) {
    let mut body = serde_json::json!({
        "name": name, "address": address, "zone": "LOCAL", "service": "echo",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let admin = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(dev, "POST", "/v1/targets", Some(&admin), Some(&body.to_string()));
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
        panic!("{args:?} printed no JSON line ({e}: {line:?}); stderr:\n{}", stderr.lock().unwrap())
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
    let (code, body) = curl(dev, "GET", "/v1/sessions", Some(&dev.var("PORTCULLIS_TOKEN")), None);
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
    let web = web_server();
    create_target(&dev, "web", &web, serde_json::json!({}));
    let config = tempfile::tempdir().unwrap();

    let served = start(&dev, config.path(), &["connect", "http", "web", "--json"]);
    let line = &served.line;
    let port = line["port"].as_u64().unwrap();
    let url = line["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("https://localhost:{port}/"), "{line}");
    assert_eq!(line["host"], web.as_str(), "the target's address is its Host: {line}");
    assert_eq!(line["upstream"], "http", "{line}");
    let ca = line["ca_file"].as_str().unwrap().to_owned();
    assert!(ca.starts_with(config.path().to_str().unwrap()), "{ca}");

    // curl checks the local leaf against the local CA; the target sees its own Host.
    let out = curl_local(&["--cacert", &ca, &format!("{url}hello?x=1")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("path=/hello?x=1 host={web}\n"));
    // A redirect to the target's own origin comes back as the local URL.
    let out = curl_local(&["--cacert", &ca, "-D", "-", "-o", "/dev/null", &format!("{url}redirect")]);
    let head = text(&out.stdout);
    assert!(head.starts_with("HTTP/1.1 302"), "{head}");
    assert!(
        head.lines().any(|l| l.trim_end() == format!("location: https://localhost:{port}/landed")
            || l.trim_end() == format!("Location: https://localhost:{port}/landed")),
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
        &["connect", "http", "--target", "web", "--host-header", "app.lan:8080", "--json"],
    );
    let port = served.line["port"].as_u64().unwrap();
    let url = served.line["url"].as_str().unwrap().to_owned();
    let out = curl_local(&["--cacert", &ca, &format!("{url}x")]);
    assert_eq!(text(&out.stdout), "path=/x host=app.lan:8080\n");
    let out = curl_local(&["--cacert", &ca, "-D", "-", "-o", "/dev/null", &format!("{url}redirect")]);
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(head.contains(&format!("location: https://localhost:{port}/landed")), "{head}");
    let session = served.line["session_id"].as_str().unwrap().to_owned();
    drop(served);
    // The session is ended with the process... by its owner, when Ctrl-C'd; a kill leaves
    // it to expire, so only check it was a real session of this target.
    assert!(sessions_of(&dev, "web").iter().any(|s| s["id"] == session.as_str()));
}

#[test]
fn listen_addr_lets_in_only_the_allow_list_and_connect_target_reaches_a_target_named_ssh() {
    let dev = Dev::start(&[]);
    let web = web_server();
    create_target(&dev, "web", &web, serde_json::json!({}));
    let config = tempfile::tempdir().unwrap();

    let served = start(
        &dev,
        config.path(),
        &[
            "connect", "http", "web", "--listen-addr", "127.0.0.2", "--allow", "127.0.0.3/32",
            "--json",
        ],
    );
    let port = served.line["port"].as_u64().unwrap();
    let url = served.line["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("http://127.0.0.2:{port}/"), "plain http off 127.0.0.1");
    assert!(served.line.get("ca_file").is_none(), "{}", served.line);
    let out = curl_local(&["--interface", "127.0.0.3", &format!("{url}from-3")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("path=/from-3 host={web}\n"));
    // From 127.0.0.1 the connection is closed before anything is brokered.
    let out = curl_local(&["--interface", "127.0.0.1", &format!("{url}from-1")]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    wait_for("the refusal on stderr", Duration::from_secs(10), || {
        served.stderr().contains("closed: not in --allow (1 refused so far)")
    });
    assert!(served.stderr().contains("is plain http"), "{}", served.stderr());
    drop(served);

    // A target named like a subcommand, through plain `connect --target`.
    create_target(&dev, "ssh", dev.ready["echo"].as_str().unwrap(), serde_json::json!({}));
    let held = start(
        &dev,
        config.path(),
        &["connect", "--target", "ssh", "--listen-port", "0", "--json"],
    );
    assert_eq!(held.line["target"], "ssh", "{}", held.line);
    let port = held.line["port"].as_u64().unwrap() as u16;
    let mut echo = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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
    let exposed = ["--listen-port", "0", "--listen-addr", "127.0.0.2", "--allow", "127.0.0.3"];

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
    assert!(said.contains("leased secrets") && said.contains("127.0.0.1"), "{said}");
    let out = run(&dev, config.path(), &["connect", "http", "db", "--listen-addr", "127.0.0.2"]);
    assert!(text(&out.stderr).contains("leased secrets"), "{}", text(&out.stderr));
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
    assert!(said.contains("gateway") && said.contains("refusing to listen on 127.0.0.2"), "{said}");
    let sessions = sessions_of(&dev, "echo");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["state"], "terminated", "{sessions:?}");
    assert_eq!(sessions[0]["termination_reason"], "canceled", "{sessions:?}");
    // On 127.0.0.1 the same session is served.
    let mut args = vec!["connect", "echo", "--ssh-key", &public, "--json", "--listen-port", "0"];
    args.push("--listen-addr");
    args.push("127.0.0.1");
    let held = start(&dev, config.path(), &args);
    assert_eq!(held.line["ssh"]["mode"], "gateway", "{}", held.line);
}
