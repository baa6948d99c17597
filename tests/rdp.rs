//! `portcullis connect rdp` with real software: Debian's xrdp and xrdp-sesman (private ini
//! files and ports, a throw-away Unix user; tests/common/xrdp.rs) behind `portcullis dev`,
//! and FreeRDP's xfreerdp on a virtual X display (xvfb-run) as the client `connect rdp`
//! starts. The oracles: xrdp's own log line for a successful login, the session's byte
//! counters, xrdp's count of the connections it accepted, and the client's exit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::dev::{bin, curl, Dev};
use common::wait::{poll, wait_for};
use common::xrdp::{self, Xrdp};

/// The dev policy with an `rdp` service (any port: xrdp listens where the test put it) in
/// the LOCAL cell, and a role `rdp-users` that may use it; `users` (dev-user) may not.
fn policy_with_rdp(dir: &Path) -> String {
    let dev = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/policy-dev.toml"
    ))
    .unwrap();
    let cell = "from = \"LOCAL\"\nto = \"LOCAL\"\naccess = \"allow\"\nservices = [\"echo\"]";
    assert!(dev.contains(cell), "the dev policy's LOCAL cell moved");
    let policy = dev.replace(cell, &cell.replace("[\"echo\"]", "[\"echo\", \"rdp\"]"))
        + "
[[service]]
name = \"rdp\"
ports = \"any\"

[[role]]
name = \"rdp-users\"
groups = [\"rdp\"]

[[role.grant]]
zones = [\"LOCAL\"]
services = [\"rdp\"]
logins = [\"{{preferred_username}}\"]
";
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path.display().to_string()
}

/// `portcullis dev` on that policy, with a target `win` (service rdp) on xrdp.
fn dev_with_rdp_target(dir: &Path, xrdp: &Xrdp) -> Dev {
    let policy = policy_with_rdp(dir);
    let dev = Dev::start(&["--policy", &policy]);
    let body = serde_json::json!({
        "name": "win", "address": format!("127.0.0.1:{}", xrdp.port), "zone": "LOCAL",
        "service": "rdp",
    });
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
    dev
}

/// A token of a dev user in `groups`.
fn login(dev: &Dev, user: &str, groups: &[&str]) -> String {
    let body = serde_json::json!({"username": user, "groups": groups, "amr": ["pwd"]});
    let (code, text) = curl(
        dev,
        "POST",
        "/v1/auth/dev-login",
        None,
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn session(dev: &Dev, id: &str) -> serde_json::Value {
    let (code, text) = curl(
        dev,
        "GET",
        &format!("/v1/sessions/{id}"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// What a child wrote to stderr so far, collected by a thread (and shown in the test's output).
fn collect_stderr(child: &mut Child, label: &'static str) -> Arc<Mutex<String>> {
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = seen.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
            let mut seen = sink.lock().unwrap();
            seen.push_str(&line);
            seen.push('\n');
        }
    });
    seen
}

/// Waits (up to `limit`) for the child to exit; kills it and fails otherwise.
fn exits_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let exited = common::wait::poll_within(limit, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err(()),
    });
    exited.unwrap_or_else(|()| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not exit within {limit:?}");
    })
}

/// xfreerdp, started by `connect rdp` under xvfb-run with the password on its stdin (never
/// in argv), logs into xrdp through the broker: xrdp logs the login, and `sessions cancel`
/// drops the RDP connection, so that xfreerdp and `connect rdp` exit, and the connection
/// closed with bytes counted both ways.
#[test]
fn xfreerdp_logs_in_through_the_broker_and_cancel_drops_the_connection() {
    xrdp::require_root("xfreerdp_logs_in_through_the_broker_and_cancel_drops_the_connection");
    let dir = tempfile::tempdir().unwrap();
    let xrdp = Xrdp::start();
    let dev = dev_with_rdp_target(dir.path(), &xrdp);
    let token = login(&dev, "alice", &["rdp"]);

    let mut connect = Command::new("xvfb-run")
        .args([
            "-a",
            bin(),
            "connect",
            "rdp",
            "win",
            "--client",
            "xfreerdp",
            "--",
        ])
        .args(["/u:pcrdp", "/from-stdin:force", "/sec:tls", "/cert:ignore"])
        .envs(dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PORTCULLIS_TOKEN", &token)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = collect_stderr(&mut connect, "connect rdp");
    let mut stdin = connect.stdin.take().unwrap();
    writeln!(stdin, "{}", xrdp::PASSWORD).unwrap();
    drop(stdin);

    let session_id = poll(
        "connect rdp's session line",
        Duration::from_secs(60),
        || {
            let said = said.lock().unwrap().clone();
            said.lines()
                .find_map(|l| l.strip_prefix("Session "))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
                .ok_or(said)
        },
    );
    assert!(
        said.lock().unwrap().contains("running xfreerdp"),
        "{}",
        said.lock().unwrap()
    );
    let took = wait_for("xrdp's login line", Duration::from_secs(60), || {
        xrdp.log().contains(xrdp::LOGIN_OK)
    });
    eprintln!("xrdp logged the login {took:?} after the session line");
    assert_eq!(session(&dev, &session_id)["state"], "active");
    assert!(
        connect.try_wait().unwrap().is_none(),
        "xfreerdp is still connected"
    );

    let cancel = dev
        .cli()
        .args(["sessions", "cancel", &session_id])
        .output()
        .unwrap();
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    // The worker drops the connection, xfreerdp sees it go and exits, and so does connect
    // rdp (xrdp would keep the connection open for half a minute more by itself).
    let status = exits_within(&mut connect, Duration::from_secs(20), "connect rdp");
    // xfreerdp's own status for a connection lost (131), which connect rdp returns.
    assert!(
        !status.success(),
        "connect rdp exited with {status} after the cancel"
    );

    let conns = poll(
        "the RDP connection closed with its byte counts",
        Duration::from_secs(15),
        || {
            let s = session(&dev, &session_id);
            let conns = s["connections"].as_array().cloned().unwrap_or_default();
            if conns.len() == 1 && conns[0]["state"] == "closed" {
                Ok(conns)
            } else {
                Err(s)
            }
        },
    );
    let (up, down) = (
        conns[0]["bytes_up"].as_u64().unwrap(),
        conns[0]["bytes_down"].as_u64().unwrap(),
    );
    // The client's share of the TLS and RDP handshakes, the login and input; the server's
    // certificate, the capabilities and the login window's drawing.
    assert!(up > 1_000 && down > 1_000, "bytes up {up}, down {down}");
    assert_ne!(session(&dev, &session_id)["state"], "active");
}

/// A user whose policy does not allow rdp is refused before any connection reaches xrdp;
/// `connect rdp` says so when no RDP client is on PATH, and refuses a target that is not an
/// RDP server, before any session; and `--no-launch --json` gives
/// a local address that reaches xrdp, held until Ctrl-C.
#[test]
fn a_denied_user_never_reaches_xrdp_and_no_launch_gives_an_address() {
    xrdp::require_root("a_denied_user_never_reaches_xrdp_and_no_launch_gives_an_address");
    let dir = tempfile::tempdir().unwrap();
    let xrdp = Xrdp::start();
    let dev = dev_with_rdp_target(dir.path(), &xrdp);
    let before = xrdp.connections();

    let bob = login(&dev, "bob", &["users"]);
    let denied = dev
        .cli()
        .args([
            "connect", "rdp", "win", "--client", "xfreerdp", "--", "/u:pcrdp",
        ])
        .env("PORTCULLIS_TOKEN", &bob)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "{stderr}");
    assert!(
        stderr.contains("denied") || stderr.contains("forbidden"),
        "{stderr}"
    );
    assert!(!stderr.contains("running xfreerdp"), "{stderr}");

    // No RDP client on PATH: said before any session is opened.
    let alice = login(&dev, "alice", &["rdp"]);
    let empty = tempfile::tempdir().unwrap();
    for client in [&[][..], &["--client", "remmina"][..]] {
        let none = dev
            .cli()
            .args(["connect", "rdp", "win"])
            .args(client)
            .env("PORTCULLIS_TOKEN", &alice)
            .env("PATH", empty.path())
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&none.stderr);
        assert!(!none.status.success(), "{stderr}");
        assert!(
            stderr.contains("--client") && stderr.contains("--no-launch"),
            "{stderr}"
        );
        assert!(!stderr.contains("Session "), "{stderr}");
    }

    // The dev target `echo` offers the service echo, not rdp.
    let not_rdp = dev
        .cli()
        .args(["connect", "rdp", "echo", "--no-launch"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&not_rdp.stderr);
    assert!(!not_rdp.status.success(), "{stderr}");
    assert!(
        stderr.contains("offers the service \"echo\", not \"rdp\""),
        "{stderr}"
    );
    assert_eq!(
        xrdp.connections(),
        before,
        "no connection reached xrdp: {}",
        xrdp.log()
    );

    let mut held = dev
        .cli()
        .args(["connect", "rdp", "win", "--no-launch", "--json"])
        .env("PORTCULLIS_TOKEN", &alice)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(held.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listening: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(listening["target"], "win", "{line}");
    assert_eq!(listening["address"], "127.0.0.1", "{line}");
    let port = listening["port"].as_u64().unwrap() as u16;
    // An RDP client of the user's own would connect here: xrdp sees the connection.
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_for(
        "xrdp to accept the connection through the session",
        Duration::from_secs(20),
        || xrdp.connections() == before + 1,
    );
    drop(stream);
    let _ = Command::new("kill")
        .args(["-INT", &held.id().to_string()])
        .status();
    let status = exits_within(
        &mut held,
        Duration::from_secs(20),
        "connect rdp --no-launch",
    );
    assert!(status.success(), "{status}");
    let session_id = listening["session_id"].as_str().unwrap();
    assert_ne!(session(&dev, session_id)["state"], "active");
}
