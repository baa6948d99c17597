//! Client-side helpers shared by the tests: a `connect --listen-port` session, connections
//! through it, and how long a connection stays open.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    }
}

/// Runs `connect TARGET --listen-port 0 --json` with `cli` (a `portcullis` command carrying
/// the controller's environment) and waits for its listening line.
pub(crate) fn listen(mut cli: Command, target: &str) -> Listener {
    let mut child = cli
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
    Listener {
        child,
        port: v["port"].as_u64().unwrap() as u16,
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

/// True when a new connection through the listener is refused (closed or reset, no echo).
pub(crate) fn refused(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"ping");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => buf.is_empty(),
        Err(e) => {
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut
        }
    }
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
