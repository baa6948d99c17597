//! `connect` inside a `portcullis run` (`PORTCULLIS_RUN_SOCKET` set): sessions come from the
//! run through its socket, never from the API (the command holds no token). `--stdio` is a
//! new session's connection, or one more connection of a session the run opened for
//! `ssh-prepare` (`--session-file`, as ssh's ProxyCommand does); the listener modes are
//! [`super::run_listen`]'s. `connect ssh|http|rdp|postgres` are refused.

use std::path::Path;

use anyhow::bail;
use portcullis_proto::clock::{Clock as _, SystemClock};

use super::args::{ConnectArgs, ConnectKind};
use super::session_file::{read_joinable, Joinable};
use super::signals::Signals;
use super::stdio;
use crate::cli::run::protocol::{self, Ask};

/// What a `connect` under a run may do: `--stdio` (with or without `--session-file`), or a
/// local listener ([`super::run_listen`]): a Proxmox API target's default socket,
/// `--socket`, `--listen-unix`, `--listen-port` on loopback, `--exec`.
pub(super) fn check(args: &ConnectArgs) -> anyhow::Result<()> {
    let kind = match &args.kind {
        Some(ConnectKind::Ssh(_)) => Some("connect ssh"),
        Some(ConnectKind::Http(_)) => Some("connect http"),
        Some(ConnectKind::Rdp(_)) => Some("connect rdp"),
        Some(ConnectKind::Postgres(_)) => Some("connect postgres"),
        None => None,
    };
    if let Some(kind) = kind {
        bail!(refusal(kind));
    }
    let unavailable = if args.write_session_file.is_some() {
        Some("--write-session-file")
    } else if args.listen_addr.is_some() || !args.allow.is_empty() {
        Some("--listen-addr")
    } else if args.ssh_key.is_some() {
        Some("--ssh-key")
    } else if !args.env.is_empty() {
        Some("--env")
    } else {
        None
    };
    if let Some(flag) = unavailable {
        bail!(refusal(flag));
    }
    if args.stdio && (args.listen_port.is_some() || args.exec.is_some()) {
        bail!("--stdio carries one connection: leave out --listen-port and --exec");
    }
    Ok(())
}

fn refusal(what: &str) -> String {
    format!(
        "inside `portcullis run` (PORTCULLIS_RUN_SOCKET is set), {what} is not available: \
         sessions come from the run, through `portcullis connect TARGET` with --stdio, \
         --listen-port, --listen-unix or --exec (a Proxmox API target's socket by default), \
         or ssh through the `portcullis ssh-config` block"
    )
}

/// `connect TARGET --stdio [--session-file PATH]` through the run at `socket`.
pub(super) async fn stdio(
    socket: &Path,
    args: &ConnectArgs,
    target: &str,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    let ask = match &args.session_file {
        Some(path) => match read_joinable(path, SystemClock.unix_secs())? {
            Joinable::Run(run) => Ask::Join {
                session_id: run.session_id,
            },
            Joinable::Direct(file) => bail!(
                "{} holds session {}, opened outside this `portcullis run`: inside a run, \
                 sessions come from the run (run `portcullis ssh-prepare` again, or let ssh's \
                 block do it)",
                path.display(),
                file.session_id
            ),
        },
        None => Ask::Connect {
            target: target.to_owned(),
        },
    };
    let (_, stream) = protocol::ask(socket, &ask).await?;
    tokio::select! {
        result = stdio::carry_stdio_on(stream) => result.map(|_| 0),
        caught = signals.recv() => Ok(caught.exit_code()),
    }
}
