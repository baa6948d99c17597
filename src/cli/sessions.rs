//! `portcullis sessions`: list, show and cancel sessions. The controller returns only the
//! sessions the caller may see (their own, or all with `sessions:read-all`).
//!
//! A session's recordings (docs/recordings.md) are listed, played, exported and watched here
//! too: `recordings` reads them through the API, `replay` shows a terminal channel through the
//! terminal filter, `export` writes asciicast files and bundles.

mod export;
pub(crate) mod recordings;
mod replay;
pub(crate) mod secrets;

use std::path::PathBuf;

use anyhow::Context as _;
use portcullis_proto::api::{CancelReason, CancelSession, List, Session};

use super::http::{segment, ApiClient, ClientArgs};
use super::output::{self, Table};
use replay::Pace;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum SessionsCommand {
    /// List the sessions you may see, newest first, a page at a time.
    ///
    /// When more sessions follow, the command to list the next page is printed on stderr
    /// (`--after CURSOR`).
    #[command(after_help = "\
Examples:
  portcullis connect echo --exec true      # a session to look at: it runs `true`, then ends
  portcullis sessions list
  portcullis sessions list --live --limit 10
  portcullis sessions list --json | jq -r '.[0].id'")]
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
    #[command(after_help = "\
Examples:
  # Inside a session's --exec, PORTCULLIS_SESSION_ID names it:
  portcullis connect echo --exec sh -- -c 'portcullis sessions show \"$PORTCULLIS_SESSION_ID\"'
  portcullis sessions show \"$(portcullis sessions list --json | jq -r '.[0].id')\" --json

In a deployment:
  portcullis sessions show s_0123...")]
    Show {
        /// The session id (s_...).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End a session: its live connections close within a second.
    #[command(after_help = "\
Examples:
  # A session cancelled from inside (its --exec command still ends normally):
  portcullis connect echo --exec sh -- -c 'portcullis sessions cancel \"$PORTCULLIS_SESSION_ID\"'

In a deployment:
  portcullis sessions cancel s_0123...
  portcullis sessions list --live --json | jq -r '.[] | select(.target_name == \"web-01\") | .id' |
      xargs -n1 portcullis sessions cancel")]
    Cancel {
        /// The session id (s_...).
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the leased secrets of one of your own live sessions.
    ///
    /// The database credentials (or other Vault secrets) the controller read for the
    /// session's target (its vault_secrets), field by field. Only the session's own user may
    /// read them, only while the session lives (Vault revokes them when it ends); every read
    /// is audited as session_secrets_read. Nothing is written to disk.
    ///
    /// Examples:
    ///   portcullis sessions list --live
    ///
    /// In a deployment:
    ///   # a session to a target with vault_secrets (docs/secrets.md)
    ///   portcullis sessions secrets s_0123...
    ///   portcullis sessions secrets s_0123... --json | jq -r '.secrets[0].data.username'
    #[command(verbatim_doc_comment)]
    Secrets {
        /// The session id (s_...).
        id: String,
        /// Print the API's answer as JSON (values exactly as Vault gave them).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a session's recordings (one per SSH gateway connection) and their channels.
    ///
    /// Each recording shows its state as the controller verified it just now (verified,
    /// incomplete up to chunk N, or BROKEN at chunk N and why) and the newest head sealed in
    /// the audit log; each channel its type (pty, exec, sftp, forward), command, recorded
    /// events and bytes, duration and exit status. Needs recordings:read, or being the
    /// session's own user; every read is audited.
    ///
    /// Examples:
    ///   portcullis connect echo --exec true      # a session to look at: it runs `true`, then ends
    ///   portcullis sessions recordings "$(portcullis sessions list --json | jq -r '.[0].id')"
    ///
    /// In a deployment (recordings come from the SSH gateway; `portcullis dev` has none):
    ///   portcullis sessions recordings s_0123...
    ///   portcullis sessions recordings s_0123... --json | jq '.recordings[].state'
    #[command(verbatim_doc_comment)]
    Recordings {
        /// The session id (s_...).
        id: String,
        /// Print the API's RecordingList as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replay a terminal (pty) channel of a recording with its timing.
    ///
    /// The chunks are checked against the chain and the head sealed in the audit log first:
    /// an incomplete recording is played as far as it goes, a broken one only up to the
    /// break, with a warning. Everything printed passes through a terminal filter: clipboard
    /// writes (OSC 52), DCS/APC/PM/SOS strings and report requests are dropped, so a hostile
    /// recording cannot act on your terminal. Ctrl-C stops.
    ///
    /// In a deployment (recordings come from the SSH gateway, which `portcullis dev` lacks):
    ///   portcullis sessions play s_0123...
    ///   portcullis sessions play s_0123... --speed 4 --idle-limit 1
    ///   portcullis sessions play s_0123... --recording c_4567... --channel 2 --no-wait | less -R
    #[command(verbatim_doc_comment)]
    Play {
        /// The session id (s_...).
        id: String,
        #[command(flatten)]
        pick: PickArgs,
        /// Play this many times faster (0.5 plays at half speed).
        #[arg(long, default_value = "1", value_parser = replay::parse_speed)]
        speed: f64,
        /// Cut pauses longer than this many seconds to it.
        #[arg(long, value_name = "SECS", value_parser = replay::parse_idle_limit)]
        idle_limit: Option<f64>,
        /// Print everything at once, without the recorded timing.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a recording as an asciicast file or as a bundle to verify offline.
    ///
    /// asciicast: one terminal channel as asciicast v2, which `asciinema play` and
    /// asciinema-player accept (the raw recording: a player shows it, not this command).
    /// bundle: the recording's chunks, the audit events that seal them and the audit public
    /// keys, which `portcullis recordings verify` checks on any machine. Files are created
    /// 0600: recordings may show secrets.
    ///
    /// In a deployment (recordings come from the SSH gateway, which `portcullis dev` lacks):
    ///   portcullis sessions export s_0123... --format asciicast -o session.cast
    ///   asciinema play session.cast
    ///   portcullis sessions export s_0123... --recording c_4567... --format bundle -o rec.json
    ///   portcullis recordings verify rec.json --public-key "$(cat audit-keys.txt)"
    #[command(verbatim_doc_comment)]
    Export {
        /// The session id (s_...).
        id: String,
        #[command(flatten)]
        pick: PickArgs,
        #[arg(long, value_enum)]
        format: export::ExportFormat,
        /// Write to this file (created 0600) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a live terminal channel read-only, as it is recorded.
    ///
    /// Shows what the session's terminal shows, a second or so behind, through the same
    /// terminal filter as `play`. Stops when the recording is finished; Ctrl-C stops watching
    /// only: the session goes on. The default is the newest recording still going.
    ///
    /// In a deployment (recordings come from the SSH gateway, which `portcullis dev` lacks):
    ///   portcullis sessions watch s_0123...
    ///   portcullis sessions watch s_0123... --recording c_4567...
    #[command(verbatim_doc_comment)]
    Watch {
        /// The session id (s_...).
        id: String,
        #[command(flatten)]
        pick: PickArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Which recording and channel a command works on.
#[derive(clap::Args, Debug)]
pub(crate) struct PickArgs {
    /// The recording (its id, c_..., as `sessions recordings` lists it); default: the first
    /// with a terminal channel.
    #[arg(long)]
    recording: Option<String>,
    /// The channel; default: the recording's first terminal (pty) channel.
    #[arg(long)]
    channel: Option<u32>,
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
        SessionsCommand::Secrets { id, json, client } => {
            let api = ApiClient::from_args(&client)?;
            secrets::show(&api, &id, json).await?;
        }
        SessionsCommand::Recordings { id, json, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = recordings::list(&api, &id).await?;
            if json {
                output::print_json(&list)?;
            } else {
                recordings::print_list(&list)?;
            }
        }
        SessionsCommand::Play {
            id,
            pick,
            speed,
            idle_limit,
            no_wait,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let list = recordings::list(&api, &id).await?;
            let info = recordings::pick_recording(&list, pick.recording.as_deref(), pick.channel)?;
            let channel = recordings::pty_channel(info, pick.channel)?;
            let pace = if no_wait {
                Pace::INSTANT
            } else {
                Pace { speed, idle_limit }
            };
            return replay::play(&api, info, channel, pace).await;
        }
        SessionsCommand::Export {
            id,
            pick,
            format,
            output,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let list = recordings::list(&api, &id).await?;
            return match format {
                export::ExportFormat::Asciicast => {
                    let info =
                        recordings::pick_recording(&list, pick.recording.as_deref(), pick.channel)?;
                    let channel = recordings::pty_channel(info, pick.channel)?;
                    export::asciicast(&api, info, channel, output.as_deref()).await
                }
                export::ExportFormat::Bundle => {
                    let info = match pick.recording.as_deref() {
                        Some(_) => {
                            recordings::pick_recording(&list, pick.recording.as_deref(), None)?
                        }
                        None => list
                            .recordings
                            .first()
                            .with_context(|| format!("session {id} has no recordings"))?,
                    };
                    export::bundle(&api, info, output.as_deref()).await
                }
            };
        }
        SessionsCommand::Watch { id, pick, client } => {
            let api = ApiClient::from_args(&client)?;
            let list = recordings::first_list(&api, &id).await?;
            let info = match pick.recording.as_deref() {
                Some(wanted) => recordings::pick_recording(&list, Some(wanted), None)?,
                None => recordings::live_recording(&list)?,
            };
            // A channel the recording already lists must be a terminal; a live one may not
            // be listed yet.
            if let Some(n) = pick.channel {
                if info.channels.iter().any(|c| c.channel == n) {
                    recordings::pty_channel(info, Some(n))?;
                }
            }
            return replay::watch(&api, info, pick.channel).await;
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
