//! What one `portcullis connect` does with its session: the [`Mode`] chosen from the flags,
//! and the driver of each mode (serve a local listener, hold the session for a hand-off file,
//! carry stdin/stdout, run a command, or join another process's session), which reports why
//! it stopped and whether the session still needs cancelling.

use portcullis_proto::clock::{Clock as _, SystemClock};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use portcullis_proto::api::CancelReason;
use tracing::Instrument as _;

use super::announce::announce_hold;
use super::args::ConnectArgs;
use super::exec::{self, ExecCommand};
use super::listen::{self, LocalListener, Stop};
use super::listen_addr::ListenOn;
use super::pve;
use super::serve;
use super::session_file::{read_session_file, HandoffFile};
use super::signals::Signals;
use super::source::{About, Source};
use super::ssh_login::SshLogin;
use super::stdio;
use super::tls::ClientIdentity;
use super::tunnel::{SessionTicket, TicketParts};
use super::watch;
use crate::cli::http::ApiClient;
use crate::cli::{exit, output};

/// What this invocation does with its session.
#[derive(Debug)]
pub(super) enum Mode {
    Listen(LocalListener),
    Stdio,
    JoinStdio(PathBuf),
    /// The command, and the listener it is given (`--listen-port`, else a free port).
    Exec(ExecCommand, LocalListener),
    /// Only `--write-session-file`: hold the session open.
    Hold,
}

impl Mode {
    /// Chooses the mode; binds a listener now, so a busy port fails before a session exists.
    /// With no way of connecting named, this is a Proxmox API target's default socket
    /// (the caller checked the target first: [`super::pve::check_target`]).
    pub(super) async fn prepare(args: &ConnectArgs, target: &str) -> anyhow::Result<Self> {
        if !args.args.is_empty() && args.exec.is_none() {
            bail!("arguments after `--` are for --exec CMD");
        }
        if let Some(program) = &args.exec {
            let command = exec_command(program, &args.args)?;
            command.check()?;
            let listener = LocalListener::tcp(args.listen_port.unwrap_or(0)).await?;
            return Ok(Self::Exec(command, listener));
        }
        if let Some(port) = args.listen_port {
            let on = ListenOn::from_flags(args.listen_addr, &args.allow)?;
            return Ok(Self::Listen(LocalListener::tcp_on(on, port).await?));
        }
        if let Some(path) = &args.listen_unix {
            return Ok(Self::Listen(LocalListener::unix(path)?));
        }
        if let Some(path) = &args.socket {
            return Ok(Self::Listen(LocalListener::unix(path)?));
        }
        if args.stdio {
            return Ok(match &args.session_file {
                Some(path) => Self::JoinStdio(path.clone()),
                None => Self::Stdio,
            });
        }
        if args.write_session_file.is_some() {
            return Ok(Self::Hold);
        }
        let dir = pve::runtime_dir_from_env()?;
        let path = pve::default_socket(&dir, target)?;
        Ok(Self::Listen(LocalListener::unix(&path)?))
    }

    /// The TCP listener of this mode, if it has one (which serves HTTPS for a Proxmox API
    /// session).
    pub(super) fn tcp_port(&self) -> Option<u16> {
        match self {
            Self::Listen(listener) | Self::Exec(_, listener) => listener.port(),
            _ => None,
        }
    }

    /// The same mode, its TCP listener now terminating TLS with `acceptor`.
    pub(super) fn with_tls(self, acceptor: tokio_rustls::TlsAcceptor) -> anyhow::Result<Self> {
        Ok(match self {
            Self::Listen(listener) => Self::Listen(listener.with_tls(acceptor)?),
            Self::Exec(command, listener) => Self::Exec(command, listener.with_tls(acceptor)?),
            other => other,
        })
    }
}

/// Whether `args` ask for a Proxmox API target's socket: `--socket`, or no way of
/// connecting at all (the default for such a target).
pub(super) fn wants_proxmox_socket(args: &ConnectArgs) -> bool {
    args.socket.is_some()
        || (args.listen_port.is_none()
            && args.listen_unix.is_none()
            && !args.stdio
            && args.exec.is_none()
            && args.write_session_file.is_none())
}

/// `--exec CMD -- ARGS` or `--exec -- CMD ARGS`.
fn exec_command(program: &str, args: &[String]) -> anyhow::Result<ExecCommand> {
    if !program.is_empty() {
        return Ok(ExecCommand {
            program: program.to_owned(),
            args: args.to_vec(),
        });
    }
    match args.split_first() {
        Some((program, args)) => Ok(ExecCommand {
            program: program.clone(),
            args: args.to_vec(),
        }),
        None => bail!("name the command to run: --exec -- CMD ARGS... (or --exec CMD -- ARGS...)"),
    }
}

/// How a mode ended: the exit code, whether our session still needs ending and why, and
/// whether the code is a command's own (which stands, whatever happens to the session).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ending {
    pub(super) code: i32,
    pub(super) cancel: Option<CancelReason>,
    pub(super) from_command: bool,
}

impl Ending {
    /// Stopped by a signal or a request: the session is cancelled.
    fn stopped(code: i32) -> Self {
        Self {
            code,
            cancel: Some(CancelReason::Canceled),
            from_command: false,
        }
    }

    /// The session is over already: nothing to end.
    fn over(code: i32) -> Self {
        Self {
            code,
            cancel: None,
            from_command: false,
        }
    }
}

/// What the listening line shows besides the session: the hand-off file, how to log in
/// with `--ssh-key`, and whether it is one JSON object.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shown<'a> {
    pub(super) handoff: Option<&'a HandoffFile>,
    pub(super) ssh: Option<&'a SshLogin>,
    /// A Proxmox API session: how it is served.
    pub(super) pve: Option<&'a pve::Served>,
    /// `--env`'s variables for the `--exec` command.
    pub(super) env: &'a exec::ChildEnv,
    pub(super) json: bool,
}

/// The session at the controller, which the modes that hold it open watch for its end.
pub(super) struct Watched<'a> {
    pub(super) api: &'a ApiClient,
    pub(super) token_expires_at: Option<u64>,
}

/// Runs the chosen mode for an authorised session.
pub(super) async fn drive(
    mode: Mode,
    ticket: Arc<SessionTicket>,
    shown: Shown<'_>,
    signals: &mut Signals,
    watched: Watched<'_>,
) -> anyhow::Result<Ending> {
    let ended = watch::until_ended(watched.api, &ticket.session_id, watched.token_expires_at);
    match mode {
        Mode::Listen(listener) => {
            serve::listener(
                listener,
                Source::Ticket(ticket.clone()),
                shown,
                signals,
                ended,
            )
            .await
        }
        Mode::Hold => {
            announce_hold(&ticket, shown)?;
            eprintln!("Press Ctrl-C to end the session.");
            let expiry = tokio::time::sleep(listen::until_unix(ticket.expires_at));
            let stopped = tokio::select! {
                caught = signals.recv() => Stop::Requested(caught.to_string()),
                () = expiry => Stop::Expired,
                why = ended => Stop::SessionEnded(why),
            };
            Ok(report_stop(&ticket, &stopped))
        }
        Mode::Stdio => {
            tokio::select! {
                result = stdio::carry_stdio(&ticket) => {
                    result?;
                    // The program on the other end finished: the session closed normally.
                    Ok(Ending { code: 0, cancel: Some(CancelReason::Closed), from_command: false })
                }
                caught = signals.recv() => {
                    eprintln!("{caught}: ending session {}", ticket.session_id);
                    Ok(Ending::stopped(caught.exit_code()))
                }
            }
        }
        Mode::Exec(command, listener) => {
            serve::exec(
                command,
                listener,
                Source::Ticket(ticket.clone()),
                shown,
                signals,
            )
            .await
        }
        Mode::JoinStdio(_) => bail!("internal: a joined session is not driven here"),
    }
}

/// The listening line of a Proxmox API session.
pub(super) fn announce_pve(
    ticket: &About,
    listener: &LocalListener,
    served: &pve::Served,
    json: bool,
) -> anyhow::Result<()> {
    let endpoint = match (listener, &served.https) {
        (LocalListener::Unix(_, file), _) => pve::Endpoint::Socket(file.path()),
        (LocalListener::Https(..), Some(https)) => pve::Endpoint::Https(https),
        _ => bail!("internal: a Proxmox API session's TCP listener without HTTPS"),
    };
    pve::announce(
        &ticket.session_id,
        &ticket.target,
        ticket.expires_at,
        served,
        endpoint,
        json,
    )
}

/// Prints why serving stopped and decides the exit code.
pub(super) fn report_stop(ticket: &SessionTicket, stopped: &Stop) -> Ending {
    stop_ending(&About::of(ticket), stopped)
}

/// [`report_stop`] for what a listener shows of its session.
pub(super) fn stop_ending(ticket: &About, stopped: &Stop) -> Ending {
    match stopped {
        Stop::Requested(why) => {
            eprintln!("{why}: ending session {}.", ticket.session_id);
            Ending::stopped(0)
        }
        Stop::Expired => {
            eprintln!(
                "Session {} expired at {}.",
                ticket.session_id,
                output::time(ticket.expires_at)
            );
            Ending::over(0)
        }
        Stop::SessionEnded(why) => {
            eprintln!("Session {} is over: {why}.", ticket.session_id);
            Ending::over(i32::from(exit::SESSION_ENDED))
        }
    }
}

/// `--stdio --session-file PATH`: one connection of a session another process owns.
pub(super) async fn join_stdio(
    target: &str,
    path: &Path,
    signals: &mut Signals,
) -> anyhow::Result<i32> {
    let file = read_session_file(path, SystemClock.unix_secs())?;
    if let Some(named) = &file.target {
        if named != target {
            tracing::debug!(file.target = %named, "the session file names another target");
        }
    }
    let identity = ClientIdentity::from_pem(&file.client_cert_pem, &file.client_key_pem)
        .with_context(|| format!("the session file {} is damaged", path.display()))?;
    let ticket = SessionTicket::new(
        TicketParts {
            session_id: file.session_id,
            target: file.target.unwrap_or_else(|| target.to_owned()),
            worker_addr: file.worker_addr,
            worker_key_fingerprint: file.worker_key_fingerprint,
            grant: file.grant,
            expires_at: file.expires_at,
        },
        &identity,
    )?;
    let span = tracing::info_span!("session", session.id = %ticket.session_id);
    tokio::select! {
        result = stdio::carry_stdio(&ticket).instrument(span) => result.map(|_| 0),
        caught = signals.recv() => Ok(caught.exit_code()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cli::connect::args::tests::parse;

    #[tokio::test]
    async fn modes_follow_the_flags() {
        let args = parse(&["web", "--stdio", "--", "x"]).unwrap();
        let err = Mode::prepare(&args, "web").await.unwrap_err().to_string();
        assert!(err.contains("--exec"), "{err}");
        let args = parse(&["web", "--write-session-file", "f"]).unwrap();
        assert!(matches!(
            Mode::prepare(&args, "web").await.unwrap(),
            Mode::Hold
        ));
        assert!(!wants_proxmox_socket(&args));
        // No way of connecting named: a Proxmox API target's default socket (checked first).
        assert!(wants_proxmox_socket(&parse(&["pve-1"]).unwrap()));
        assert!(wants_proxmox_socket(
            &parse(&["pve-1", "--socket", "s"]).unwrap()
        ));
        assert!(!wants_proxmox_socket(
            &parse(&["pve-1", "--listen-port", "0"]).unwrap()
        ));

        // --exec -- CMD ARGS, on the port --listen-port names.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let port_text = port.to_string();
        let args = parse(&[
            "pve-1",
            "--listen-port",
            &port_text,
            "--exec",
            "--",
            "curl",
            "-s",
        ])
        .unwrap();
        let mode = Mode::prepare(&args, "pve-1").await.unwrap();
        assert_eq!(mode.tcp_port(), Some(port));
        let Mode::Exec(command, _) = mode else {
            panic!("not exec");
        };
        assert_eq!(command.program, "curl");
        assert_eq!(command.args, ["-s"]);
        let args = parse(&["pve-1", "--exec", "--"]).unwrap();
        let err = Mode::prepare(&args, "pve-1").await.unwrap_err().to_string();
        assert!(err.contains("name the command"), "{err}");
    }

    #[tokio::test]
    async fn a_secret_on_the_command_line_is_refused_before_any_session() {
        // Mode::prepare runs before authorize-session: nothing is opened for a refused line.
        let args = parse(&["db", "--exec", "psql", "--", "password={{secret.password}}"]).unwrap();
        let err = Mode::prepare(&args, "db").await.unwrap_err().to_string();
        assert!(err.contains("--env PGPASSWORD="), "{err}");
        let args = parse(&["db", "--exec", "--", "{{secret.0.password}}"]).unwrap();
        assert!(Mode::prepare(&args, "db").await.is_err());
        // In the environment it is fine.
        let args = parse(&[
            "db",
            "--env",
            "PGPASSWORD={{secret.password}}",
            "--exec",
            "psql",
        ])
        .unwrap();
        assert_eq!(args.env[0].name, "PGPASSWORD");
        assert!(Mode::prepare(&args, "db").await.is_ok());
    }
}
