//! Ports for peers that cannot bind port 0 and report the port they got: sshd, PostgreSQL,
//! OpenBao, rsyslogd, and a `portcullis dev` whose API port must be known before it starts
//! (an OpenID redirect URL names it). Our own daemons otherwise bind port 0 and print the
//! address in their readiness line (`cluster::spawn_ready`); that is always the first choice.
//!
//! A port found free can be taken by another process before the peer binds it. So the peer is
//! started on a picked port, and when the start collides (the peer says the address is in
//! use, or exits before it is up), it is started again on another port, a bounded number of
//! times.

use std::fmt::Display;

/// How many ports a peer is tried on before the test fails.
pub(crate) const ATTEMPTS: usize = 5;

/// What starting a peer on one port came to.
pub(crate) enum Start<T> {
    /// The peer is up on the port.
    Up(T),
    /// The port was taken: what the peer said.
    Collided(String),
}

/// A port no one listens on right now (it may be taken again before it is used).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Starts `what` with `start` on a free port, again on another after a collision.
///
/// # Panics
///
/// When every one of [`ATTEMPTS`] starts collided, with what each said.
pub(crate) fn start_on_free_port<T>(what: &str, start: impl FnMut(u16) -> Start<T>) -> T {
    start_on_ports(what, free_port, start)
}

/// [`start_on_free_port`] with the ports chosen by `pick` (a test chooses them to collide).
pub(crate) fn start_on_ports<T>(
    what: &str,
    mut pick: impl FnMut() -> u16,
    mut start: impl FnMut(u16) -> Start<T>,
) -> T {
    let mut tried = Vec::new();
    for _ in 0..ATTEMPTS {
        let port = pick();
        match start(port) {
            Start::Up(peer) => return peer,
            Start::Collided(said) => {
                eprintln!("{what} did not start on port {port}; trying another: {said}");
                tried.push(format!("port {port}: {said}"));
            }
        }
    }
    panic!(
        "{what} did not start on any of {ATTEMPTS} ports:\n{}",
        tried.join("\n")
    )
}

/// Whether a peer's output says the port it was to listen on was taken.
pub(crate) fn says_address_in_use(output: &str) -> bool {
    let output = output.to_ascii_lowercase();
    output.contains("address already in use") || output.contains("eaddrinuse")
}

/// [`Start::Collided`] when `output` says the address was in use; any other failure is not
/// a collision and fails the test at once, with `what` and the output.
pub(crate) fn collided_or_panic<T>(what: impl Display, output: String) -> Start<T> {
    if says_address_in_use(&output) {
        Start::Collided(output)
    } else {
        panic!("{what}:\n{output}")
    }
}
