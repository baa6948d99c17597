//! `portcullis sessions`: list, show and cancel sessions. The controller returns only the
//! sessions the caller may see (their own, or all with `sessions:read-all`).

use anyhow::Context as _;
use portcullis_proto::api::{CancelReason, CancelSession, List, Session};

use super::http::{segment, ApiClient, ClientArgs};
use super::output::{self, Table};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum SessionsCommand {
    /// List the sessions you may see, newest first, a page at a time.
    ///
    /// When more sessions follow, the command to list the next page is printed on stderr
    /// (`--after CURSOR`).
    List {
        /// Only sessions that have not ended (pending or active).
        #[arg(long)]
        live: bool,
        /// At most this many sessions (1-1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Start after this cursor, printed by the previous page.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        /// Print a JSON array of the page's sessions instead of a table.
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
        SessionsCommand::List {
            live,
            limit,
            after,
            json,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let mut path = format!("/v1/sessions?limit={limit}");
            if live {
                path.push_str("&live=true");
            }
            if let Some(cursor) = &after {
                path.push_str(&format!("&after={}", segment(cursor)?));
            }
            let page: List<Session> = api.get(&path).await.context("cannot list sessions")?;
            if json {
                output::print_json(&page.items)?;
            } else {
                print_table(&page.items)?;
            }
            if let Some(next) = &page.next {
                let live = if live { " --live" } else { "" };
                eprintln!(
                    "More sessions: portcullis sessions list{live} --limit {limit} --after {}",
                    portcullis_proto::text::escaped(next)
                );
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

/// `POST /v1/sessions/{id}/cancel`.
pub(crate) async fn cancel(api: &ApiClient, id: &str) -> anyhow::Result<Session> {
    api.post(
        &format!("/v1/sessions/{}/cancel", segment(id)?),
        &CancelSession::default(),
    )
    .await
}

/// Ends a session with `reason`; for `connect`, which ends its own session (`closed` when
/// the program it served finished).
pub(crate) async fn cancel_as(
    api: &ApiClient,
    id: &str,
    reason: CancelReason,
) -> anyhow::Result<Session> {
    api.post(
        &format!("/v1/sessions/{}/cancel", segment(id)?),
        &CancelSession {
            reason: Some(reason),
        },
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
            target(s),
            state(s),
            s.connection_count.to_string(),
            output::time(s.created_at),
            output::time(s.expires_at),
            output::opt_time(s.terminated_at),
        ]);
    }
    table.print_or("No sessions.")
}

/// The target's name, or its id when the target has been deleted.
fn target(s: &Session) -> String {
    if s.target_name.is_empty() {
        s.target_id.clone()
    } else {
        s.target_name.clone()
    }
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
        ("Target", format!("{} ({})", target(s), s.target_id)),
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
