//! The run's command: its environment (the run socket, and none of Portcullis's secrets),
//! how it is started, the signals passed on to it, and how its end is reported.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::ExitStatus;

use anyhow::Context as _;
use portcullis_proto::access::{FinishRun, RUN_SOCKET_ENV};
use rustix::process::{Pid, Signal};

use crate::cli::connect::signals::Caught;

/// The `PORTCULLIS_*` variables the command keeps: where the controller is, and logging.
/// Every other one (the token above all) is removed from its environment.
const KEPT: [&str; 5] = [
    "PORTCULLIS_ADDR",
    "PORTCULLIS_CA",
    "PORTCULLIS_PROFILE",
    "PORTCULLIS_LOG",
    "PORTCULLIS_LOG_FORMAT",
];

/// The variables of `names` to remove from the command's environment: every `PORTCULLIS_*`
/// but [`KEPT`] (`PORTCULLIS_TOKEN`, `PORTCULLIS_MASTER_KEY`, an outer run's socket, ...).
pub(crate) fn removed_vars<'a>(names: impl Iterator<Item = &'a OsStr>) -> Vec<OsString> {
    names
        .filter(|name| {
            let text = name.to_string_lossy();
            text.starts_with("PORTCULLIS_") && !KEPT.contains(&text.as_ref())
        })
        .map(OsStr::to_os_string)
        .collect()
}

/// The command's whole environment: this process's `vars` but the [`removed_vars`], and
/// `PORTCULLIS_RUN_SOCKET=socket`.
pub(crate) fn environment(
    vars: impl Iterator<Item = (OsString, OsString)>,
    socket: &Path,
) -> Vec<(OsString, OsString)> {
    let vars: Vec<(OsString, OsString)> = vars.collect();
    let removed = removed_vars(vars.iter().map(|(name, _)| name.as_os_str()));
    let mut env: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(name, _)| !removed.contains(name) && name != RUN_SOCKET_ENV)
        .collect();
    env.push((RUN_SOCKET_ENV.into(), socket.as_os_str().to_os_string()));
    env
}

/// The command `argv` with exactly `env` (see [`environment`]) and this process's stdio;
/// killed if the run process fails before it ends.
pub(crate) fn command(
    argv: &[String],
    env: Vec<(OsString, OsString)>,
) -> anyhow::Result<tokio::process::Command> {
    let (program, args) = argv
        .split_first()
        .context("name the command to run after `--`")?;
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_clear().envs(env).kill_on_drop(true);
    Ok(command)
}

/// The signal to pass on to the command for one the run caught, if any. A terminal's
/// Ctrl-C reaches the whole foreground process group, the command included, so it is not
/// sent twice (`interactive`: stdin is a terminal); a SIGINT sent to the run alone (`kill
/// -INT`, a CI runner) is.
pub(crate) fn forwarded(caught: Caught, interactive: bool) -> Option<Signal> {
    match caught {
        Caught::Interrupt if interactive => None,
        Caught::Interrupt => Some(Signal::INT),
        Caught::Terminate => Some(Signal::TERM),
        Caught::Hangup => Some(Signal::HUP),
    }
}

/// Sends `signal` to the command (if it is still there).
pub(crate) fn signal(child: &tokio::process::Child, signal: Signal) {
    let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    if let Err(err) = rustix::process::kill_process(pid, signal) {
        tracing::debug!(error = %err, "cannot signal the command");
    }
}

/// The run process's exit code for the command's end: its status, or 128 + the signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// What `run/finish` reports for the command's end.
pub(crate) fn finish(status: ExitStatus) -> FinishRun {
    FinishRun {
        exit_status: status.code(),
        signal: status.signal(),
    }
}

#[cfg(test)]
mod tests;
