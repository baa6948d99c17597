//! Reading a secret on the terminal: echo off (the newline still echoed) for one read, and
//! the terminal's mode restored whatever the read did.

use anyhow::Context as _;

/// Runs `read` with the terminal on stdin not echoing what is typed.
pub(crate) fn without_echo<T>(read: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's mode")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    quiet
        .local_modes
        .insert(rustix::termios::LocalModes::ECHONL);
    rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
        .context("cannot turn the terminal's echo off")?;
    let read = read();
    // Echo back on whatever the read did.
    let restored =
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
    let value = read?;
    restored.context("cannot turn the terminal's echo back on")?;
    Ok(value)
}
