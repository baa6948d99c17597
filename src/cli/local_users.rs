//! `portcullis controller users ...`: the offline administration of local users on the
//! controller host (docs/auth.md "Local users"), for whoever holds the config and the master
//! key. Each change is recorded in the audit log with the local account as the actor. A
//! password is never an argument: it is read from a file only its owner can read, or
//! generated and printed once (on stdout), to be replaced at the user's first login.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use portcullis_controller::admin::{self, LocalUserChanged, LocalUserSummary, PasswordSource};
use portcullis_controller::secret::ExposeSecret as _;

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a local user (issuer `local:`) in the given groups.
    ///
    /// Without --password-file, prints a one-time password once, on stdout: the user logs in
    /// with it, then sets their own password and enrols TOTP. Recorded as
    /// `local_user_created`.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller users add ivan --groups users

In a deployment:
  portcullis controller users add alice --groups admins -c /etc/portcullis/controller.toml
  portcullis controller users add deploy --groups ci --password-file /run/secrets/deploy-password -c /etc/portcullis/controller.toml")]
    Add {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        /// The user's name (letters, digits, -, _, ., @).
        name: String,
        /// The user's groups: groups choose the policy's roles. Repeat or separate by commas.
        #[arg(long, value_delimiter = ',', required = true)]
        groups: Vec<String>,
        /// Read the password from this file (mode 0600 or stricter; one trailing newline is
        /// dropped) instead of generating a one-time one.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Give a local user a new password and clear its TOTP and recovery codes (both are
    /// enrolled again at the next login). Works offline whatever the user's state.
    ///
    /// Without --password-file, prints a one-time password once, on stdout. Recorded as
    /// `local_user_reset`.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller users add judy --groups users > /dev/null   # its one-time password
  portcullis controller users reset judy

In a deployment:
  portcullis controller users reset admin --config /etc/portcullis/controller.toml")]
    Reset {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        name: String,
        /// Read the new password from this file (mode 0600 or stricter).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List local users: name, groups, whether TOTP is enrolled, whether disabled. Never a
    /// credential.
    #[command(after_help = "\
Examples:
  # On `portcullis dev`'s store: dev.env sets PORTCULLIS_CONTROLLER_CONFIG (STATE/controller.toml).
  portcullis controller users list
  portcullis controller users list --json

In a deployment:
  portcullis controller users list --config /etc/portcullis/controller.toml")]
    List {
        #[arg(long, short, env = "PORTCULLIS_CONTROLLER_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `controller users` command; `load` reads the controller's config.
pub(crate) async fn run(
    cmd: UsersCommand,
    load: impl Fn(&Path) -> anyhow::Result<portcullis_controller::Config>,
) -> anyhow::Result<i32> {
    let operator = admin::Actor::local(&format!("uid={}", rustix::process::getuid().as_raw()));
    match cmd {
        UsersCommand::Add {
            config,
            name,
            groups,
            password_file,
        } => {
            let source = source(password_file.as_deref())?;
            let config = load(&config)?;
            let rules = admin::PasswordRules::of(&config);
            let (store, keys) = portcullis_controller::open(&config).await?;
            let added =
                admin::add_local_user(&store, &keys, rules, &name, groups, source, operator).await;
            store.close().await;
            show_changed(&added?, "created", "local_user_created");
            Ok(0)
        }
        UsersCommand::Reset {
            config,
            name,
            password_file,
        } => {
            let source = source(password_file.as_deref())?;
            let config = load(&config)?;
            let rules = admin::PasswordRules::of(&config);
            let (store, keys) = portcullis_controller::open(&config).await?;
            let reset =
                admin::reset_local_user(&store, &keys, rules, &name, source, operator).await;
            store.close().await;
            show_changed(
                &reset?,
                "reset (TOTP and recovery codes cleared)",
                "local_user_reset",
            );
            Ok(0)
        }
        UsersCommand::List { config, json } => {
            let (store, _) = portcullis_controller::open(&load(&config)?).await?;
            let found = admin::list_local_users(&store).await;
            store.close().await;
            show_list(&found?, json)?;
            Ok(0)
        }
    }
}

fn source(password_file: Option<&Path>) -> anyhow::Result<PasswordSource> {
    Ok(match password_file {
        Some(path) => PasswordSource::Given(admin::read_password_file(path)?),
        None => PasswordSource::Generate,
    })
}

/// The one-time password (if any) alone on stdout, the rest on stderr.
fn show_changed(changed: &LocalUserChanged, what: &str, event: &str) {
    let u = &changed.user;
    match &changed.one_time_password {
        Some(password) => {
            println!("{}", password.expose_secret());
            eprintln!(
                "local user {} {what} (groups: {}); recorded as {event}.\n\
                 The one-time password above is shown once: give it to {} over a safe channel. \
                 They log in with `portcullis login --password` as {}, then set their own \
                 password and enrol TOTP.",
                u.username,
                u.groups.join(","),
                u.username,
                u.username,
            );
        }
        None => eprintln!(
            "local user {} {what} (groups: {}) with the password from the file; recorded as {event}",
            u.username,
            u.groups.join(","),
        ),
    }
}

fn show_list(users: &[LocalUserSummary], json: bool) -> anyhow::Result<()> {
    if json {
        let items: Vec<_> = users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "id": u.user_id,
                    "username": u.username,
                    "groups": u.groups,
                    "totp_enrolled": u.totp_enrolled,
                    "must_change_password": u.must_change_password,
                    "disabled_at": u.disabled_at,
                    "created_at": u.created_at,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    println!("{:<24} {:<6} {:<9} GROUPS", "NAME", "TOTP", "STATE");
    for u in users {
        let state = if u.disabled_at.is_some() {
            "disabled"
        } else if u.must_change_password {
            "enrolling"
        } else {
            "active"
        };
        println!(
            "{:<24} {:<6} {:<9} {}",
            u.username,
            if u.totp_enrolled { "yes" } else { "no" },
            state,
            u.groups.join(",")
        );
    }
    Ok(())
}
