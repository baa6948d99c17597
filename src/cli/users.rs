//! `portcullis users ...`: users over the API. `revoke` (any user's tokens) is here;
//! local users (`add|list|show|disable|reset`) are in `users/admin`, service accounts
//! (`add-service|revoke-key`) in `users/service`.

use std::path::PathBuf;

use anyhow::Context as _;
use portcullis_proto::api::{RevokeUserRequest, RevokeUserResponse};

use super::http::{ApiClient, ClientArgs};
use super::output;

mod admin;
mod service;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a local user (needs `users:admin` and a login that met MFA); prints its one-time
    /// password, replaced at its first login, when it also enrols TOTP.
    #[command(after_help = "\
Examples:
  portcullis users add bob --groups users
  portcullis users add dave --groups users --json | jq -r .one_time_password

The one-time password is printed once (alone on stdout); the user then runs
  portcullis login --password --user NAME
and sets their own password and enrols TOTP. Recorded as local_user_created. The groups must
be among the controller's [auth.local] allowed_groups (`portcullis dev`: users, gateway).")]
    Add {
        name: String,
        /// The user's groups (among the controller's `[auth.local] allowed_groups`).
        #[arg(long, value_delimiter = ',', required = true)]
        groups: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List local users and service accounts (never a credential).
    #[command(after_help = "\
Examples:
  portcullis users list
  portcullis users list --json | jq -r '.users[] | select(.disabled_at) | .username'

STATE is `enrolling` until the user's first login replaced its one-time password, `disabled`
after `users disable`.")]
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one local user: groups, state, TOTP, recovery codes left.
    #[command(after_help = "\
Examples:
  portcullis users add erin --groups users > /dev/null    # its one-time password
  portcullis users show erin
  portcullis users show erin --json")]
    Show {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a local user: no more logins; its tokens are revoked and sessions end.
    #[command(after_help = "\
Examples:
  portcullis users add frank --groups users > /dev/null
  portcullis users disable frank
  portcullis users disable frank --json | jq '.revoked_token_ids | length'

Recorded as local_user_disabled. `portcullis controller users reset NAME` on the controller
gives a disabled user a new password; it stays disabled.")]
    Disable {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give a local user a new one-time password; its TOTP is enrolled again at its next
    /// login.
    #[command(after_help = "\
Examples:
  portcullis users add grace --groups users > /dev/null
  portcullis users reset grace
  portcullis users reset grace --json | jq -r .one_time_password

The new one-time password is printed once (alone on stdout); the user logs in with
  portcullis login --password --user NAME
Recorded as local_user_reset.")]
    Reset {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a service account for automation, identified by its Ed25519 public key.
    #[command(after_help = "\
The account logs in without a prompt by signing a short-lived assertion with its private key;
its API token lives at most [auth.local] service_token_lifetime (1 h by default) and meets a
role's MFA requirement only where the role sets `service_accounts = true`.

Examples:
  ssh-keygen -q -t ed25519 -N '' -C terraform-ci -f terraform-ci.key
  portcullis users add-service terraform-ci --groups users --public-key terraform-ci.key.pub
  # the account logs in (here into a token file of its own; PORTCULLIS_TOKEN stays yours):
  portcullis login --service-account terraform-ci --key terraform-ci.key --token-file ci.token

In a deployment (the private key from the CI system's secret store):
  portcullis login --service-account terraform-ci --key \"$CI_KEY_FILE\"")]
    AddService {
        name: String,
        /// The account's groups (among `[auth.local] allowed_groups`).
        #[arg(long, value_delimiter = ',', required = true)]
        groups: Vec<String>,
        /// The public key file (`ssh-keygen -t ed25519` writes NAME.pub).
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a service account's key: it obtains no more tokens, and its tokens are revoked.
    #[command(after_help = "\
The tokens the key obtained are revoked and the sessions they opened end. A revoked key is
not restored: add a new account with a new key.

Examples:
  ssh-keygen -q -t ed25519 -N '' -C old-ci -f old-ci.key
  portcullis users add-service old-ci --groups users --public-key old-ci.key.pub
  portcullis users revoke-key old-ci

In a deployment:
  portcullis users revoke-key terraform-ci --json")]
    RevokeKey {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke every API token of a user and end the user's live sessions (needs the
    /// `users:revoke` permission). The user can log in again unless the provider stops them.
    #[command(after_help = "\
Examples:
  # A user with a token (from the store, as on the controller host), whose tokens are revoked:
  portcullis controller issue-token --user henry --group users > henry.token
  portcullis users revoke henry
  portcullis users revoke henry --issuer portcullis-local --json

In a deployment (SUBJECT as `portcullis whoami` shows it):
  portcullis users revoke 8f14e45f-ceea-467f-a0e6-0b3c7e7e0c7a --issuer https://sso.example.com/realms/ops")]
    Revoke {
        /// The user's subject (`sub` at the provider; `portcullis whoami` shows it).
        subject: String,
        /// Only the user of this issuer (default: the subject under every issuer).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) async fn run(cmd: UsersCommand) -> anyhow::Result<i32> {
    match cmd {
        cmd @ (UsersCommand::Add { .. }
        | UsersCommand::List { .. }
        | UsersCommand::Show { .. }
        | UsersCommand::Disable { .. }
        | UsersCommand::Reset { .. }) => admin::run(cmd).await,
        cmd @ (UsersCommand::AddService { .. } | UsersCommand::RevokeKey { .. }) => {
            service::run(cmd).await
        }
        UsersCommand::Revoke {
            subject,
            issuer,
            json,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let response: RevokeUserResponse = api
                .post("/v1/users/revoke", &RevokeUserRequest { subject, issuer })
                .await
                .context("cannot revoke the user's tokens")?;
            if json {
                output::print_json(&response)?;
            } else {
                for user in &response.users {
                    println!(
                        "{} at {}: {} token(s) revoked, {} session(s) ended",
                        portcullis_proto::text::escaped(&user.subject),
                        portcullis_proto::text::escaped(&user.issuer),
                        user.tokens_revoked.len(),
                        user.sessions_ended.len()
                    );
                }
            }
            Ok(0)
        }
    }
}
