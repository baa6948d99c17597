//! `portcullis controller init`: the first start of a controller without an OpenID provider
//! (docs/auth.md "The first admin"): the master key, the database, and the first admin with
//! a one-time bootstrap credential.
//!
//! CONTRACT(issue 21): the init helper builds this (the work itself in the controller
//! crate, audited through the audited path).

use std::path::PathBuf;

/// What `controller init` was asked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  portcullis controller init --config /etc/portcullis/controller.toml
  portcullis controller init -c controller.toml --bootstrap-file /root/portcullis-bootstrap
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

pub(crate) async fn run(_args: InitArgs) -> anyhow::Result<i32> {
    anyhow::bail!("controller init is not built yet")
}
