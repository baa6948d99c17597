//! `portcullis workers`: list, show and delete workers, and issue join tokens.

use anyhow::Context as _;
use portcullis_proto::api::{CreateJoinToken, JoinToken, Worker};

use super::http::{ApiClient, ClientArgs};
use super::output::{self, Table};
use super::resource::{ListArgs, Resource, ShowArgs};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum WorkersCommand {
    /// List the workers.
    #[command(after_help = "\
Examples:
  portcullis workers list
  portcullis workers list --json | jq -r '.[].name'")]
    List(ListArgs),
    /// Show one worker.
    #[command(after_help = "\
Examples:
  portcullis workers show dev-worker      # `portcullis dev`'s worker
  portcullis workers show dev-worker --json")]
    Show(ShowArgs),
    /// Delete a worker: its certificate is revoked and its sessions end.
    #[command(after_help = "\
In a deployment (`portcullis dev` has one worker: its sessions would end with it):
  portcullis workers delete worker-2
  portcullis workers delete w_0123...")]
    Delete {
        /// The worker's id or name.
        id_or_name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue a single-use token that enrols one new worker (needs `workers:admin`).
    ///
    /// The token alone goes to stdout, so `TOKEN=$(portcullis workers join-token)` works;
    /// it is shown once and only its hash is stored.
    #[command(after_help = "\
Examples:
  portcullis workers join-token
  portcullis workers join-token --ttl 10m --json | jq -r .expires_at

In a deployment (the new worker reads the file once, at its first start):
  (umask 077; portcullis workers join-token > /etc/portcullis/join-token)")]
    JoinToken {
        /// How long the token stays valid (default 1h, at most 24h).
        #[arg(long, value_name = "DURATION", value_parser = output::parse_duration_secs)]
        ttl: Option<u64>,
        /// Print {"token", "expires_at"} as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) async fn run(cmd: WorkersCommand) -> anyhow::Result<i32> {
    match cmd {
        WorkersCommand::List(args) => WORKERS.list(&args, print_table).await?,
        WorkersCommand::Show(args) => WORKERS.show(&args, print_worker).await?,
        WorkersCommand::Delete { id_or_name, client } => {
            WORKERS.delete(&client, &id_or_name).await?;
            output::write_stdout(&format!(
                "Deleted worker {id_or_name}; its certificate is revoked and its sessions ended.\n"
            ))?;
        }
        WorkersCommand::JoinToken { ttl, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let token: JoinToken = api
                .post(
                    "/v1/workers/join-tokens",
                    &CreateJoinToken { ttl_secs: ttl },
                )
                .await
                .context("cannot issue a join token")?;
            if json {
                output::print_json(&serde_json::json!({
                    "token": token.token,
                    "expires_at": token.expires_at,
                }))?;
            } else {
                output::write_stdout(&format!("{}\n", token.token))?;
                eprintln!(
                    "This join token enrols one worker and expires at {}. It is shown only once.",
                    output::time(token.expires_at)
                );
            }
        }
    }
    Ok(0)
}

const WORKERS: Resource = Resource {
    singular: "worker",
    plural: "workers",
};

fn print_table(workers: &[Worker]) -> anyhow::Result<()> {
    Table::of(
        workers,
        &[
            ("ID", |w| w.id.clone()),
            ("NAME", |w| w.name.clone()),
            ("PROXY ADDRESS", |w| w.proxy_addr.clone()),
            ("STATE", |w| w.state.clone()),
            ("LAST SEEN", |w| output::opt_time(w.last_seen_at)),
            ("CERT EXPIRES", |w| output::time(w.cert_expires_at)),
        ],
    )
    .print_or("No workers.")
}

fn print_worker(w: &Worker, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(w);
    }
    output::print_fields(&[
        ("ID", w.id.clone()),
        ("Name", w.name.clone()),
        ("Proxy address", w.proxy_addr.clone()),
        ("Key fingerprint", w.key_fingerprint.clone()),
        ("State", w.state.clone()),
        ("Created", output::time(w.created_at)),
        ("Last seen", output::opt_time(w.last_seen_at)),
        ("Certificate expires", output::time(w.cert_expires_at)),
    ])
}
