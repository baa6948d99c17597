//! `portcullis controller init`: the first start of a controller without an OpenID provider
//! (docs/auth.md "The first admin"): the master key, the database, and the first admin with
//! a one-time bootstrap credential.
//!
//! The work is the controller crate's (`admin::init`, one audited transaction); this prints
//! the result. The credential goes to stdout alone, once (or only to the file), everything
//! else to stderr; it never reaches a log.

use std::path::{Path, PathBuf};

use portcullis_controller::admin::{self, BootstrapDelivery, InitRequest, Initialised};
use portcullis_controller::secret::ExposeSecret as _;

/// What `controller init` was asked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # A controller of your own in this directory (SQLite, no OpenID provider):
  printf '[store]\\nurl = \"sqlite://lab.db\"\\n[keys]\\nmaster_key_file = \"lab.key\"\\n' > lab.toml
  portcullis controller init -c lab.toml --bootstrap-file bootstrap

In a deployment:
  portcullis controller init --config /etc/portcullis/controller.toml --bootstrap-file /root/portcullis-bootstrap
  portcullis login --bootstrap-file /root/portcullis-bootstrap --user admin")]
pub(crate) struct InitArgs {
    #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
    pub config: PathBuf,
    /// Write the bootstrap credential to FILE (mode 0600) instead of printing it, so it
    /// never lands in a terminal log, journald or cloud-init output.
    #[arg(long, value_name = "FILE")]
    pub bootstrap_file: Option<PathBuf>,
    /// The first admin's name.
    #[arg(long, value_name = "NAME", default_value = "admin")]
    pub admin: String,
    /// The first admin's groups: they must reach a role with `users:admin` (the policy's
    /// `admin` role names `admins`).
    #[arg(long, value_delimiter = ',', default_value = "admins")]
    pub groups: Vec<String>,
    /// Print what was done as JSON on stdout (the credential only if not written to a file).
    #[arg(long)]
    pub json: bool,
}

/// Runs `controller init`; `load` reads the controller's config.
pub(crate) async fn run(
    args: InitArgs,
    load: impl Fn(&Path) -> anyhow::Result<portcullis_controller::Config>,
) -> anyhow::Result<i32> {
    let config = load(&args.config)?;
    let operator = admin::Operator {
        account: format!("uid={}", rustix::process::getuid().as_raw()),
    };
    let delivery = match &args.bootstrap_file {
        Some(path) => BootstrapDelivery::File(path),
        None => BootstrapDelivery::Print,
    };
    let done = admin::init(
        &config,
        InitRequest {
            admin: &args.admin,
            groups: args.groups.clone(),
            delivery,
            operator: &operator,
        },
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&args, &done))?);
    } else {
        show(&args, &done);
    }
    Ok(0)
}

fn expiry_text(unix: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn as_json(args: &InitArgs, done: &Initialised) -> serde_json::Value {
    serde_json::json!({
        "master_key": done.master_key.as_str(),
        "master_key_file": done.master_key_file,
        "store": done.store,
        "admin": done.admin,
        "user_id": done.user_id,
        "groups": done.groups,
        "bootstrap_credential": done.credential.as_ref().map(|c| c.expose_secret().to_owned()),
        "bootstrap_file": args.bootstrap_file,
        "bootstrap_expires_at": done.expires_at,
        "login": login_command(args, done),
        "event": "controller_initialised",
    })
}

/// The command that redeems the credential.
fn login_command(args: &InitArgs, done: &Initialised) -> String {
    match &args.bootstrap_file {
        Some(path) => format!(
            "portcullis login --bootstrap-file {} --user {}",
            path.display(),
            done.admin
        ),
        None => format!("portcullis login --password --user {}", done.admin),
    }
}

/// The credential (or the file's path) alone on stdout; what was done and what to do next on
/// stderr.
fn show(args: &InitArgs, done: &Initialised) {
    match (&done.credential, &args.bootstrap_file) {
        (Some(credential), _) => println!("{}", credential.expose_secret()),
        (None, Some(path)) => println!("{}", path.display()),
        (None, None) => {}
    }
    let key = match (&done.master_key_file, done.master_key) {
        (Some(path), admin::KeyOrigin::Created) => format!(
            "master key created at {} (mode 0600): keep a copy somewhere safe, nothing in the \
             database can be opened without it",
            path.display()
        ),
        (Some(path), admin::KeyOrigin::Existing) => {
            format!("master key {} (existing)", path.display())
        }
        (None, _) => "master key from PORTCULLIS_MASTER_KEY (existing)".to_owned(),
    };
    let delivered = match &args.bootstrap_file {
        Some(path) => format!(
            "The bootstrap credential is in {} (mode 0600)",
            path.display()
        ),
        None => "The bootstrap credential above is shown once".to_owned(),
    };
    let paste = match &args.bootstrap_file {
        Some(_) => String::new(),
        None => format!(
            "    (paste it when asked)\n  or save it in a file only you can read and run:\n  \
             portcullis login --bootstrap-file FILE --user {}",
            done.admin
        ),
    };
    eprintln!(
        "controller initialised; recorded as controller_initialised.\n\
         {key}.\n\
         {store} database created and migrated; first admin {admin:?} (groups: {groups}).\n\
         {delivered}. It is not an API token: it only lets {admin} log in once, to set a \
         password and enrol TOTP. It expires at {expires}.\n\
         Next: start the controller (`portcullis controller run --config {config}`), then, with \
         PORTCULLIS_ADDR and PORTCULLIS_CA pointing at it:\n  \
         {login}{paste}\n\
         If it expires or is lost: `portcullis controller users reset {admin}` on this host.",
        store = done.store,
        admin = done.admin,
        groups = done.groups.join(","),
        expires = expiry_text(done.expires_at),
        config = args.config.display(),
        login = login_command(args, done),
    );
}
