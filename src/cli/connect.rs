//! `portcullis connect TARGET`: authorise a session and carry connections through its worker.
//!
//! Per session the CLI makes an ephemeral Ed25519 key and self-signed certificate, sends the
//! public key with authorize-session, and receives the worker's address, the worker key to
//! pin, and a grant bound to our key. Each connection is then TLS 1.3 to the worker with
//! that key as client certificate, one handshake frame with the grant, and raw bytes.
//!
//! Sessions this process authorised are cancelled when it ends (Ctrl-C, SIGTERM, the
//! `--exec` command exiting, the `--stdio` connection closing); a session joined through
//! `--session-file` belongs to the process that wrote the file and is left alone.

mod exec;
mod listen;
pub mod session_file;
mod signals;
mod spare;
pub mod ssh;
mod stdio;
pub mod tls;
mod tunnel;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use portcullis_proto::api::{AuthorizeSession, SessionAuthorization};
use portcullis_proto::clock::{Clock as _, SystemClock};
use portcullis_proto::keys;
use tracing::Instrument as _;

use super::http::{segment, ApiClient, ClientArgs};
use super::output;
use exec::ExecCommand;
use listen::{LocalListener, Stop};
use session_file::{read_session_file, HandoffFile, SessionFile};
use signals::Signals;
use tls::ClientIdentity;
use tunnel::{SessionTicket, TicketParts};

/// How long cancelling our session on the way out may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

const EXAMPLES: &str = "\
Examples:
  # A local port for the session; every connection to it is brokered. Ctrl-C ends it.
  portcullis connect web --listen-port 2222
  ssh -p 2222 admin@127.0.0.1

  # The same on a 0600 Unix socket (a loopback port is open to every local user).
  portcullis connect pve --listen-unix ~/.portcullis/pve.sock

  # One connection over stdin/stdout, e.g. in ~/.ssh/config:
  #   ProxyCommand portcullis connect %h --stdio
  portcullis connect web --stdio

  # Run a command against a local listener; the session ends when it exits.
  portcullis connect web --exec ssh -- -p {port} admin@{host}
  portcullis connect pve --exec curl -- --cacert pve-ca.pem \\
      --connect-to pve.lan:8006:{host}:{port} https://pve.lan:8006/api2/json/version

  # For scripts: open a session, write a 0600 hand-off file, keep it open until Ctrl-C;
  # other processes join with --stdio --session-file.
  portcullis connect web --write-session-file /run/user/1000/web.session &
  portcullis connect web --stdio --session-file /run/user/1000/web.session

With --json, the listening line is one JSON object on stdout:
  {\"session_id\", \"target\", \"address\", \"port\" (or \"path\"), \"expires_at\" (unix seconds)}";

/// Open a brokered session to a target and carry connections through it.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
#[command(group(
    clap::ArgGroup::new("mode")
        .args(["listen_port", "listen_unix", "stdio", "exec"])
        .multiple(false)
))]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ConnectArgs {
    #[command(subcommand)]
    pub kind: Option<ConnectKind>,
    /// The target's id or name.
    #[arg(required = true)]
    pub target: Option<String>,
    /// Listen on 127.0.0.1:PORT (0 picks a free port and prints it).
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<u16>,
    /// Listen on a Unix socket created with mode 0600, removed at exit.
    #[arg(long, value_name = "PATH")]
    pub listen_unix: Option<PathBuf>,
    /// Carry one connection over stdin/stdout (ssh ProxyCommand).
    #[arg(long)]
    pub stdio: bool,
    /// With --stdio: join the session in this hand-off file instead of opening one.
    #[arg(long, value_name = "PATH", requires = "stdio")]
    pub session_file: Option<PathBuf>,
    /// Write a 0600 hand-off file for the session (removed at exit), so that
    /// `--stdio --session-file PATH` can join it; alone, keeps the session open until Ctrl-C.
    #[arg(long, value_name = "PATH", conflicts_with = "session_file")]
    pub write_session_file: Option<PathBuf>,
    /// Run CMD against a local listener, with `{host}` and `{port}` replaced in CMD and ARGS;
    /// the session ends when it exits, and its exit code is returned. Not run by a shell.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Arguments for --exec, after `--`.
    #[arg(last = true, value_name = "ARGS", requires = "exec")]
    pub args: Vec<String>,
    /// Print the listening line as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Protocol-aware ways to connect.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ConnectKind {
    /// Run OpenSSH through a brokered session with a short-lived certificate.
    Ssh(ssh::SshArgs),
}

/// What this invocation does with its session.
#[derive(Debug)]
enum Mode {
    Listen(LocalListener),
    Stdio,
    JoinStdio(PathBuf),
    Exec(ExecCommand),
    /// Only `--write-session-file`: hold the session open.
    Hold,
}

impl Mode {
    /// Chooses the mode; binds a listener now, so a busy port fails before a session exists.
    async fn prepare(args: &ConnectArgs) -> anyhow::Result<Self> {
        if !args.args.is_empty() && args.exec.is_none() {
            bail!("arguments after `--` are for --exec CMD");
        }
        if let Some(port) = args.listen_port {
            return Ok(Self::Listen(LocalListener::tcp(port).await?));
        }
        if let Some(path) = &args.listen_unix {
            return Ok(Self::Listen(LocalListener::unix(path)?));
        }
        if args.stdio {
            return Ok(match &args.session_file {
                Some(path) => Self::JoinStdio(path.clone()),
                None => Self::Stdio,
            });
        }
        if let Some(program) = &args.exec {
            return Ok(Self::Exec(ExecCommand {
                program: program.clone(),
                args: args.args.clone(),
            }));
        }
        if args.write_session_file.is_some() {
            return Ok(Self::Hold);
        }
        bail!(
            "say how to carry connections: --listen-port PORT, --listen-unix PATH, --stdio, \
             --exec CMD or --write-session-file PATH (see `portcullis connect --help`)"
        )
    }
}

/// How a mode ended: the exit code, and whether our session still needs cancelling.
#[derive(Debug, Clone, Copy)]
struct Ending {
    code: i32,
    cancel: bool,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    if let Some(ConnectKind::Ssh(ssh_args)) = args.kind {
        return ssh::run(ssh_args).await;
    }
    let target = args
        .target
        .clone()
        .context("name a target: portcullis connect TARGET ...")?;
    let mut signals = Signals::install()?;
    let mode = Mode::prepare(&args).await?;
    if let Mode::JoinStdio(path) = &mode {
        return join_stdio(&target, path, &mut signals).await;
    }

    let api = ApiClient::from_args(&args.client)?;
    let identity = ClientIdentity::generate()?;
    let authorization = tokio::select! {
        result = authorize(&api, &target, &identity, None) => result?,
        caught = signals.recv() => {
            eprintln!("{caught}: stopped before the session was open");
            return Ok(caught.exit_code());
        }
    };
    let handoff = match &args.write_session_file {
        Some(path) => Some(HandoffFile::write(
            path,
            &SessionFile {
                session_id: authorization.session_id.clone(),
                target: Some(target.clone()),
                worker_addr: authorization.worker_addr.clone(),
                worker_key_fingerprint: authorization.worker_key_fingerprint.clone(),
                grant: authorization.grant.clone(),
                expires_at: authorization.expires_at,
                client_cert_pem: identity.cert_pem(),
                client_key_pem: identity.key_pem(),
            },
        )?),
        None => None,
    };
    let ticket = Arc::new(SessionTicket::new(
        TicketParts {
            session_id: authorization.session_id.clone(),
            target: target.clone(),
            worker_addr: authorization.worker_addr.clone(),
            worker_key_fingerprint: authorization.worker_key_fingerprint.clone(),
            grant: authorization.grant.clone(),
            expires_at: authorization.expires_at,
        },
        &identity,
    )?);

    let span = tracing::info_span!("session", session.id = %ticket.session_id);
    let result = drive(
        mode,
        ticket.clone(),
        handoff.as_ref(),
        &mut signals,
        args.json,
    )
    .instrument(span)
    .await;
    let cancel = result.as_ref().map_or(true, |ending| ending.cancel);
    let cancelled = !cancel || cancel_session(&api, &ticket).await;
    drop(handoff);
    match result {
        Ok(ending) if !cancelled && ending.code == 0 => Ok(1),
        other => other.map(|ending| ending.code),
    }
}

/// Runs the chosen mode for an authorised session.
async fn drive(
    mode: Mode,
    ticket: Arc<SessionTicket>,
    handoff: Option<&HandoffFile>,
    signals: &mut Signals,
    json: bool,
) -> anyhow::Result<Ending> {
    match mode {
        Mode::Listen(listener) => {
            announce(&ticket, &listener, handoff, json)?;
            eprintln!("Press Ctrl-C to end the session.");
            let stop = async { signals.recv().await.to_string() };
            let stopped = listen::serve(listener, ticket.clone(), stop, true).await;
            Ok(report_stop(&ticket, &stopped))
        }
        Mode::Hold => {
            announce_hold(&ticket, handoff, json)?;
            eprintln!("Press Ctrl-C to end the session.");
            let expiry = tokio::time::sleep(listen::until_unix(ticket.expires_at));
            let stopped = tokio::select! {
                caught = signals.recv() => Stop::Requested(caught.to_string()),
                () = expiry => Stop::Expired,
            };
            Ok(report_stop(&ticket, &stopped))
        }
        Mode::Stdio => {
            tokio::select! {
                result = stdio::carry_stdio(&ticket) => {
                    result?;
                    Ok(Ending { code: 0, cancel: true })
                }
                caught = signals.recv() => {
                    eprintln!("{caught}: ending session {}", ticket.session_id);
                    Ok(Ending { code: caught.exit_code(), cancel: true })
                }
            }
        }
        Mode::Exec(command) => {
            let listener = LocalListener::tcp(0).await?;
            let port = listener
                .port()
                .context("the local listener for --exec has no port")?;
            eprintln!(
                "Session {} to {} on {}:{port} until {}; running {}.",
                ticket.session_id,
                ticket.target,
                exec::EXEC_HOST,
                output::time(ticket.expires_at),
                command.program
            );
            let serve_ticket = ticket.clone();
            let server = tokio::spawn(
                async move {
                    let stopped = listen::serve(
                        listener,
                        serve_ticket.clone(),
                        std::future::pending(),
                        false,
                    )
                    .await;
                    report_stop(&serve_ticket, &stopped);
                }
                .in_current_span(),
            );
            let code = exec::run_command(&command, port, &ticket.session_id, signals).await;
            server.abort();
            Ok(Ending {
                code: code?,
                cancel: true,
            })
        }
        Mode::JoinStdio(_) => bail!("internal: a joined session is not driven here"),
    }
}

/// Prints why serving stopped and decides the exit code.
fn report_stop(ticket: &SessionTicket, stopped: &Stop) -> Ending {
    match stopped {
        Stop::Requested(why) => {
            eprintln!("{why}: ending session {}.", ticket.session_id);
            Ending {
                code: 0,
                cancel: true,
            }
        }
        Stop::Expired => {
            eprintln!(
                "Session {} expired at {}.",
                ticket.session_id,
                output::time(ticket.expires_at)
            );
            Ending {
                code: 0,
                cancel: false,
            }
        }
        Stop::SessionEnded(why) => {
            eprintln!("Session {} is over: {why}.", ticket.session_id);
            Ending {
                code: 1,
                cancel: false,
            }
        }
    }
}

/// `POST /v1/targets/{target}/authorize-session` with this session's public key.
async fn authorize(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: Option<String>,
) -> anyhow::Result<SessionAuthorization> {
    let body = AuthorizeSession {
        client_public_key: keys::b64(&identity.public_key_der()?),
        ssh_public_key,
    };
    api.post(
        &format!("/v1/targets/{}/authorize-session", segment(target)?),
        &body,
    )
    .await
    .with_context(|| format!("cannot open a session to {target}"))
}

/// Authorises a session that also certifies an SSH public key (for `ssh-prepare`).
pub(crate) async fn authorize_for_ssh(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: String,
) -> anyhow::Result<SessionAuthorization> {
    authorize(api, target, identity, Some(ssh_public_key)).await
}

/// Cancels our session; on failure says so and returns false.
async fn cancel_session(api: &ApiClient, ticket: &SessionTicket) -> bool {
    let id = &ticket.session_id;
    let outcome = tokio::time::timeout(CANCEL_TIMEOUT, super::sessions::cancel(api, id)).await;
    let err = match outcome {
        Ok(Ok(_)) => return true,
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => "the controller did not answer in time".to_owned(),
    };
    eprintln!(
        "warning: could not cancel session {id}: {err}; it ends on its own at {} \
         (or run `portcullis sessions cancel {id}`)",
        output::time(ticket.expires_at)
    );
    false
}

/// `--stdio --session-file PATH`: one connection of a session another process owns.
async fn join_stdio(target: &str, path: &Path, signals: &mut Signals) -> anyhow::Result<i32> {
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

fn announce(
    ticket: &SessionTicket,
    listener: &LocalListener,
    handoff: Option<&HandoffFile>,
    json: bool,
) -> anyhow::Result<()> {
    let (address, port, path) = match listener {
        LocalListener::Tcp(_) => ("127.0.0.1".to_owned(), listener.port(), None),
        LocalListener::Unix(_, file) => {
            let shown = file.path().display().to_string();
            (shown.clone(), None, Some(shown))
        }
    };
    if json {
        let mut line = serde_json::json!({
            "session_id": ticket.session_id,
            "target": ticket.target,
            "address": address,
            "expires_at": ticket.expires_at,
        });
        if let Some(port) = port {
            line["port"] = port.into();
        }
        if let Some(path) = path {
            line["path"] = path.into();
        }
        if let Some(file) = handoff {
            line["session_file"] = file.path().display().to_string().into();
        }
        return output::print_json_line(&line);
    }
    let shown = match port {
        Some(port) => format!("{address}:{port}"),
        None => address,
    };
    let mut text = format!(
        "Listening on {shown} for session {} to {}, expires at {}.\n",
        ticket.session_id,
        ticket.target,
        output::time(ticket.expires_at)
    );
    if let Some(file) = handoff {
        text.push_str(&format!(
            "Session hand-off file: {}\n",
            file.path().display()
        ));
    }
    output::write_stdout(&text)
}

fn announce_hold(
    ticket: &SessionTicket,
    handoff: Option<&HandoffFile>,
    json: bool,
) -> anyhow::Result<()> {
    let file = handoff
        .map(|f| f.path().display().to_string())
        .unwrap_or_default();
    if json {
        return output::print_json_line(&serde_json::json!({
            "session_id": ticket.session_id,
            "target": ticket.target,
            "session_file": file,
            "expires_at": ticket.expires_at,
        }));
    }
    output::write_stdout(&format!(
        "Session {} to {} is open until {}; hand-off file {file}.\n",
        ticket.session_id,
        ticket.target,
        output::time(ticket.expires_at)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: ConnectArgs,
    }

    fn parse(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("connect").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn modes_are_exclusive_and_exec_takes_trailing_args() {
        let args = parse(&["web", "--exec", "ssh", "--", "-p", "{port}", "u@{host}"]).unwrap();
        assert_eq!(args.exec.as_deref(), Some("ssh"));
        assert_eq!(args.args, ["-p", "{port}", "u@{host}"]);
        assert!(parse(&["web", "--stdio", "--listen-port", "0"]).is_err());
        assert!(parse(&["web", "--listen-port", "0", "--exec", "x"]).is_err());
        assert!(
            parse(&["web", "--session-file", "f"]).is_err(),
            "needs --stdio"
        );
        assert!(parse(&["web", "--stdio", "--session-file", "f"]).is_ok());
        assert!(parse(&["web", "--listen-port", "0", "--write-session-file", "f"]).is_ok());
    }

    #[tokio::test]
    async fn a_mode_is_required() {
        let args = parse(&["web"]).unwrap();
        let err = Mode::prepare(&args).await.unwrap_err().to_string();
        assert!(err.contains("--listen-port"), "{err}");
        let args = parse(&["web", "--stdio", "--", "x"]).unwrap();
        let err = Mode::prepare(&args).await.unwrap_err().to_string();
        assert!(err.contains("--exec"), "{err}");
        let args = parse(&["web", "--write-session-file", "f"]).unwrap();
        assert!(matches!(Mode::prepare(&args).await.unwrap(), Mode::Hold));
    }
}
