//! A brokered session end to end: `portcullis dev` (controller, worker, echo target) and
//! `portcullis connect` as real processes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dev::{curl, Dev};
use common::wait::{poll, wait_for};

fn payload(len: usize) -> Vec<u8> {
    // xorshift: incompressible, reproducible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `connect TARGET --listen-port 0 --json`: returns the child and the local port.
fn listen(dev: &Dev, target: &str) -> (Child, u16, String) {
    let mut child = dev
        .cli()
        .args(["connect", target, "--listen-port", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    (
        child,
        v["port"].as_u64().unwrap() as u16,
        v["session_id"].as_str().unwrap().to_owned(),
    )
}

/// Sends `data`, half-closes, and reads everything back.
fn round_trip(port: u16, data: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = data.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

/// Creates a target on dev's echo server in LOCAL, with `fields` (its name and any limit).
fn create_echo_target(dev: &Dev, fields: serde_json::Value) {
    let mut body = serde_json::json!({
        "address": dev.ready["echo"].as_str().unwrap(), "zone": "LOCAL", "service": "echo",
    });
    for (k, v) in fields.as_object().unwrap() {
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

#[test]
fn sixteen_mib_round_trip_through_listen_port_and_stdio_with_byte_counts() {
    let dev = Dev::start(&[]);
    let data = payload(16 << 20);
    let (mut child, port, session_id) = listen(&dev, "echo");
    let back = round_trip(port, &data);
    assert!(
        back == data,
        "echoed payload differs ({} bytes back)",
        back.len()
    );
    // A second connection of the same session, half-closing early: still gets the whole reply.
    let back = round_trip(port, b"hello");
    assert_eq!(back, b"hello");
    wait_for(
        "both connections closed with byte counts",
        Duration::from_secs(10),
        || {
            let s = session(&dev, &session_id);
            let conns = s["connections"].as_array().cloned().unwrap_or_default();
            conns.len() == 2
                && conns.iter().all(|c| c["state"] == "closed")
                && conns
                    .iter()
                    .any(|c| c["bytes_up"] == 16 << 20 && c["bytes_down"] == 16 << 20)
                && conns
                    .iter()
                    .any(|c| c["bytes_up"] == 5 && c["bytes_down"] == 5)
        },
    );
    assert_eq!(session(&dev, &session_id)["state"], "active");
    let _ = child.kill();
    let _ = child.wait();

    // --stdio: one connection over stdin/stdout.
    let mut stdio = dev
        .cli()
        .args(["connect", "echo", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = stdio.stdin.take().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&sent).unwrap();
        drop(stdin); // EOF = half-close
    });
    let mut back = Vec::new();
    stdio.stdout.take().unwrap().read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(
        back == data,
        "stdio payload differs ({} bytes back)",
        back.len()
    );
    let status = stdio.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `connect echo --stdio` on pipes this test shares (as a shell would with the commands
/// before and after it): the bytes round-trip, and both pipes are blocking again once it
/// has exited, so a later writer on its stdout is not handed a non-blocking pipe.
/// 200 local connections opened at the same moment (more than the worker's 64 handshakes in
/// progress from one address) all reach the target: the listener opens a few at a time, and
/// a handshake the worker closed is tried again.
#[test]
fn a_burst_of_local_connections_all_reach_the_target() {
    let mut dev = Dev::start(&[]);
    let (mut child, port, _) = listen(&dev, "echo");
    const BURST: usize = 200;
    let start = std::sync::Arc::new(std::sync::Barrier::new(BURST));
    let clients: Vec<_> = (0..BURST)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                let data = format!("connection {i} of the burst").into_bytes();
                start.wait();
                round_trip(port, &data) == data
            })
        })
        .collect();
    let echoed = clients
        .into_iter()
        // A connection the listener dropped panics its thread (reset) or echoes nothing.
        .map(|c| c.join().unwrap_or(false))
        .filter(|ok| *ok)
        .count();
    assert_eq!(
        echoed, BURST,
        "only {echoed} of {BURST} connections were echoed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    dev.stop();
}

#[test]
fn stdio_pipes_are_blocking_again_for_the_next_process() {
    let dev = Dev::start(&[]);
    let data = payload(4 << 20);
    let (stdin_read, stdin_write) = std::io::pipe().unwrap();
    let (stdout_read, stdout_write) = std::io::pipe().unwrap();
    // Our own descriptors on the same open file descriptions as the child's stdin/stdout.
    let shared_stdin = stdin_read.try_clone().unwrap();
    let later_writer = stdout_write.try_clone().unwrap();
    let mut stdio = dev
        .cli()
        .args(["connect", "echo", "--stdio"])
        .stdin(stdin_read)
        .stdout(stdout_write)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let mut stdin_write = stdin_write;
        stdin_write.write_all(&sent).unwrap();
    });
    let mut stdout_read = stdout_read;
    let mut back = vec![0u8; data.len()];
    stdout_read.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "stdio payload differs");
    let status = stdio.wait().unwrap();
    assert!(status.success(), "{status}");

    let non_blocking = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::fs::fcntl_getfl(fd)
            .unwrap()
            .contains(rustix::fs::OFlags::NONBLOCK)
    };
    use std::os::fd::AsFd as _;
    assert!(
        !non_blocking(shared_stdin.as_fd()),
        "stdin left non-blocking"
    );
    assert!(
        !non_blocking(later_writer.as_fd()),
        "stdout left non-blocking"
    );
    // The next writer on that stdout, and nothing more from portcullis.
    let mut later_writer = later_writer;
    later_writer.write_all(b"<after>").unwrap();
    drop(later_writer);
    let mut rest = Vec::new();
    stdout_read.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"<after>");
}

/// A reader of stdout that goes away ends the connection, with an error naming stdout,
/// even while stdin stays open.
#[test]
fn stdio_ends_with_an_error_when_stdout_goes_away() {
    let dev = Dev::start(&[]);
    let (stdout_read, stdout_write) = std::io::pipe().unwrap();
    drop(stdout_read);
    let mut stdio = dev
        .cli()
        .args(["connect", "echo", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(stdout_write)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = stdio.stdin.take().unwrap();
    // Fails once the process has gone; stdin is never closed before that.
    let _ = stdin.write_all(&payload(1 << 20));
    let status = poll(
        "the CLI to exit with its stdout gone",
        Duration::from_secs(20),
        || stdio.try_wait().unwrap().ok_or("still running"),
    );
    drop(stdin);
    let mut stderr = String::new();
    stdio
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
}

#[test]
fn cancel_closes_a_live_connection_within_one_second() {
    let dev = Dev::start(&[]);
    let (mut child, port, session_id) = listen(&dev, "echo");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    let admin = dev.var("PORTCULLIS_TOKEN");
    let started = Instant::now();
    let out = dev
        .cli()
        .args(["sessions", "cancel", &session_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "connection closed after {elapsed:?}"
    );
    let s = session(&dev, &session_id);
    assert_eq!(s["state"], "terminated");
    assert_eq!(s["termination_reason"], "canceled");
    let (code, _) = curl(
        &dev,
        "GET",
        &format!("/v1/sessions/{session_id}"),
        Some(&admin),
        None,
    );
    assert_eq!(code, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_connection_limit_refuses_the_next_connection() {
    let dev = Dev::start(&[]);
    create_echo_target(
        &dev,
        serde_json::json!({"name": "once", "connection_limit": 1}),
    );
    let (mut child, port, session_id) = listen(&dev, "once");
    assert_eq!(round_trip(port, b"first"), b"first");
    // The second connection is refused by the worker: the local side is closed (or reset),
    // promptly, with nothing from the target.
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(b"second");
    let mut back = Vec::new();
    match stream.read_to_end(&mut back) {
        Ok(_) => assert!(back.is_empty(), "second connection got {back:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        started.elapsed()
    );
    let s = session(&dev, &session_id);
    assert_eq!(s["connections"].as_array().map(|c| c.len()), Some(1), "{s}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn max_duration_closes_live_connections_at_expiry() {
    let dev = Dev::start(&[]);
    create_echo_target(
        &dev,
        serde_json::json!({"name": "brief", "max_session_secs": 2}),
    );
    let (mut child, port, session_id) = listen(&dev, "brief");
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let lived = started.elapsed();
    assert!(
        lived < Duration::from_secs(4),
        "connection outlived its session: {lived:?}"
    );
    wait_for("the session to expire", Duration::from_secs(5), || {
        let s = session(&dev, &session_id);
        s["state"] == "terminated" && s["termination_reason"] == "expired"
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn listen_unix_is_private_and_exec_returns_the_command_exit_code() {
    use std::os::unix::fs::PermissionsExt as _;
    let dev = Dev::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("echo.sock");
    let mut child = dev
        .cli()
        .args(["connect", "echo", "--listen-unix"])
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"over unix").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"over unix");
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "socket left behind");

    // --exec substitutes {host} and {port}, ends the session when the command exits, and
    // returns its exit code.
    let script = "exec 3<>/dev/tcp/$0/$1; printf ping >&3; read -n4 -t5 reply <&3; [ \"$reply\" = ping ] && exit 7";
    let out = dev
        .cli()
        .args([
            "connect", "echo", "--exec", "bash", "--", "-c", script, "{host}", "{port}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
