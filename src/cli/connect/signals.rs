//! The signals that end a `connect`: SIGINT (Ctrl-C), SIGTERM and SIGHUP. Once installed
//! they no longer kill the process, so every mode can cancel its session on the way out.

use std::fmt;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals that end a connect: SIGINT (Ctrl-C), SIGTERM and SIGHUP.
pub(crate) struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

/// A signal [`Signals`] caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caught {
    Interrupt,
    Terminate,
    Hangup,
}

impl Caught {
    /// The shell's convention: 128 + the signal number.
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            Caught::Interrupt => 130,
            Caught::Terminate => 143,
            Caught::Hangup => 129,
        }
    }
}

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Caught::Interrupt => "interrupted",
            Caught::Terminate => "terminated",
            Caught::Hangup => "hung up",
        })
    }
}

impl Signals {
    /// Takes over the signals' default action (exit) from now on.
    pub(crate) fn install() -> anyhow::Result<Self> {
        let install = |kind| signal(kind).context("cannot install a signal handler");
        Ok(Self {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    pub(crate) async fn recv(&mut self) -> Caught {
        tokio::select! {
            _ = self.interrupt.recv() => Caught::Interrupt,
            _ = self.terminate.recv() => Caught::Terminate,
            _ = self.hangup.recv() => Caught::Hangup,
        }
    }
}
