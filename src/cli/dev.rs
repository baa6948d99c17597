//! `portcullis dev`: a controller, a worker and an echo target on 127.0.0.1 with SQLite in a
//! state directory, wired together, with `dev.env` written for the CLI in another shell.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use portcullis_controller::config::{Config, MasterKeySource};
use portcullis_controller::secret::{ExposeSecret as _, SecretString};
use portcullis_files::write_private_atomic;
use tokio_util::sync::CancellationToken;

/// The policy `dev` uses unless `--policy` names another: zone LOCAL is 127.0.0.0/8.
const DEV_POLICY: &str = include_str!("../../config/policy-dev.toml");

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  # In one shell: controller, worker and the `echo` target; state in ./pc:
  portcullis dev --state-dir pc   # Ctrl-C ends it

In another shell:
  . pc/dev.env          # PORTCULLIS_ADDR, _CA, _TOKEN; _CONTROLLER_CONFIG and _POLICY for
                        # the offline `controller` and `policy` commands on dev's store
  portcullis targets list
  portcullis connect echo --listen-port 0

The token in dev.env expires (api.token_lifetime, 8 h): start dev again on the same
--state-dir for a new one, and `. pc/dev.env` again.")]
pub(crate) struct DevArgs {
    /// Where the SQLite database, keys, CA certificate and dev.env live (created 0700); one
    /// running `dev` per directory.
    #[arg(long, default_value = ".state/dev")]
    pub state_dir: PathBuf,
    /// The dev identity's user name.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// The dev identity's groups, comma separated (they choose policy roles).
    #[arg(long, default_value = "admins", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// The dev identity's authentication methods (amr), comma separated.
    #[arg(long, default_value = "pwd,mfa", value_delimiter = ',')]
    pub amr: Vec<String>,
    /// API port (0 picks a free one).
    #[arg(long, default_value_t = 9200)]
    pub api_port: u16,
    /// Cluster link port (0 picks a free one).
    #[arg(long, default_value_t = 9201)]
    pub cluster_port: u16,
    /// Worker proxy port (0 picks a free one).
    #[arg(long, default_value_t = 9202)]
    pub proxy_port: u16,
    /// Port of the built-in echo target (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub echo_port: u16,
    /// A source address for the worker's connections to targets (e.g. 127.0.0.2); SSH
    /// certificates are then valid only from it.
    #[arg(long, value_name = "IP")]
    pub worker_egress: Option<std::net::IpAddr>,
    /// A policy file to use instead of the built-in dev policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// A controller config file whose settings (timers, limits) override the dev defaults;
    /// store, keys, ports and policy still come from the flags above.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn controller_config(args: &DevArgs, state: &Path, policy: PathBuf) -> anyhow::Result<Config> {
    let base = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => String::new(),
    };
    // Local users and service accounts to try out (`portcullis users add NAME --groups
    // users`): the dev policy's non-admin groups may be granted over the API, unless the
    // --config file says otherwise about `[auth]`.
    let base = if base.contains("[auth") || base.contains("auth.") {
        base
    } else {
        format!("{base}\n[auth.local]\nallowed_groups = [\"users\", \"gateway\"]\n")
    };
    let db = state.join("portcullis.db");
    let mut config = Config::parse(&base, "dev", |_| None)
        .or_else(|_| {
            Config::parse(
                &format!(
                    "{base}\n[store]\nurl = \"sqlite://{}\"\n[keys]\nmaster_key_file = \"{}\"\n",
                    db.display(),
                    state.join("master.key").display()
                ),
                "dev",
                |_| None,
            )
        })
        .context("the --config file was refused")?;
    config.store_url = SecretString::from(format!("sqlite://{}", db.display()));
    config.master_key = MasterKeySource::File(state.join("master.key"));
    config.api_listen = loopback(args.api_port);
    config.cluster_listen = loopback(args.cluster_port);
    config.api_tls_names = vec!["localhost".into(), "127.0.0.1".into()];
    config.policy_file = Some(policy);
    if let Some(ip) = args.worker_egress {
        config.ssh_source_addresses = vec![ip.to_string()];
    }
    Ok(config)
}

/// Runs `portcullis dev` until SIGINT or SIGTERM, then drains the worker and stops.
pub(crate) async fn run(args: DevArgs) -> anyhow::Result<i32> {
    let (state_dir, policy, _held) = prepare_state_dir(&args)?;
    let policy_file = policy.clone();
    let config = controller_config(&args, &state_dir, policy)?;
    let controller = portcullis_controller::Controller::start_with(
        config,
        portcullis_controller::Options {
            dev_login: true,
            ..Default::default()
        },
    )
    .await
    .context("the dev controller failed to start")?;
    let app = controller.state().clone();
    let ca_path = state_dir.join("ca.pem");
    write_private_atomic(&ca_path, controller.ca_pem().as_bytes())?;
    let api_addr = controller.api_addr()?;
    let cluster_addr = controller.cluster_addr()?;

    let shutdown = CancellationToken::new();
    let echo = super::echo::bind(loopback(args.echo_port))
        .await
        .context("cannot bind the echo target")?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(super::echo::serve(echo, shutdown.clone()));

    let token = dev_token(&app, &args, &state_dir).await?;
    ensure_echo_target(&app, echo_addr).await?;

    let worker_config = worker_config(&app, &args, &state_dir, cluster_addr).await?;
    // The controller must be serving before the worker enrols over the cluster link.
    let controller_task = tokio::spawn(controller.run(shutdown.clone()));
    let worker = portcullis_worker::Worker::bind(worker_config)
        .await
        .context("the dev worker failed to start")?;
    let proxy_addr = worker.proxy_addr();
    if !worker.wait_linked(Duration::from_secs(10)).await {
        tracing::warn!("the dev worker is not linked to the controller yet");
    }

    let policy_file = std::fs::canonicalize(&policy_file).unwrap_or(policy_file);
    write_offline_config(&state_dir, &policy_file)?;
    let env_path = write_dev_env(&state_dir, api_addr, &ca_path, &token, &policy_file)?;
    let terminated = super::daemon::on_termination();
    let ready = serde_json::json!({
        "event": "ready",
        "component": "dev",
        "api": api_addr.to_string(),
        "cluster": cluster_addr.to_string(),
        "proxy": proxy_addr.to_string(),
        "echo": echo_addr.to_string(),
        "worker_id": worker.worker_id(),
        "state_dir": state_dir.display().to_string(),
        "env_file": env_path.display().to_string(),
    });
    println!("{ready}");
    eprintln!("Portcullis dev is up. In another shell:\n  . {}\n  portcullis targets list\n  portcullis connect echo --listen-port 0", env_path.display());

    let worker_shutdown = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_shutdown.clone()));
    terminated.await;
    eprintln!("stopping: draining the worker");
    worker_shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), worker_task).await;
    shutdown.cancel();
    let _ = controller_task.await;
    Ok(0)
}

/// Creates the state directory (0700) and takes it (see [`hold_state_dir`]), with a master
/// key and, unless `--policy` names one, the dev policy; returns the directory's canonical
/// path, the policy file to use and the lock, held until the process ends.
fn prepare_state_dir(args: &DevArgs) -> anyhow::Result<(PathBuf, PathBuf, std::fs::File)> {
    let state_dir = &args.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))?;
    let state_dir = state_dir.canonicalize()?;
    let held = hold_state_dir(&state_dir)?;
    let master = state_dir.join("master.key");
    if !master.exists() {
        portcullis_controller::MasterKey::generate_file(&master, false)?;
    }
    let policy = match &args.policy {
        Some(p) => p.clone(),
        None => {
            let p = state_dir.join("policy.toml");
            if !p.exists() {
                write_private_atomic(&p, DEV_POLICY.as_bytes())?;
            }
            p
        }
    };
    Ok((state_dir, policy, held))
}

/// Takes STATE/dev.lock (an exclusive `flock`, released by the kernel when the process ends,
/// however it ends) and writes this process's id into it; refuses, before anything in the
/// directory is touched, when another live `portcullis dev` holds it.
fn hold_state_dir(state_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = state_dir.join("dev.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("process {holder}")
            };
            anyhow::bail!(
                "another `portcullis dev` ({who}) is running on {}: use its dev.env \
                 (`. {}/dev.env`), stop it first, or give this one another --state-dir",
                state_dir.display(),
                state_dir.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// The dev worker's config: its identity under STATE/worker, a join token only when it has
/// not enrolled yet, the proxy on 127.0.0.1.
async fn worker_config(
    app: &portcullis_controller::AppState,
    args: &DevArgs,
    state_dir: &Path,
    cluster_addr: SocketAddr,
) -> anyhow::Result<portcullis_worker::Config> {
    let worker_dir = state_dir.join("worker");
    let join_token = if worker_dir.join("worker.crt").exists() {
        None
    } else {
        let (token, _) =
            portcullis_controller::admin::issue_join_token(app.store(), app.keys(), None, 600)
                .await?;
        Some(token)
    };
    Ok(portcullis_worker::Config {
        join_token: join_token.map(portcullis_worker::SecretString::from),
        egress_addr: args.worker_egress,
        ..portcullis_worker::Config::new(
            "dev-worker",
            worker_dir,
            vec![cluster_addr.to_string()],
            loopback(args.proxy_port),
        )
    })
}

/// Writes STATE/dev.env (0600), which `. STATE/dev.env` turns into the CLI's environment;
/// returns its path.
fn write_dev_env(
    state_dir: &Path,
    api_addr: SocketAddr,
    ca_path: &Path,
    token: &SecretString,
    policy: &Path,
) -> anyhow::Result<PathBuf> {
    let env_path = state_dir.join("dev.env");
    // PORTCULLIS_DEV_STATE: a CLI whose token this instance issued says, once it expires,
    // how to get a new one (`http::error`). PORTCULLIS_CONTROLLER_CONFIG: the offline
    // `controller` commands work on this instance's store; PORTCULLIS_POLICY: `policy
    // explain|export` read its policy.
    let env = format!(
        "export PORTCULLIS_ADDR=https://{api_addr}\nexport PORTCULLIS_CA={}\nexport PORTCULLIS_TOKEN={}\nexport {}={}\nexport PORTCULLIS_CONTROLLER_CONFIG={}\nexport PORTCULLIS_POLICY={}\n",
        ca_path.display(),
        token.expose_secret(),
        super::http::DEV_STATE_VAR,
        state_dir.display(),
        state_dir.join(OFFLINE_CONFIG).display(),
        policy.display()
    );
    write_private_atomic(&env_path, env.as_bytes())?;
    Ok(env_path)
}

/// The controller config dev writes for the offline `controller` commands (dev.env names it
/// in PORTCULLIS_CONTROLLER_CONFIG).
const OFFLINE_CONFIG: &str = "controller.toml";

/// Writes STATE/controller.toml: this instance's store, master key and policy, and loopback
/// listeners on ports picked at start, so that `portcullis controller keys list`, `issue-token`,
/// `users add`, `backup`, even a second `controller run`, work on dev's store as printed.
fn write_offline_config(state_dir: &Path, policy: &Path) -> anyhow::Result<()> {
    // TOML basic strings: backslashes and quotes escaped.
    let quoted = |text: String| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let config = format!(
        "# Written by `portcullis dev` for the offline controller commands on its store.\n\
         [store]\nurl = {}\n[keys]\nmaster_key_file = {}\n[policy]\nfile = {}\n\
         [api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n\
         [ops]\nlisten = \"\"\n",
        quoted(format!(
            "sqlite://{}",
            state_dir.join("portcullis.db").display()
        )),
        quoted(state_dir.join("master.key").display().to_string()),
        quoted(policy.display().to_string()),
    );
    write_private_atomic(&state_dir.join(OFFLINE_CONFIG), config.as_bytes())?;
    Ok(())
}

/// Reuses the token in an existing dev.env when it still authenticates the same identity;
/// otherwise logs the dev identity in afresh.
async fn dev_token(
    app: &portcullis_controller::AppState,
    args: &DevArgs,
    state_dir: &Path,
) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(state_dir.join("dev.env")).unwrap_or_default();
    let previous = text
        .lines()
        .find_map(|l| l.strip_prefix("export PORTCULLIS_TOKEN="));
    let who = portcullis_controller::admin::DevIdentity {
        user: args.user.clone(),
        groups: args.groups.clone(),
        amr: args.amr.clone(),
    };
    portcullis_controller::admin::dev_login(app, &who, previous)
        .await
        .context("cannot log the dev identity in")
}

/// Creates (or re-points) the `echo` target at the echo service.
async fn ensure_echo_target(
    app: &portcullis_controller::AppState,
    echo: SocketAddr,
) -> anyhow::Result<()> {
    portcullis_controller::admin::seed_dev_target(app, "echo", &echo.to_string()).await?;
    Ok(())
}
