//! Client-side helpers shared by the tests: a `connect --listen-port` session, connections
//! through it, and how long a connection stays open.
//!
//! A connection the worker refuses looks, from the local side, like any other failure: the
//! CLI closes it. What tells them apart is the line the CLI prints for it on stderr,
//! `connection from ADDR: worker refused the connection: REASON (CODE)`; so every listener's
//! stderr is kept (and echoed into the test's output), and [`outcome`] reads the line of its
//! own connection.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_proto::proxy::RefusalCode;

/// A `portcullis connect TARGET --listen-port 0 --json` process, killed at drop.
pub(crate) struct Listener {
    pub child: Child,
    pub port: u16,
    pub session_id: String,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut logs) = logs().lock() {
            logs.remove(&self.port);
        }
    }
}

/// The stderr lines of a listener's CLI so far.
type Log = Arc<Mutex<Vec<String>>>;

/// Every live listener's stderr, by its local port: [`outcome`] and [`refused`] take the
/// port alone, as the tests hold it.
fn logs() -> &'static Mutex<HashMap<u16, Log>> {
    static LOGS: OnceLock<Mutex<HashMap<u16, Log>>> = OnceLock::new();
    LOGS.get_or_init(Mutex::default)
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Runs `connect TARGET --listen-port 0 --json` with `cli` (a `portcullis` command carrying
/// the controller's environment) and waits for its listening line.
pub(crate) fn listen(mut cli: Command, target: &str) -> Listener {
    let mut child = cli
        .args(["connect", target, "--listen-port", "0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::default();
    let (sink, stderr) = (log.clone(), child.stderr.take().unwrap());
    // The CLI's stderr goes to the test's captured output too, shown when a test fails.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[connect] {line}");
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`connect {target}` printed no listening line ({e}: {line:?}); its stderr:\n{}",
            lines(&log).join("\n")
        )
    });
    let port = v["port"].as_u64().unwrap() as u16;
    logs().lock().unwrap().insert(port, log);
    Listener {
        child,
        port,
        session_id: v["session_id"].as_str().unwrap().to_owned(),
    }
}

/// Opens a connection and checks it echoes.
pub(crate) fn open_echo(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    s
}

/// What became of one new connection through a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The target echoed what was sent.
    Echoed,
    /// The worker refused the connection with this code (the CLI printed it).
    Refused(RefusalCode),
}

/// Opens one connection through the listener on `port` (one made by [`listen`]), sends
/// `ping` and says what became of it.
///
/// # Panics
///
/// On anything but an echo or the worker's refusal: nothing listening (the CLI exited), a
/// connection neither answered nor closed within 10 s, or one the CLI closed for another
/// reason (the worker unreachable, a TLS failure), quoting the CLI's stderr.
pub(crate) fn outcome(port: u16) -> Outcome {
    let log = logs()
        .lock()
        .unwrap()
        .get(&port)
        .cloned()
        .unwrap_or_else(|| panic!("port {port} is not a listener made by client::listen"));
    let stderr = || lines(&log).join("\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| {
        panic!(
            "nothing accepts on 127.0.0.1:{port} ({e}): has `connect` exited? its stderr:\n{}",
            stderr()
        )
    });
    let local = s.local_addr().unwrap().to_string();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"ping");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) if buf == b"ping" => return Outcome::Echoed,
        Ok(_) if !buf.is_empty() => panic!("the target answered {buf:?} to ping"),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!(
                "a connection through 127.0.0.1:{port} was neither answered nor closed in 10 s; \
                 stderr of `connect`:\n{}",
                stderr()
            )
        }
        // Closed or reset with no answer: the CLI says why, on the line for this connection
        // (written before it closes the connection, read here a moment later).
        _ => {}
    }
    let prefix = format!("connection from {local}: ");
    let line = super::wait::poll(
        &format!(
            "the line of `connect` saying why the connection from {local} closed without an \
             echo (none comes when the worker admitted it and then ended it)"
        ),
        Duration::from_secs(5),
        || {
            lines(&log)
                .into_iter()
                .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                .ok_or_else(stderr)
        },
    );
    match refusal_code(&line) {
        Some(code) => Outcome::Refused(code),
        None => panic!("the connection from {local} failed, but not by a refusal: {line}"),
    }
}

/// The code of a refusal line, `worker refused the connection: REASON (CODE)`.
fn refusal_code(line: &str) -> Option<RefusalCode> {
    let reason = line.strip_prefix("worker refused the connection: ")?;
    let code = reason.strip_suffix(')')?.rsplit_once('(')?.1;
    serde_json::from_value(serde_json::Value::String(code.to_owned())).ok()
}

/// True when the worker refuses a new connection through the listener (with any code), false
/// when the connection echoes; panics on anything else (see [`outcome`]).
pub(crate) fn refused(port: u16) -> bool {
    matches!(outcome(port), Outcome::Refused(_))
}

/// Waits until a new connection through the listener on `port` is refused with `code`;
/// connections that still echo meanwhile are fine, another refusal is not.
///
/// # Panics
///
/// When `limit` passes first, or on another refusal or failure.
pub(crate) fn wait_for_refusal(what: &str, port: u16, code: RefusalCode, limit: Duration) {
    super::wait::poll(what, limit, || match outcome(port) {
        Outcome::Refused(c) if c == code => Ok(()),
        Outcome::Refused(other) => panic!("{what}: refused with {other:?}, not {code:?}"),
        Outcome::Echoed => Err("the connection echoed"),
    });
}

/// Waits until a live connection is closed by the other end.
pub(crate) fn closes_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
        assert!(
            start.elapsed() < limit,
            "connection still open after {limit:?}"
        );
    }
}
