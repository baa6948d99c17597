//! `portcullis connect rdp TARGET [-- CLIENT-ARGS]`: a Remote Desktop client through a
//! brokered session.
//!
//! Nothing here carries bytes: `connect rdp` is `connect TARGET --exec CLIENT` with the
//! client's arguments built for it ([`client_command`]), or `connect TARGET --listen-port`
//! with `--no-launch`. The session, the loopback listener, the child and the end of the
//! session when the client exits are the ones every `connect` uses. RDP sessions are brokered
//! and audited like any other, but not recorded (docs/rdp.md).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use anyhow::{bail, Context as _};
use portcullis_proto::api::Target;

use super::args::ConnectArgs;
use super::exec::ExecCommand;
use crate::cli::http::{segment, ApiClient, ClientArgs};

#[cfg(test)]
mod tests;

/// The service name a target must carry (when it names one) for `connect rdp`.
pub(super) const RDP_SERVICE: &str = "rdp";

const EXAMPLES: &str = "\
Examples:
  # On `portcullis dev`: a target for a desktop on port 3389 (a target naming no service is
  # accepted; dev runs no RDP server, so a client would find nobody there), and a local
  # address for it, held until Ctrl-C. docs/rdp.md runs a real xrdp on this machine.
  portcullis targets create desk --address 127.0.0.1:3389
  portcullis connect rdp desk --no-launch            # Ctrl-C ends it

In a deployment:
  # The first of xfreerdp, wlfreerdp (under Wayland) and remmina found on PATH; the session
  # ends when the client exits, and the client's exit status is returned.
  portcullis connect rdp win-01
  # Arguments after `--` go to the client; {host} and {port} in them are replaced.
  portcullis connect rdp win-01 --client xfreerdp -- /u:alice /dynamic-resolution
  # xfreerdp asks for the password itself, or reads it from stdin (never put it in argv):
  portcullis connect rdp win-01 -- /u:alice /from-stdin:force
  portcullis connect rdp win-01 --client remmina
  # macOS (Microsoft Remote Desktop / Windows App) and Windows under WSL:
  portcullis connect rdp win-01 --client open
  portcullis connect rdp win-01 --client mstsc
  # Any other client: --no-launch prints the address and holds the session until Ctrl-C.
  portcullis connect rdp win-01 --no-launch --listen-port 13389

RDP sessions are brokered and audited (who, when, which target, bytes each way) but not
recorded. With --json (and --no-launch) the listening line is one JSON object:
  {\"session_id\", \"target\", \"address\", \"port\", \"expires_at\" (unix seconds)}";

/// Run a Remote Desktop client through a brokered session (the session ends when the client
/// exits), or with --no-launch print the local address for a client of your own.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
pub(crate) struct RdpArgs {
    /// The target's id or name.
    pub target: String,
    /// The client to run; by default the first of xfreerdp, wlfreerdp (under Wayland) and
    /// remmina found on PATH (xfreerdp3/wlfreerdp3 too).
    #[arg(long = "client", value_enum, value_name = "CLIENT")]
    pub client_kind: Option<RdpClient>,
    /// Run no client: print the local address and hold the session until Ctrl-C.
    #[arg(long, conflicts_with = "client_kind")]
    pub no_launch: bool,
    /// Listen on 127.0.0.1:PORT (0, the default, picks a free port).
    #[arg(long, value_name = "PORT")]
    pub listen_port: Option<u16>,
    /// With --no-launch: print the listening line as one JSON object.
    #[arg(long, requires = "no_launch")]
    pub json: bool,
    /// Arguments for the client, after `--`; `{host}` and `{port}` in them are replaced.
    #[arg(last = true, value_name = "CLIENT-ARGS")]
    pub client_args: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The RDP clients `connect rdp` knows how to start.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RdpClient {
    /// FreeRDP for X11: `xfreerdp /v:127.0.0.1:PORT CLIENT-ARGS`.
    Xfreerdp,
    /// FreeRDP for Wayland: `wlfreerdp /v:127.0.0.1:PORT CLIENT-ARGS`.
    Wlfreerdp,
    /// Remmina: `remmina -c rdp://127.0.0.1:PORT CLIENT-ARGS`.
    Remmina,
    /// Windows' Remote Desktop Connection (from WSL): `mstsc.exe /v:127.0.0.1:PORT`.
    Mstsc,
    /// macOS: `open -W CLIENT-ARGS rdp://full%20address=s:127.0.0.1:PORT`, which waits
    /// until the app that opened it (Microsoft Remote Desktop, Windows App) quits.
    Open,
}

impl RdpClient {
    /// The programs that are this client, in the order they are looked for on PATH.
    fn programs(self) -> &'static [&'static str] {
        match self {
            Self::Xfreerdp => &["xfreerdp", "xfreerdp3"],
            Self::Wlfreerdp => &["wlfreerdp", "wlfreerdp3"],
            Self::Remmina => &["remmina"],
            Self::Mstsc => &["mstsc.exe"],
            Self::Open => &["open"],
        }
    }
}

/// Where this machine's defaults come from: the OS, Wayland, and what is on PATH.
pub(super) struct Platform<'a> {
    pub macos: bool,
    pub wayland: bool,
    pub on_path: &'a dyn Fn(&str) -> bool,
}

/// The default client and its program: `open` on macOS, else the first of xfreerdp,
/// wlfreerdp (only under Wayland) and remmina that is on PATH.
pub(super) fn default_client(platform: &Platform<'_>) -> Option<(RdpClient, &'static str)> {
    if platform.macos {
        return Some((RdpClient::Open, "open"));
    }
    let mut order = vec![RdpClient::Xfreerdp];
    if platform.wayland {
        order.push(RdpClient::Wlfreerdp);
    }
    order.push(RdpClient::Remmina);
    order.into_iter().find_map(|client| {
        client
            .programs()
            .iter()
            .find(|program| (platform.on_path)(program))
            .map(|program| (client, *program))
    })
}

/// The program of a client the user named: the first of its names on PATH.
pub(super) fn named_client(
    client: RdpClient,
    on_path: &dyn Fn(&str) -> bool,
) -> Option<&'static str> {
    client
        .programs()
        .iter()
        .copied()
        .find(|program| on_path(program))
}

/// The client's command line against the local listener (`{host}` and `{port}` are filled
/// in by `--exec` once the listener is bound), with the user's arguments.
pub(super) fn client_command(
    client: RdpClient,
    program: &str,
    user_args: &[String],
) -> ExecCommand {
    let mut args: Vec<String> = match client {
        RdpClient::Xfreerdp | RdpClient::Wlfreerdp | RdpClient::Mstsc => {
            vec!["/v:{host}:{port}".into()]
        }
        RdpClient::Remmina => vec!["-c".into(), "rdp://{host}:{port}".into()],
        RdpClient::Open => vec!["-W".into()],
    };
    args.extend(user_args.iter().cloned());
    if client == RdpClient::Open {
        // open's own options (e.g. -a APP) come before the URL it opens.
        args.push("rdp://full%20address=s:{host}:{port}".into());
    }
    ExecCommand {
        program: program.to_owned(),
        args,
    }
}

/// Refuses a target whose service is named and is not rdp (a target without a service may
/// be anything, and is let through).
pub(super) fn check_service(target: &Target) -> anyhow::Result<()> {
    match target.service.as_deref() {
        Some(service) if service != RDP_SERVICE => bail!(
            "target {} offers the service {service:?}, not {RDP_SERVICE:?}: `connect rdp` is for \
             RDP servers; use `portcullis connect {} --listen-port 0` for any other TCP \
             service, or ask an admin to set `--service rdp` on the target",
            target.name,
            target.name
        ),
        _ => Ok(()),
    }
}

/// The `connect` invocation `connect rdp` stands for.
pub(super) fn connect_args(
    args: RdpArgs,
    program: Option<&str>,
    client: Option<RdpClient>,
) -> anyhow::Result<ConnectArgs> {
    let mut connect = ConnectArgs {
        target: Some(args.target),
        listen_port: Some(args.listen_port.unwrap_or(0)),
        json: args.json,
        client: args.client,
        ..ConnectArgs::default()
    };
    if args.no_launch {
        if !args.client_args.is_empty() {
            bail!("arguments after `--` are for the client, and --no-launch runs none");
        }
        return Ok(connect);
    }
    let (Some(client), Some(program)) = (client, program) else {
        bail!("internal: no RDP client chosen");
    };
    let command = client_command(client, program, &args.client_args);
    connect.exec = Some(command.program);
    connect.args = command.args;
    Ok(connect)
}

/// Runs `portcullis connect rdp`.
pub(crate) fn run(args: RdpArgs) -> Pin<Box<dyn Future<Output = anyhow::Result<i32>>>> {
    // Boxed: `connect rdp` runs `connect`, which dispatches here.
    Box::pin(async move {
        // Both refusals come before any session: first the client, then the target.
        let chosen = if args.no_launch {
            None
        } else {
            Some(choose_client(args.client_kind)?)
        };
        let api = ApiClient::from_args(&args.client)?;
        let target: Target = api
            .get(&format!("/v1/targets/{}", segment(&args.target)?))
            .await
            .with_context(|| format!("cannot look up target {}", args.target))?;
        check_service(&target)?;
        drop(api);
        let connect = connect_args(args, chosen.map(|c| c.1), chosen.map(|c| c.0))?;
        super::run(connect).await
    })
}

/// The client named with --client, or this machine's default; an error says what to do
/// when there is none.
fn choose_client(named: Option<RdpClient>) -> anyhow::Result<(RdpClient, &'static str)> {
    match named {
        Some(client) => {
            let program = named_client(client, &on_path).with_context(|| {
                format!(
                    "{} is not on PATH: install it, name another client with --client, or use \
                     --no-launch to get a local address for any client",
                    client.programs().join(" or ")
                )
            })?;
            Ok((client, program))
        }
        None => default_client(&Platform {
            macos: cfg!(target_os = "macos"),
            wayland: std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty()),
            on_path: &on_path,
        })
        .context(
            "no RDP client found on PATH (xfreerdp, wlfreerdp, remmina): install one, name \
             yours with --client, or use --no-launch to get a local address for any client",
        ),
    }
}

/// Whether `program` is an executable file in a directory of PATH.
fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
