//! `portcullis sessions`: list, show and cancel sessions. The controller returns only the
//! sessions the caller may see (their own, or all with `sessions:read-all`).

use anyhow::Context as _;
use portcullis_proto::api::{List, Session};

use super::http::{segment, ApiClient, ClientArgs};
use super::output::{self, Table};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum SessionsCommand {
    /// List the sessions you may see.
    List {
        /// Only sessions that have not ended (pending or active).
        #[arg(long)]
        live: bool,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one session and its connections.
    Show {
        /// The session id (s_...).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a session: its live connections close within a second.
    Cancel {
        /// The session id (s_...).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) async fn run(cmd: SessionsCommand) -> anyhow::Result<i32> {
    match cmd {
        SessionsCommand::List { live, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let list: List<Session> = api
                .get("/v1/sessions")
                .await
                .context("cannot list sessions")?;
            let sessions: Vec<Session> = list
                .items
                .into_iter()
                .filter(|s| !live || s.terminated_at.is_none())
                .collect();
            if json {
                output::print_json(&sessions)?;
            } else {
                print_table(&sessions)?;
            }
        }
        SessionsCommand::Show { id, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let session: Session = api
                .get(&format!("/v1/sessions/{}", segment(&id)?))
                .await
                .with_context(|| format!("cannot show session {id}"))?;
            print_session(&session, json)?;
        }
        SessionsCommand::Cancel { id, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let session = cancel(&api, &id)
                .await
                .with_context(|| format!("cannot cancel session {id}"))?;
            if json {
                output::print_json(&session)?;
            } else {
                let line = format!(
                    "Session {} is {}{}.",
                    session.id,
                    session.state,
                    session
                        .termination_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                output::write_stdout(&format!("{}\n", portcullis_proto::text::escaped(line)))?;
            }
        }
    }
    Ok(0)
}

/// `POST /v1/sessions/{id}/cancel`; shared with `connect`, which cancels its own session.
pub(crate) async fn cancel(api: &ApiClient, id: &str) -> anyhow::Result<Session> {
    api.post(
        &format!("/v1/sessions/{}/cancel", segment(id)?),
        &serde_json::json!({}),
    )
    .await
}

fn print_table(sessions: &[Session]) -> anyhow::Result<()> {
    let mut table = Table::new([
        "ID", "USER", "TARGET", "STATE", "CONNS", "CREATED", "EXPIRES", "ENDED",
    ]);
    for s in sessions {
        table.row([
            s.id.clone(),
            s.username.clone(),
            s.target_id.clone(),
            state(s),
            s.connections.len().to_string(),
            output::time(s.created_at),
            output::time(s.expires_at),
            output::opt_time(s.terminated_at),
        ]);
    }
    table.print_or("No sessions.")
}

fn state(s: &Session) -> String {
    match &s.termination_reason {
        Some(reason) if !reason.is_empty() => format!("{} ({reason})", s.state),
        _ => s.state.clone(),
    }
}

fn print_session(s: &Session, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(s);
    }
    output::print_fields(&[
        ("ID", s.id.clone()),
        ("User", format!("{} ({})", s.username, s.user_id)),
        ("Target", s.target_id.clone()),
        ("Worker", s.worker_id.clone()),
        ("State", state(s)),
        ("Client address", s.client_addr.clone()),
        ("Endpoint", s.endpoint.clone()),
        ("Connection limit", output::limit(s.connection_limit)),
        ("Created", output::time(s.created_at)),
        ("Activated", output::opt_time(s.activated_at)),
        ("Expires", output::time(s.expires_at)),
        ("Ended", output::opt_time(s.terminated_at)),
    ])?;
    if s.connections.is_empty() {
        return output::write_stdout("\nNo connections.\n");
    }
    let mut table = Table::new([
        "CONNECTION",
        "CLIENT",
        "STATE",
        "UP",
        "DOWN",
        "OPENED",
        "CLOSED",
        "REASON",
    ]);
    for c in &s.connections {
        table.row([
            c.id.clone(),
            c.client_addr.clone(),
            c.state.clone(),
            c.bytes_up.to_string(),
            c.bytes_down.to_string(),
            output::time(c.opened_at),
            output::opt_time(c.closed_at),
            output::or_dash(c.close_reason.as_deref()),
        ]);
    }
    output::write_stdout(&format!("\n{}", table.render()))
}
