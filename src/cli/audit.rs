//! `portcullis audit`: read, export and verify the tamper-evident audit log (docs/audit.md).
//!
//! `list` filters the log through `GET /v1/audit`; `export` writes the chain as JSON lines
//! (a header with the audit public keys and the store's head, then one event per line);
//! `verify` walks the chain, on the live store or offline on an export or a sink's copy, and
//! names the first event that was edited, removed, inserted, reordered or cut off.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use portcullis_audit::chain::{IndexColumns, PublicKeyInfo};
use portcullis_audit::verify::{ExportHeader, Head};
use serde::Deserialize;
use serde_json::Value;

use super::http::{ApiClient, ClientArgs};
use super::output::{self, Table};

mod recordings;
mod verify;
use verify::{live_keys, newest_checkpoint, report, verify_file, verify_live};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// List events, newest first (permission audit:read).
    ///
    /// Examples:
    ///   portcullis audit list --since 1h --limit 20
    ///   portcullis audit list --decision allow --json | jq -r '.[].type'
    ///   portcullis audit list --target "$(portcullis targets show echo --json | jq -r .id)"
    ///
    /// In a deployment:
    ///   portcullis audit list --decision deny --since 24h
    ///   portcullis audit list --session s_0123... --json
    ///   portcullis audit list --run ar_0123...     # a `portcullis run`: its request and sessions
    #[command(verbatim_doc_comment)]
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print a JSON array of the events instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the whole chain as JSON lines, oldest first, for offline review and SIEM import.
    ///
    /// The first line is a header with the audit public keys and the store's head; each
    /// further line is one event exactly as it was signed. `audit verify --file` checks it.
    #[command(after_help = "\
Examples:
  portcullis audit export -o audit.jsonl
  portcullis audit export | tail -n 1 | jq -r .type

In a deployment:
  portcullis audit export -o /var/backups/portcullis/audit-2026-12-01.jsonl")]
    Export {
        /// The only format: one JSON object per line.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to this file (created 0600) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check the chain: every link, hash and signature, and that nothing was cut off.
    ///
    /// Without --file it verifies the live store through the API, and every session
    /// recording whose head the chain seals: its stored chunks must chain up to that head
    /// (an altered or unreadable chunk fails the verify, naming the recording and chunk;
    /// without recordings:read the recordings are not checked, and the output says so).
    /// With --file it verifies an export or a sink's JSON-lines copy offline. Pin the audit public keys with
    /// --public-key (from `portcullis audit keys`, kept somewhere the store's admins cannot
    /// write); otherwise the keys in the export are trusted. Exit code 0: intact; 1: the
    /// first bad event, or the recording that does not reach its sealed head, is named.
    ///
    /// Examples:
    ///   portcullis audit verify
    ///   portcullis audit keys > audit-keys.txt     # pin these somewhere the store's admins cannot write
    ///   portcullis audit export -o export.jsonl
    ///   portcullis audit verify --file export.jsonl --public-key "$(cat audit-keys.txt)"
    ///
    /// In a deployment:
    ///   portcullis audit verify --expect-head 1041:9f2c0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab
    ///   portcullis audit verify --checkpoints /var/log/siem/portcullis.jsonl
    ///   portcullis audit verify --file export.jsonl --public-key k_ab12:Base64Key=
    ///   portcullis audit verify --file export.jsonl --public-key "$(cat audit-keys.txt)"
    #[command(verbatim_doc_comment)]
    Verify {
        /// Verify this export or sink copy instead of the live store.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The chain must reach this event with this hash (SEQ:HASH, e.g. from a checkpoint
        /// your SIEM holds): a shorter or rewritten chain fails.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<Head>,
        /// A sink's copy: its newest checkpoint with a valid signature becomes the expected
        /// head, so events cut off the store after that checkpoint are detected.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// Trust only these audit public keys: KEY_ID:BASE64, repeatable; the output of
        /// `portcullis audit keys` pasted whole (several lines, `# active` comments) works too.
        #[arg(long = "public-key", value_name = "KEY_ID:BASE64")]
        public_keys: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the audit public keys (`KEY_ID:BASE64  # state` lines), to pin in
    /// `verify --public-key` (pass the output whole, or one line of it).
    #[command(after_help = "\
Examples:
  portcullis audit keys
  portcullis audit keys > audit-keys.txt     # for `audit verify --public-key \"$(cat audit-keys.txt)\"`")]
    Keys {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Jsonl,
}

#[derive(clap::Args, Debug, Default)]
pub(crate) struct FilterArgs {
    /// Only events of this session (s_...).
    #[arg(long)]
    session: Option<String>,
    /// Only the events of this access request's run (ar_...): the request's own and those of
    /// the sessions opened under it, in order.
    #[arg(long, value_name = "REQUEST")]
    run: Option<String>,
    /// Only events by this user (user id or name).
    #[arg(long)]
    user: Option<String>,
    /// Only events about this target (t_...).
    #[arg(long)]
    target: Option<String>,
    /// Only events of this type, e.g. session_denied (docs/audit.md lists them).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Only decisions with this outcome.
    #[arg(long, value_enum)]
    decision: Option<Decision>,
    /// Only events at or after this time: RFC 3339 (2026-11-23T08:00:00Z) or an age (90m, 24h).
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Only events at or before this time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Decision {
    Allow,
    Deny,
}

/// RFC 3339 or an age before now, as unix seconds.
fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| format!("{text:?} is before 1970"));
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-11-23T08:00:00Z) nor an age (90m, 24h)")
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(now.saturating_sub(age.as_secs()))
}

impl FilterArgs {
    fn query(&self, limit: u32, before: Option<u64>) -> String {
        let mut q = vec![format!("limit={limit}")];
        let mut add = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                q.push(format!("{key}={}", encode(&v)));
            }
        };
        add("session", self.session.clone());
        add("run", self.run.clone());
        add("user", self.user.clone());
        add("target", self.target.clone());
        add("type", self.kind.clone());
        add(
            "decision",
            self.decision.map(|d| {
                match d {
                    Decision::Allow => "allow",
                    Decision::Deny => "deny",
                }
                .to_owned()
            }),
        );
        add("since", self.since.map(|t| t.to_string()));
        add("until", self.until.map(|t| t.to_string()));
        add("before", before.map(|b| b.to_string()));
        q.join("&")
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn run(cmd: AuditCommand) -> anyhow::Result<i32> {
    match cmd {
        AuditCommand::List {
            filter,
            limit,
            json,
            client,
        } => list(&ApiClient::from_args(&client)?, &filter, limit, json).await,
        AuditCommand::Export {
            format: ExportFormat::Jsonl,
            output,
            client,
        } => export(&ApiClient::from_args(&client)?, output.as_deref()).await,
        AuditCommand::Verify {
            file,
            expect_head,
            checkpoints,
            public_keys,
            json,
            client,
        } => {
            let mut pinned = Vec::new();
            for text in &public_keys {
                pinned.extend(
                    PublicKeyInfo::parse_flag_lines(text)
                        .map_err(anyhow::Error::msg)
                        .context("bad --public-key")?,
                );
            }
            let expect = match (&expect_head, &checkpoints) {
                (Some(_), Some(_)) => bail!("give --expect-head or --checkpoints, not both"),
                (Some(head), None) => Some(head.clone()),
                (None, Some(path)) => Some(newest_checkpoint(path, &pinned, &client).await?),
                (None, None) => None,
            };
            let outcome = match file {
                Some(path) => verify_file(&path, pinned, expect, &client).await?,
                None => verify_live(&ApiClient::from_args(&client)?, pinned, expect).await?,
            };
            report(&outcome, json)
        }
        AuditCommand::Keys { json, client } => {
            let keys = live_keys(&client)
                .await
                .context("cannot read the audit public keys")?;
            if json {
                output::print_json(&keys)?;
            } else {
                let mut text = String::new();
                for k in &keys {
                    let line = format!(
                        "{}:{}  # {}",
                        k.id,
                        k.public_key,
                        k.state.as_deref().unwrap_or("")
                    );
                    text.push_str(&format!("{}\n", portcullis_proto::text::escaped(line)));
                }
                output::write_stdout(&text)?;
            }
            Ok(0)
        }
    }
}

async fn list(api: &ApiClient, filter: &FilterArgs, limit: u32, json: bool) -> anyhow::Result<i32> {
    #[derive(Deserialize)]
    struct Page {
        items: Vec<Value>,
        /// Events the filter's index found but whose check failed (tampering).
        #[serde(default)]
        excluded: Vec<Value>,
    }
    let page: Page = api
        .get(&format!(
            "/v1/audit?{}",
            filter.query(limit.clamp(1, 1000), None)
        ))
        .await
        .context("cannot list audit events")?;
    if !page.excluded.is_empty() {
        eprintln!(
            "warning: {} event(s) the filter found failed their check and are not shown (their \
             stored index or body was edited); run `portcullis audit verify`:",
            page.excluded.len()
        );
        for e in &page.excluded {
            eprintln!(
                "  event {}: {}",
                e["sequence"],
                portcullis_proto::text::escaped(e["problem"].as_str().unwrap_or("-"))
            );
        }
    }
    if json {
        output::print_json(&page.items)?;
        return Ok(0);
    }
    let names = target_names(api).await;
    let mut table = Table::new([
        "SEQ", "TIME", "TYPE", "USER", "SOURCE", "TARGET", "SESSION", "DECISION", "REASON",
    ]);
    let s = |v: &Value, path: &[&str]| -> String {
        let mut cur = v;
        for p in path {
            match cur.get(p) {
                Some(next) => cur = next,
                None => return "-".into(),
            }
        }
        match cur {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        }
    };
    for e in &page.items {
        table.row([
            s(e, &["sequence"]),
            s(e, &["time"]),
            s(e, &["type"]),
            s(e, &["actor", "user"]),
            s(e, &["actor", "source"]),
            {
                let id = s(e, &["target"]);
                names.get(&id).cloned().unwrap_or(id)
            },
            s(e, &["session"]),
            s(e, &["decision"]),
            s(e, &["reason"]),
        ]);
    }
    table.print_or("No events match.\n")?;
    Ok(0)
}

/// Target names by id, for the table (a deleted target keeps its id there). Without them
/// (the listing failed) the table shows ids.
async fn target_names(api: &ApiClient) -> std::collections::HashMap<String, String> {
    match api
        .get::<portcullis_proto::api::List<portcullis_proto::api::Target>>("/v1/targets")
        .await
    {
        Ok(list) => list.items.into_iter().map(|t| (t.id, t.name)).collect(),
        Err(err) => {
            tracing::debug!(error = %format!("{err:#}"), "cannot read target names; showing ids");
            std::collections::HashMap::new()
        }
    }
}

/// One page of `GET /v1/audit/export`.
#[derive(Debug, Deserialize)]
pub(super) struct ExportPage {
    pub(super) header: ExportHeader,
    pub(super) events: Vec<Value>,
    /// The index columns the store keeps beside each event, in the same order.
    #[serde(default)]
    pub(super) columns: Option<Vec<IndexColumns>>,
    pub(super) next_after: Option<u64>,
}

async fn export(api: &ApiClient, path: Option<&Path>) -> anyhow::Result<i32> {
    let mut out: Box<dyn std::io::Write> = match path {
        Some(p) => Box::new(std::io::BufWriter::new(create_private(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = 0;
    let mut first = true;
    let mut count = 0u64;
    loop {
        let page: ExportPage = api
            .get(&format!("/v1/audit/export?after={after}&limit=1000"))
            .await
            .context("cannot export the audit log")?;
        if first {
            serde_json::to_writer(&mut out, &page.header)?;
            out.write_all(b"\n")?;
            first = false;
        }
        for e in &page.events {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    out.flush().context("cannot write the export")?;
    if let Some(p) = path {
        eprintln!("Exported {count} events to {}.", p.display());
    }
    Ok(0)
}

pub(crate) fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_ages() {
        assert_eq!(parse_time("2026-11-23T08:00:00Z").unwrap(), 1_795_420_800);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let t = parse_time("1h").unwrap();
        assert!(now - t >= 3600 && now - t < 3700);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn filters_become_an_encoded_query() {
        let f = FilterArgs {
            user: Some("a b&c".into()),
            decision: Some(Decision::Deny),
            since: Some(5),
            ..FilterArgs::default()
        };
        assert_eq!(
            f.query(10, Some(99)),
            "limit=10&user=a%20b%26c&decision=deny&since=5&before=99"
        );
        let f = FilterArgs {
            run: Some("ar_1".into()),
            ..FilterArgs::default()
        };
        assert_eq!(f.query(10, None), "limit=10&run=ar_1");
    }
}
