//! `portcullis workers`: list, show and delete workers, and issue join tokens.

use anyhow::Context as _;
use portcullis_proto::api::{CreateJoinToken, JoinToken, List, Worker};

use super::http::{segment, ApiClient, ClientArgs};
use super::output::{self, Table};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum WorkersCommand {
    /// List the workers.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one worker.
    Show {
        /// The worker's id or name.
        id_or_name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a worker: its certificate is revoked and its sessions end.
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
        WorkersCommand::List { json, client } => {
            let api = ApiClient::from_args(&client)?;
            let list: List<Worker> = api
                .get("/v1/workers")
                .await
                .context("cannot list workers")?;
            if json {
                output::print_json(&list.items)?;
            } else {
                print_table(&list.items)?;
            }
        }
        WorkersCommand::Show {
            id_or_name,
            json,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let worker: Worker = api
                .get(&path(&id_or_name)?)
                .await
                .with_context(|| format!("cannot show worker {id_or_name}"))?;
            print_worker(&worker, json)?;
        }
        WorkersCommand::Delete { id_or_name, client } => {
            let api = ApiClient::from_args(&client)?;
            api.delete(&path(&id_or_name)?)
                .await
                .with_context(|| format!("cannot delete worker {id_or_name}"))?;
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

fn path(id_or_name: &str) -> anyhow::Result<String> {
    Ok(format!("/v1/workers/{}", segment(id_or_name)?))
}

fn print_table(workers: &[Worker]) -> anyhow::Result<()> {
    let mut table = Table::new([
        "ID",
        "NAME",
        "PROXY ADDRESS",
        "STATE",
        "LAST SEEN",
        "CERT EXPIRES",
    ]);
    for w in workers {
        table.row([
            w.id.clone(),
            w.name.clone(),
            w.proxy_addr.clone(),
            w.state.clone(),
            output::opt_time(w.last_seen_at),
            output::time(w.cert_expires_at),
        ]);
    }
    table.print_or("No workers.")
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
