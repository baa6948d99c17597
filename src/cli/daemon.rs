//! `portcullis controller ...` and `portcullis worker ...`: the daemons and offline
//! administration of a controller's store and keyset.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use portcullis_controller::secret::{ExposeSecret as _, SecretString};
use tokio_util::sync::CancellationToken;

mod keys;

#[derive(Debug, Subcommand)]
pub(crate) enum ControllerCommand {
    /// Run a controller: the API, the cluster link and the session sweeper.
    ///
    /// Prints one JSON line `{"event":"ready",...}` with the bound addresses once listening.
    /// SIGHUP reloads the policy file; SIGTERM stops.
    #[command(after_help = "\
Examples:
  # A second controller beside `portcullis dev`, on its store (dev.env sets
  # PORTCULLIS_CONTROLLER_CONFIG; that config listens on free loopback ports):
  portcullis controller run   # Ctrl-C ends it

In a deployment:
  portcullis controller run --config /etc/portcullis/controller.toml")]
    Run {
        /// The controller's TOML config (see config/controller.toml).
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
    },
    /// First start without an OpenID provider: create the master key (if missing) and the
    /// database, and the first admin with a one-time bootstrap credential (valid 24 h) that
    /// only sets its password and enrols its TOTP.
    Init(super::init::InitArgs),
    /// Apply database migrations and exit (they are also applied at every start).
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller migrate

In a deployment:
  portcullis controller migrate --config /etc/portcullis/controller.toml")]
    Migrate {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
    },
    /// Issue a worker join token directly from the store (for the first worker, before any
    /// admin can log in). Prints the token on stdout.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller join-token --ttl 10m

In a deployment (the worker reads the file at its first start):
  portcullis controller join-token -c /etc/portcullis/controller.toml > /etc/portcullis/join-token")]
    JoinToken {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        /// Lifetime, e.g. 1h or 600s.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Write a new random master key (64 hex characters) to a file only its owner can read.
    ///
    /// The key seals every private key in the store: keep a copy somewhere safe, and give
    /// every controller sharing a store the same key. The file is written in full beside its
    /// destination (mode 0600), then moved into place; an existing file is never replaced
    /// without --force.
    #[command(after_help = "\
Examples:
  portcullis controller keygen --out master.key
  portcullis controller keygen --out master.key --force   # replace (the old keyset becomes unreadable)

In a deployment:
  portcullis controller keygen --out /etc/portcullis/master.key
  chown portcullis: /etc/portcullis/master.key   # the account the controller runs as")]
    Keygen {
        /// Where to write the key (keys.master_key_file in the config).
        #[arg(long, short)]
        out: PathBuf,
        /// Replace an existing file. A keyset sealed with the old key cannot be opened again.
        #[arg(long)]
        force: bool,
    },
    /// Issue an API token for a user straight from the store (break-glass): for root on the
    /// controller when no OIDC login is possible, and for automation.
    ///
    /// Needs the config and the master key, so only whoever administers the controller can
    /// run it. The user (issuer portcullis-local) is created or refreshed with the groups and
    /// methods given; the issue is recorded as `token_issued` (the local account as actor)
    /// in the same transaction. The token is printed once, on stdout; only its hash is kept.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller issue-token --user alice --group users --amr mfa
  portcullis controller issue-token --user deploy --group users --ttl 1h --json | jq -r .token_id

In a deployment:
  portcullis controller issue-token --config /etc/portcullis/controller.toml \\
      --user alice --group admins --amr mfa")]
    IssueToken {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        /// The user's name (letters, digits, -, _, ., @).
        #[arg(long)]
        user: String,
        /// A group of the user: groups choose the policy's roles. Repeat or separate by commas.
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// Authentication methods to record (e.g. mfa), which the policy's MFA rules read.
        #[arg(long, value_delimiter = ',')]
        amr: Vec<String>,
        /// Lifetime, e.g. 1h (default: api.token_lifetime of the config).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Print `{token, token_id, expires_at, user}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the controller CA certificates (PEM) that clients (PORTCULLIS_CA) and operators
    /// trust: the signing CA first, then any other CA of a rotation in progress; with `[api]
    /// tls_cert_file` set, clients trust your PKI's CA instead.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller ca > controller-ca.pem

In a deployment:
  portcullis controller ca --config /etc/portcullis/controller.toml > portcullis-ca.pem")]
    Ca {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
    },
    /// Write a consistent backup beside a running controller: a SQLite snapshot (for
    /// PostgreSQL, the pg_dump line to run), the master key sealed under a passphrase, and a
    /// manifest. Recorded as `backup_created`.
    Backup(super::backup::BackupArgs),
    /// Restore a backup into a new store and master key file (never replacing either), after
    /// checking its hashes, unsealing the key and verifying the audit chain.
    Restore(super::backup::RestoreArgs),
    /// Inspect and rotate the keyset.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Local users, offline on the controller host: add, reset (always works), list.
    #[command(subcommand)]
    Users(super::local_users::UsersCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkerCommand {
    /// Run a worker: enrol if needed, link to a controller, serve the proxy listener.
    ///
    /// Prints one JSON line `{"event":"ready",...}` once listening. SIGTERM drains: no new
    /// sessions, live ones kept up to the drain timeout.
    #[command(after_help = "\
In a deployment (`portcullis dev` runs its own worker; a second one needs its cluster address):
  portcullis worker run --config /etc/portcullis/worker.toml
  portcullis worker run -c worker.toml --drain-timeout 30s")]
    Run {
        /// The worker's TOML config (see config/worker.toml).
        #[arg(long, short, env = "PORTCULLIS_WORKER_CONFIG")]
        config: PathBuf,
        /// How long live connections are kept after SIGTERM (overrides the config), e.g. 30s.
        #[arg(long, value_parser = humantime::parse_duration)]
        drain_timeout: Option<std::time::Duration>,
    },
}

/// Loads a controller config; `master_key` is what `PORTCULLIS_MASTER_KEY` held when the
/// process started (it is no longer in the environment).
pub(super) fn load_controller_config(
    path: &std::path::Path,
    master_key: &Option<SecretString>,
) -> anyhow::Result<portcullis_controller::Config> {
    portcullis_controller::Config::load_with_env(path, |name| {
        if name == super::master_key_env::VAR {
            master_key.as_ref().map(|k| k.expose_secret().to_owned())
        } else {
            std::env::var(name).ok()
        }
    })
    .context("the controller config was refused")
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves when one
/// arrives. Call it before printing a readiness line: whoever read that line may signal at
/// once, and a signal before the handlers are in would kill the process without its drain.
pub(crate) fn on_termination() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn next(signal: Option<Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        let neither = term.is_none() && int.is_none();
        async move {
            if neither {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                () = next(term) => {}
                () = next(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) async fn run_controller(
    cmd: ControllerCommand,
    master_key: Option<SecretString>,
) -> anyhow::Result<i32> {
    let load = |path: &std::path::Path| load_controller_config(path, &master_key);
    match cmd {
        ControllerCommand::Run { config } => serve_controller(load(&config)?).await,
        ControllerCommand::Migrate { config } => {
            let config = load(&config)?;
            portcullis_controller::open(&config)
                .await
                .context("migration failed")?;
            eprintln!("migrations applied");
            Ok(0)
        }
        ControllerCommand::JoinToken { config, ttl } => {
            let config = load(&config)?;
            let (store, keys) = portcullis_controller::open(&config).await?;
            let (token, _) =
                portcullis_controller::admin::issue_join_token(&store, &keys, None, ttl.as_secs())
                    .await?;
            println!("{token}");
            Ok(0)
        }
        ControllerCommand::Ca { config } => {
            let (_, keys) = portcullis_controller::open(&load(&config)?).await?;
            // Every CA trusted now (more than one during a rotation), the signing one first.
            print!("{}", keys.ca_bundle().await?.pem());
            Ok(0)
        }
        ControllerCommand::Init(args) => super::init::run(args, load).await,
        ControllerCommand::Keygen { out, force } => {
            portcullis_controller::MasterKey::generate_file(&out, force)?;
            eprintln!(
                "wrote a new master key to {} (mode 0600); point keys.master_key_file at it and keep a copy somewhere safe",
                out.display()
            );
            Ok(0)
        }
        ControllerCommand::IssueToken {
            config,
            user,
            groups,
            amr,
            ttl,
            json,
        } => issue_token(&load(&config)?, &user, groups, amr, ttl, json).await,
        ControllerCommand::Backup(args) => super::backup::run_backup(args, load).await,
        ControllerCommand::Restore(args) => super::backup::run_restore(args, load).await,
        ControllerCommand::Keys(cmd) => keys::run(cmd, &master_key).await,
        ControllerCommand::Users(cmd) => super::local_users::run(cmd, load).await,
    }
}

/// `controller run`: starts the controller, prints its readiness line, reloads the policy at
/// SIGHUP and stops at SIGINT or SIGTERM.
async fn serve_controller(config: portcullis_controller::Config) -> anyhow::Result<i32> {
    let ops_listen = config.ops;
    let controller = portcullis_controller::Controller::start(config)
        .await
        .context("controller failed to start")?;
    let ops = super::ops::bind(ops_listen).await?;
    let terminated = on_termination();
    let ready = serde_json::json!({
        "event": "ready",
        "component": "controller",
        "controller_id": controller.state().controller_id().to_string(),
        "api": controller.api_addr()?.to_string(),
        "cluster": controller.cluster_addr()?.to_string(),
        "ops": super::ops::address(&ops),
    });
    println!("{ready}");
    let shutdown = CancellationToken::new();
    if let Some(listener) = ops {
        let probe = super::ops::Probe::Controller(Box::new(controller.probe()));
        tokio::spawn(super::ops::serve(listener, probe, shutdown.clone()));
    }
    super::ops::notify::ready(&shutdown);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        terminated.await;
        stop.cancel();
    });
    controller.run(shutdown).await;
    Ok(0)
}

/// `controller issue-token`: issues a local user's API token straight from the store and
/// prints it once (the secret on stdout, the rest on stderr, or all as JSON).
async fn issue_token(
    config: &portcullis_controller::Config,
    user: &str,
    groups: Vec<String>,
    amr: Vec<String>,
    ttl: Option<std::time::Duration>,
    json: bool,
) -> anyhow::Result<i32> {
    let (store, keys) = portcullis_controller::open(config).await?;
    let operator = portcullis_controller::admin::Operator {
        account: format!("uid={}", rustix::process::getuid().as_raw()),
    };
    let issued = portcullis_controller::admin::issue_local_token(
        &store,
        &keys,
        ttl.unwrap_or(config.token_lifetime),
        user,
        groups,
        amr,
        &operator,
    )
    .await?;
    let u = &issued.user;
    if json {
        let out = serde_json::json!({
            "token": issued.secret,
            "token_id": issued.token_id,
            "expires_at": issued.expires_at,
            "user": {"id": u.id, "issuer": u.issuer, "username": u.username, "groups": u.groups, "amr": u.amr},
        });
        println!("{out}");
    } else {
        println!("{}", issued.secret);
        eprintln!(
            "token {} for {} (groups: {}) until {}; shown once, recorded as token_issued",
            issued.token_id,
            u.username,
            u.groups.join(","),
            super::output::time(issued.expires_at)
        );
    }
    store.close().await;
    Ok(0)
}

pub(crate) async fn run_worker(cmd: WorkerCommand) -> anyhow::Result<i32> {
    match cmd {
        WorkerCommand::Run {
            config,
            drain_timeout,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read worker config {}", config.display()))?;
            let mut config = portcullis_worker::Config::from_toml(&text)
                .context("the worker config was refused")?;
            if let Some(timeout) = drain_timeout {
                config.drain_timeout = timeout;
            }
            let ops_listen = config.ops;
            let worker = portcullis_worker::Worker::bind(config)
                .await
                .context("worker failed to start")?;
            let ops = super::ops::bind(ops_listen).await?;
            let linked = worker.wait_linked(std::time::Duration::from_secs(10)).await;
            if !linked {
                tracing::warn!(
                    "no controller answered within 10 s; admitting nothing until one does"
                );
            }
            let terminated = on_termination();
            let ready = serde_json::json!({
                "event": "ready",
                "component": "worker",
                "linked": linked,
                "worker_id": worker.worker_id(),
                "proxy": worker.proxy_addr().to_string(),
                "ops": super::ops::address(&ops),
            });
            println!("{ready}");
            let shutdown = CancellationToken::new();
            if let Some(listener) = ops {
                let probe = super::ops::Probe::Worker(worker.probe());
                tokio::spawn(super::ops::serve(listener, probe, shutdown.clone()));
            }
            super::ops::notify::ready(&shutdown);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                terminated.await;
                stop.cancel();
            });
            worker
                .run(shutdown)
                .await
                .context("worker stopped with an error")?;
            Ok(0)
        }
    }
}
