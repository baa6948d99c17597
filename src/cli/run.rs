//! `portcullis run`: hold one approved access request for a command's lifetime (automation:
//! a playbook, a migration, a CI job).
//!
//! The run asks for the request (or takes `--request ID`), waits for its approval, makes an
//! Ed25519 key in memory and starts the run at the controller with its public half. The
//! command then runs with `PORTCULLIS_RUN_SOCKET` naming a unix socket in a fresh 0700
//! directory, and without the token: `connect --stdio`, `ssh-prepare` and the ssh-config
//! ProxyCommand ask the socket for sessions, which this process authorises with a proof by
//! the run's key and carries itself (`relay`), so no key, token or grant reaches the command.
//! Keepalives tell the controller the run is alive; when the command ends its sessions are
//! ended, the controller is told how (`run/finish`), and the run exits with its status.
//!
//! `protocol` is the socket's wire format (shared with the clients in `connect` and
//! `ssh_config`), `socket` the listener, `relay` one connection, `opener` the sessions,
//! `key` the run key, `child` the command, `keepalive` the schedule.

mod child;
mod keepalive;
mod key;
mod opener;
pub(crate) mod protocol;
mod relay;
mod socket;

use std::io::IsTerminal as _;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use portcullis_proto::access::{AccessRequest, CreateAccessRequest, RequestState, StartRun};

use super::connect::signals::Signals;
use super::http::{ApiClient, ApiError, ClientArgs};
use super::output;
use super::request::api::{self as requests, Decision};
use keepalive::{Verdict, MAX_KEEPALIVE_SECS};

/// Run a command holding an approved access request: its sessions open through the run.
///
/// The request is made for the role, targets and duration given (with the command line, for
/// the approvers and the audit), or named with --request. The run waits for its approval
/// (Ctrl-C while waiting revokes a request it made), then runs the command. Inside it,
/// `portcullis connect TARGET --stdio`, `connect TARGET`'s listeners (a Proxmox API target's
/// socket, --listen-unix, --listen-port, --exec) and ssh through `portcullis ssh-config`'s
/// block open sessions through the run, to the request's targets only; the command never holds the API
/// token or a session key (only ssh's own per-session key and certificate are written, under
/// the ssh-config state directory, 0600). SIGINT, SIGTERM and SIGHUP are passed on to the
/// command. When it ends, its sessions end and the run exits with its status (128 + N for
/// signal N). If the request is revoked or expires, the command gets SIGTERM.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  # On `portcullis dev`: its `echo-oncall` role allows break-glass (self-approval, audited as
  # break_glass); the command's session goes through the run.
  portcullis run --role echo-oncall --targets echo --for 5m --break-glass --reason \"try run\" -- \\
      sh -c 'echo hello | portcullis connect echo --stdio'

In a deployment (a requestable role, approved by one of its approvers):
  portcullis run --role web-oncall --targets web-01,web-02 --for 30m --reason \"deploy 1.4\" -- \\
      ansible-playbook -i inventory site.yml      # hosts as web-01.pc (portcullis ssh-config)
  portcullis run --role terraform --targets pve-1 --for 30m --reason \"apply\" -- \\
      portcullis connect pve-1 --exec -- terraform apply
  portcullis run --request ar_0123... -- ./migrate.sh")]
pub(crate) struct RunArgs {
    /// The requestable role to ask for.
    #[arg(long, required_unless_present = "request")]
    pub role: Option<String>,
    /// The targets (names or ids), separated by commas; the command reaches only these.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "request",
        value_name = "A,B"
    )]
    pub targets: Vec<String>,
    /// How long the access lasts once approved: 90s, 30m, 2h.
    #[arg(
        long = "for",
        value_name = "DURATION",
        value_parser = output::parse_duration_secs,
        required_unless_present = "request"
    )]
    pub duration: Option<u64>,
    /// Why (required when the role says so).
    #[arg(long)]
    pub reason: Option<String>,
    /// Approve it yourself, now, as the role's break-glass allows (a reason is required; the
    /// role's break-glass maximum applies; audited as `break_glass` and notified at once).
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Use this request (yours, for named targets, not yet run) instead of making one.
    #[arg(long, value_name = "ID", conflicts_with_all = ["role", "targets", "duration", "reason", "break_glass"])]
    pub request: Option<String>,
    /// Seconds between the run's keepalives (90s, 1m). The controller ends the run, and its
    /// sessions, after three missed; a shorter interval ends a killed run sooner.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_keepalive,
        default_value = "30s"
    )]
    pub keepalive: u64,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<i32> {
    if protocol::socket_from_env().is_some() {
        bail!("already inside a `portcullis run`: its command cannot start another run");
    }
    let api = ApiClient::from_args(&args.client)?;
    let mut signals = Signals::install()?;
    let (request, made) = match &args.request {
        Some(id) => (requests::get(&api, id).await?, false),
        None => (requests::create(&api, &create_body(&args)?).await?, true),
    };
    let request = match approved(&api, request, made, &mut signals).await? {
        Ok(request) => request,
        Err(code) => return Ok(code),
    };
    let targets = run_targets(&request)?;
    let key = key::RunKey::generate()?;
    let start = StartRun {
        run_public_key: key.public_spki_b64()?,
        keepalive_secs: args.keepalive,
    };
    requests::start_run(&api, &request.id, &start).await?;
    let socket = socket::RunSocket::bind(&socket::RunSocket::default_parent())?;
    let opener = Arc::new(opener::ApiOpener::new(api.clone(), request.id.clone(), key));
    let env = child::environment(std::env::vars_os(), &socket.path());
    let spawned = child::command(&args.command, env)
        .and_then(|mut command| command.spawn().context("cannot start the command"));
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            finish(&api, &request.id, None).await;
            return Err(err);
        }
    };
    eprintln!(
        "portcullis run: request {} approved until {}; running {}.",
        request.id,
        output::time(request.expires_at),
        args.command.join(" ")
    );
    let serve = socket.serve(Arc::new(targets), opener.clone());
    tokio::pin!(serve);
    let interactive = std::io::stdin().is_terminal();
    let mut failed = 0;
    let mut stopped = false;
    let tick = tokio::time::sleep(keepalive::next_delay(args.keepalive, 0));
    tokio::pin!(tick);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("cannot wait for the command")?,
            () = &mut serve => {}
            caught = signals.recv() => {
                if let Some(signal) = child::forwarded(caught, interactive) {
                    child::signal(&child, signal);
                }
            }
            () = &mut tick => {
                match keepalive_verdict(&api, &request.id).await {
                    Verdict::Alive => failed = 0,
                    Verdict::Retry => failed += 1,
                    Verdict::Over(why) => {
                        if !stopped {
                            eprintln!("portcullis run: {why}; stopping the command");
                            child::signal(&child, rustix::process::Signal::TERM);
                            stopped = true;
                        }
                    }
                }
                tick.as_mut().reset(
                    tokio::time::Instant::now() + keepalive::next_delay(args.keepalive, failed),
                );
            }
        }
    };
    opener.end_all().await;
    finish(&api, &request.id, Some(status)).await;
    // The socket and its directory go when `socket` drops, after `serve`.
    Ok(child::exit_code(status))
}

/// `--keepalive`: a duration of 1 s to [`MAX_KEEPALIVE_SECS`].
fn parse_keepalive(text: &str) -> Result<u64, String> {
    let secs = output::parse_duration_secs(text)?;
    if (1..=MAX_KEEPALIVE_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!(
            "a keepalive interval is 1s to {MAX_KEEPALIVE_SECS}s (the controller ends a run after three missed)"
        ))
    }
}

/// The request body for the flags.
fn create_body(args: &RunArgs) -> anyhow::Result<CreateAccessRequest> {
    Ok(CreateAccessRequest {
        role: args.role.clone().context("name the role: --role ROLE")?,
        targets: args.targets.clone(),
        zone: None,
        duration_secs: args.duration.context("say for how long: --for 30m")?,
        reason: args.reason.clone(),
        break_glass: args.break_glass,
        run_command: Some(args.command.clone()),
    })
}

/// Waits for the request's approval; `Err(code)` when Ctrl-C stopped the wait (revoking a
/// request the run made).
async fn approved(
    api: &ApiClient,
    request: AccessRequest,
    made: bool,
    signals: &mut Signals,
) -> anyhow::Result<Result<AccessRequest, i32>> {
    let request = if request.state == RequestState::Pending {
        let ctrl_c = if made {
            "Ctrl-C revokes it."
        } else {
            "Ctrl-C stops waiting."
        };
        eprintln!("{} {ctrl_c}", super::request::render::waiting(&request));
        let show = |r: &AccessRequest| {
            if let Some(last) = r.approvals.last() {
                eprintln!(
                    "approved by {} ({} more needed)",
                    last.username, r.approvals_needed
                );
            }
        };
        tokio::select! {
            decided = requests::wait_decided(api, &request.id, show) => decided?,
            caught = signals.recv() => {
                if made {
                    match requests::decide(api, &request.id, Decision::Revoke, Some("portcullis run interrupted".into())).await {
                        Ok(_) => eprintln!("{caught}: request {} revoked", request.id),
                        Err(err) => eprintln!("{caught}: could not revoke request {}: {err:#}", request.id),
                    }
                }
                return Ok(Err(caught.exit_code()));
            }
        }
    } else {
        request
    };
    match request.state {
        RequestState::Approved => Ok(Ok(request)),
        state => {
            let by = match (&request.decided_by, &request.decision_reason) {
                (Some(by), Some(why)) => format!(" by {by}: {why}"),
                (Some(by), None) => format!(" by {by}"),
                _ => String::new(),
            };
            eprintln!("request {} was {state}{by}: nothing to run", request.id);
            Ok(Err(i32::from(super::exit::REFUSED)))
        }
    }
}

/// The targets a run may open sessions to: the request's named ones.
fn run_targets(request: &AccessRequest) -> anyhow::Result<Vec<String>> {
    if let Some(zone) = &request.zone {
        bail!(
            "request {} covers the zone {zone}: a run needs a request for named targets \
             (`portcullis run --targets A,B`)",
            request.id
        );
    }
    if request
        .run
        .as_ref()
        .is_some_and(|run| run.started_at.is_some())
    {
        bail!(
            "request {} has run already: a request serves one run",
            request.id
        );
    }
    Ok(request.targets.clone())
}

async fn keepalive_verdict(api: &ApiClient, id: &str) -> Verdict {
    match requests::keepalive(api, id).await {
        Ok(()) => Verdict::Alive,
        Err(err) => {
            let status = err.downcast_ref::<ApiError>().map(|e| e.status);
            let verdict = keepalive::verdict(status, &format!("{err:#}"));
            if verdict == Verdict::Retry {
                eprintln!("portcullis run: warning: keepalive failed: {err:#}");
            }
            verdict
        }
    }
}

/// Reports the command's end (`None`: it never started); a failure is a warning.
async fn finish(api: &ApiClient, id: &str, status: Option<std::process::ExitStatus>) {
    let body = match status {
        Some(status) => child::finish(status),
        None => portcullis_proto::access::FinishRun {
            exit_status: None,
            signal: None,
        },
    };
    if let Err(err) = requests::finish_run(api, id, &body).await {
        eprintln!("portcullis run: warning: {err:#}; the controller ends the run when its keepalives stop");
    }
}

#[cfg(test)]
mod tests;
