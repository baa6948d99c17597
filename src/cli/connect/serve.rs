//! Serving a local listener for a session, whichever [`Source`] its connections come from
//! (this process's own session, or a `portcullis run`'s): `--listen-port`, `--listen-unix`,
//! a Proxmox API target's socket, and `--exec`'s command with its listener.

use anyhow::Context as _;
use portcullis_proto::api::CancelReason;
use tracing::Instrument as _;

use super::announce::announce;
use super::exec::{self, ExecCommand};
use super::listen::{self, LocalListener, Stop};
use super::mode::{announce_pve, stop_ending, Ending, Shown};
use super::pve;
use super::signals::Signals;
use super::source::Source;
use super::ssh_login::Reach;
use crate::cli::output;

/// Serves `listener` until a signal, the session's expiry, or `ended` (why the session
/// ended, once it has).
pub(super) async fn listener(
    listener: LocalListener,
    source: Source,
    shown: Shown<'_>,
    signals: &mut Signals,
    ended: impl std::future::Future<Output = String>,
) -> anyhow::Result<Ending> {
    let about = source.about();
    match shown.pve {
        Some(served) => announce_pve(&about, &listener, served, shown.json)?,
        None => announce(&about, &listener, shown)?,
    }
    eprintln!("Press Ctrl-C to end the session.");
    let stop = async { signals.recv().await.to_string() };
    let stopped = tokio::select! {
        stopped = listen::serve(listener, source, stop, true) => stopped,
        why = ended => Stop::SessionEnded(why),
    };
    Ok(stop_ending(&about, &stopped))
}

/// Runs `--exec`'s command with `listener` serving it; the command's status is ours.
pub(super) async fn exec(
    command: ExecCommand,
    listener: LocalListener,
    source: Source,
    shown: Shown<'_>,
    signals: &mut Signals,
) -> anyhow::Result<Ending> {
    let about = source.about();
    let port = listener
        .port()
        .context("the local listener for --exec has no port")?;
    let https = shown.pve.and_then(|served| served.https.as_ref());
    match (shown.pve, https) {
        (Some(served), Some(_)) => eprintln!(
            "Session {} to {} on https://{}:{port}/ until {}, acting as {}; running {}.",
            about.session_id,
            about.target,
            pve::HTTPS_HOST,
            output::time(about.expires_at),
            served.session.token_id,
            command.program
        ),
        _ => eprintln!(
            "Session {} to {} on {}:{port} until {}; running {}.",
            about.session_id,
            about.target,
            exec::EXEC_HOST,
            output::time(about.expires_at),
            command.program
        ),
    }
    let env = https
        .map(|h| h.env.clone())
        .unwrap_or_default()
        .merged(shown.env);
    let command = match shown.ssh {
        Some(login) => {
            eprint!("{}", login.text(Reach::Port(port))?);
            match login.known_hosts() {
                Some(path) => command.with_known_hosts(&path.display().to_string()),
                None => command,
            }
        }
        None => command,
    };
    let served_about = about.clone();
    let server = tokio::spawn(
        async move {
            let stopped = listen::serve(listener, source, std::future::pending(), false).await;
            stop_ending(&served_about, &stopped);
        }
        .in_current_span(),
    );
    let code = exec::run_command(&command, port, &about.session_id, &env, signals).await;
    server.abort();
    // Once the command ran, its status is ours, and its end closes the session.
    Ok(Ending {
        code: code?,
        cancel: Some(CancelReason::Closed),
        from_command: true,
    })
}
