//! `connect TARGET` in a listener mode inside a `portcullis run`: the same listeners as
//! outside a run ([`super::listen`], served by [`super::serve::listener`] and
//! [`super::serve::exec`]), but the session comes from the run. At start the listener
//! asks the run to open one session (`open`, with the SHA-256 of a TCP listener's local
//! secret; the secret stays in this process), and each local connection `join`s it. For a
//! Proxmox API target the listener serves as outside a run: the socket by default, HTTPS
//! with the local secret on `--listen-port`, the `PORTCULLIS_PVE_*`/`PROXMOX_*` variables
//! for `--exec`'s command; the Proxmox token stays with the worker.
//!
//! The session is the run's: the run ends it when the run ends (this process, which holds
//! no token, does not cancel it).

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;

use super::args::ConnectArgs;
use super::exec::ChildEnv;
use super::mode::{self, Mode, Shown};
use super::pve;
use super::serve;
use super::signals::Signals;
use super::source::{open_through_run, About, RunJoin, Source};

/// Serves `args`' listener for a session to `target` opened by the run at `socket`.
pub(super) async fn listen(
    socket: &Path,
    args: &ConnectArgs,
    target: &str,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    // Binds now, so a busy port or socket path fails before the run opens a session.
    let mode = Mode::prepare(args, target).await?;
    if !matches!(mode, Mode::Listen(_) | Mode::Exec(..)) {
        bail!("internal: not a listener mode under a run");
    }
    let secret = match mode.tcp_port() {
        Some(_) => Some(pve::LocalSecret::generate()?),
        None => None,
    };
    let secret_hash = secret.as_ref().map(pve::LocalSecret::sha256_hex);
    let opened = tokio::select! {
        result = open_through_run(socket, target, secret_hash) => result?,
        caught = signals.recv() => {
            eprintln!("{caught}: stopped before the session was open");
            return Ok(caught.exit_code());
        }
    };
    let served = match &opened.proxmox {
        Some(session) => {
            let listening = pve::Listening {
                port: mode.tcp_port(),
                env_file: matches!(mode, Mode::Listen(_)),
                secret: secret.as_ref(),
            };
            Some(pve::Served::prepare(
                session,
                target,
                listening,
                opened.expires_at,
            )?)
        }
        // The run ends the session it opened for nothing.
        None if mode::wants_proxmox_socket(args) => {
            bail!(pve::not_injecting(target, args.socket.is_some()))
        }
        None => None,
    };
    drop(secret); // Only the child's environment (or the 0600 file) holds it now.
    let mode = match served.as_ref().and_then(|s| s.https.as_ref()) {
        Some(https) => mode.with_tls(https.acceptor.clone())?,
        None => mode,
    };
    let source = Source::Run(Arc::new(RunJoin {
        socket: socket.to_path_buf(),
        about: About {
            session_id: opened.session_id,
            target: target.to_owned(),
            expires_at: opened.expires_at,
        },
    }));
    let env = ChildEnv::default();
    let shown = Shown {
        handoff: None,
        ssh: None,
        pve: served.as_ref(),
        env: &env,
        json: args.json,
    };
    let ending = match mode {
        Mode::Listen(listener) => {
            // A run that ends takes its sessions along: the next connection says so.
            let ended = std::future::pending();
            serve::listener(listener, source, shown, signals, ended).await?
        }
        Mode::Exec(command, listener) => {
            serve::exec(command, listener, source, shown, signals).await?
        }
        _ => bail!("internal: not a listener mode under a run"),
    };
    drop(served); // Removes the CA bundle and the environment file.
    Ok(ending.code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::cli::connect::args::tests::parse;
    use crate::cli::connect::run_socket::check;

    /// Under a run: stdio and the listener modes pass; what needs the API, a key or an
    /// exposed address is refused with the flag's name.
    #[test]
    fn the_listener_modes_pass_the_runs_check_and_the_rest_is_refused() {
        for ok in [
            &["pve-1"][..],
            &["pve-1", "--socket", "s"],
            &["pve-1", "--listen-unix", "s"],
            &["pve-1", "--listen-port", "0"],
            &["pve-1", "--exec", "curl"],
            &["pve-1", "--listen-port", "0", "--exec", "curl"],
            &["web", "--stdio"],
            &["web", "--stdio", "--session-file", "f"],
        ] {
            assert!(check(&parse(ok).unwrap()).is_ok(), "{ok:?}");
        }
        for (refused, named) in [
            (
                &["web", "--write-session-file", "f"][..],
                "--write-session-file",
            ),
            (
                &["web", "--listen-port", "0", "--listen-addr", "0.0.0.0"],
                "--listen-addr",
            ),
            (
                &["web", "--listen-port", "0", "--ssh-key", "k"],
                "--ssh-key",
            ),
            (&["db", "--env", "X={{port}}", "--exec", "psql"], "--env"),
            (&["ssh", "web"], "connect ssh"),
        ] {
            let err = check(&parse(refused).unwrap()).unwrap_err().to_string();
            assert!(
                err.contains(named) && err.contains("PORTCULLIS_RUN_SOCKET"),
                "{refused:?}: {err}"
            );
        }
    }
}
