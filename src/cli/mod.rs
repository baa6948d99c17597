//! The command line: argument definitions and dispatch to one module per command group.

pub(crate) mod audit;
#[cfg(feature = "server")]
pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod completions;
pub(crate) mod connect;
#[cfg(feature = "server")]
pub(crate) mod daemon;
#[cfg(feature = "server")]
pub(crate) mod dev;
#[cfg(feature = "server")]
pub(crate) mod echo;
pub(crate) mod exit;
#[cfg(test)]
pub(crate) mod help_examples;
pub(crate) mod http;
#[cfg(feature = "server")]
pub(crate) mod init;
pub(crate) mod inventory;
pub(crate) mod local_tls;
#[cfg(feature = "server")]
pub(crate) mod local_users;
pub(crate) mod login;
pub(crate) mod man;
#[cfg(feature = "server")]
pub(crate) mod master_key_env;
pub(crate) mod no_echo;
#[cfg(feature = "server")]
pub(crate) mod ops;
pub(crate) mod output;
pub(crate) mod policy;
pub(crate) mod profile;
pub(crate) mod recordings;
pub(crate) mod request;
pub(crate) mod resource;
pub(crate) mod run;
pub(crate) mod sessions;
pub(crate) mod ssh_config;
pub(crate) mod status;
pub(crate) mod step_up;
pub(crate) mod targets;
pub(crate) mod terminal_filter;
pub(crate) mod tls;
pub(crate) mod users;
pub(crate) mod workers;

use clap::{Args, Parser, Subcommand};

/// What `--version` prints: the crate's version and the commit it was built from (build.rs;
/// `unknown` when built outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PORTCULLIS_GIT_HASH"),
    ")"
);

/// The long help of the client-only build, which has no `dev`, `controller` or `worker`.
#[cfg(not(feature = "server"))]
const CLIENT_ABOUT: &str = "Portcullis: a zero-trust access broker for Proxmox clouds and homelabs.

A controller authorises users against a zone firewall matrix; workers broker TCP sessions \
to targets. This is the client-only build (for laptops): it logs in to a controller and \
opens sessions, but runs no controller or worker (build with the default `server` feature \
for those). Start with `portcullis login https://CONTROLLER:9200` (it shows the controller's \
CA fingerprint to confirm), then try `portcullis status` and `portcullis targets list`.";

/// Portcullis: a zero-trust access broker for Proxmox clouds and homelabs.
///
/// A controller authorises users against a zone firewall matrix; workers broker TCP
/// sessions to targets. Start everything on one machine with `portcullis dev`, then in
/// another shell `. STATE/dev.env` and try `portcullis targets list`.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version = VERSION,
    propagate_version = true,
    after_long_help = exit::HELP
)]
#[cfg_attr(
    not(feature = "server"),
    command(long_about = CLIENT_ABOUT)
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PORTCULLIS_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `portcullis_worker=debug` (RUST_LOG syntax).
    #[arg(long, global = true, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a controller and a worker on 127.0.0.1 with SQLite, for trying Portcullis out.
    #[cfg(feature = "server")]
    Dev(dev::DevArgs),
    /// Run or administer a controller.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Controller(daemon::ControllerCommand),
    /// Run a worker.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Worker(daemon::WorkerCommand),
    /// Manage targets: the hosts and services sessions reach.
    #[command(subcommand)]
    Targets(targets::TargetsCommand),
    /// Sync and show the targets discovered from Proxmox clusters.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Print the targets you may reach as an Ansible inventory (or a table, or JSON).
    Inventory(inventory::InventoryArgs),
    /// List, inspect and cancel sessions; list, play, watch and export their recordings.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Manage workers and their join tokens.
    #[command(subcommand)]
    Workers(workers::WorkersCommand),
    /// Open a brokered session to a target and carry connections through it.
    Connect(connect::ConnectArgs),
    /// Print ~/.ssh/config blocks so plain ssh and Ansible reach targets through Portcullis.
    SshConfig(ssh_config::SshConfigArgs),
    /// Used by the blocks `ssh-config` prints: make sure a session, key and certificate
    /// for a target are ready.
    #[command(hide = true)]
    SshPrepare(ssh_config::SshPrepareArgs),
    /// Log in with your organisation's OpenID provider and save an API token.
    Login(login::LoginArgs),
    /// Revoke your API token and end the sessions it opened.
    Logout(login::LogoutArgs),
    /// Show who the controller takes you for: identity, groups, MFA and token expiry.
    Whoami(login::WhoamiArgs),
    /// Show the profile in use, each controller's reachability, the CA, the user and the
    /// token's expiry.
    Status(status::StatusArgs),
    /// Administer users: local users, service accounts, and revoking anyone's tokens.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Check, explain and export the zone matrix policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Ask for, approve, deny and revoke just-in-time access to a requestable role.
    #[command(subcommand)]
    Request(request::RequestCommand),
    /// Run a command holding an approved access request: its sessions open through the run.
    Run(run::RunArgs),
    /// Read, export and verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Verify an exported session recording offline (`sessions export --format bundle`).
    #[command(subcommand)]
    Recordings(recordings::RecordingsCommand),
    /// Print the shell completion script (bash, zsh or fish); it completes target names too.
    Completions(completions::CompletionsArgs),
    /// Write the manual pages, one per command.
    Man(man::ManArgs),
}

impl Command {
    /// Whether the command is a client carrying its own connections (`connect`, but not
    /// `connect ssh`, which runs OpenSSH), best served by a single-threaded runtime: it starts
    /// faster and hands bytes on without waking other threads, and one core's TLS (over
    /// 1 GB/s) is more than one client needs.
    pub(crate) fn single_threaded(&self) -> bool {
        matches!(self, Command::Connect(args) if args.kind.is_none())
    }

    /// Whether the command is the long-running controller (`controller run`).
    #[cfg(feature = "server")]
    pub(crate) fn is_controller_daemon(&self) -> bool {
        matches!(
            self,
            Command::Controller(daemon::ControllerCommand::Run { .. })
        )
    }
}

/// Runs the parsed command and returns the process exit code. `master_key` is what
/// `PORTCULLIS_MASTER_KEY` held (`master_key_env::take`; always `None` in the client-only
/// build, which has no command that reads it).
pub(crate) async fn run(cli: Cli, master_key: Option<secrecy::SecretString>) -> anyhow::Result<u8> {
    #[cfg(not(feature = "server"))]
    drop(master_key);
    let code = match cli.command {
        #[cfg(feature = "server")]
        Command::Dev(args) => dev::run(args).await?,
        #[cfg(feature = "server")]
        Command::Controller(cmd) => daemon::run_controller(cmd, master_key).await?,
        #[cfg(feature = "server")]
        Command::Worker(cmd) => daemon::run_worker(cmd).await?,
        Command::Targets(cmd) => targets::run(cmd).await?,
        Command::Catalog(cmd) => catalog::run(cmd).await?,
        Command::Inventory(args) => inventory::run(args).await?,
        Command::Sessions(cmd) => sessions::run(cmd).await?,
        Command::Workers(cmd) => workers::run(cmd).await?,
        Command::Connect(args) => connect::run(args).await?,
        Command::SshConfig(args) => ssh_config::run_config(args).await?,
        Command::SshPrepare(args) => ssh_config::run_prepare(args).await?,
        Command::Policy(cmd) => policy::run(cmd).await?,
        Command::Login(args) => login::login(args).await?,
        Command::Logout(args) => login::logout(args).await?,
        Command::Whoami(args) => login::whoami(args).await?,
        Command::Status(args) => status::run(args).await?,
        Command::Users(cmd) => users::run(cmd).await?,
        Command::Request(cmd) => request::run(cmd).await?,
        Command::Run(args) => run::run(args).await?,
        Command::Audit(cmd) => audit::run(cmd).await?,
        Command::Recordings(cmd) => recordings::run(cmd)?,
        Command::Completions(args) => completions::run(&args)?,
        Command::Man(args) => man::run(&args)?,
    };
    Ok(u8::try_from(code).unwrap_or(exit::FAILURE))
}

/// Sets up tracing on stderr in the chosen format.
pub(crate) fn init_tracing(args: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // The Vault client's own events repeat request errors at ERROR level and may carry
    // response bodies; the controller logs each Vault failure once, without secrets.
    let filter = ["rustify=off", "vaultrs=off", "rustls_platform_verifier=off"]
        .iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    // Colours only on a terminal: a log file or journald gets plain text, with no escape
    // sequence of ours for an attacker's to hide among. Values from outside are escaped at
    // each log site (`portcullis_proto::text`); tracing-subscriber itself escapes ESC, BEL,
    // BS, FF, DEL and C1 only in messages and `&dyn Error` fields, never newlines, and never
    // in `%` (Display) fields, which is what most sites use.
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests;
