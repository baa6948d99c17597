//! `portcullis policy diff`: what a policy edit changes, offline (two files) or against the
//! controller's loaded policy and what it knows (`--live`, the dry run of a reload).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use portcullis_policy::diff::{ChangeKind, DryRun, Live};
use portcullis_policy::PolicyDiff;
use portcullis_proto::text::escaped;

use super::{load, read};
use crate::cli::http::{ApiClient, ClientArgs};
use crate::cli::output;

#[derive(Debug, clap::Args)]
pub(crate) struct DiffArgs {
    /// OLD.toml NEW.toml; with --live, NEW.toml alone.
    #[arg(value_name = "FILE", num_args = 1..=2, required = true)]
    pub files: Vec<PathBuf>,
    /// Compare NEW.toml with the controller's loaded policy, and add the users (with the
    /// groups of their last login), targets and live sessions the change would allow, deny
    /// or end; nothing is reloaded (needs `policy:reload`).
    #[arg(long)]
    pub live: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the diff; 0 when nothing changes, 1 when something does.
pub(crate) async fn run(args: &DiffArgs) -> anyhow::Result<i32> {
    let (report, title) = match (args.live, args.files.as_slice()) {
        (false, [old, new]) => {
            let diff = portcullis_policy::diff(&load(old)?, &load(new)?);
            let title = format!("{} -> {}", old.display(), new.display());
            (
                DryRun {
                    diff,
                    live: Live::default(),
                },
                title,
            )
        }
        (true, [new]) => {
            let text = read(new)?;
            // Checked here first, so that errors name the file and its lines.
            load(new)?;
            let api = ApiClient::from_args(&args.client)?;
            let report: DryRun = api
                .post(
                    "/v1/policy/reload?dry_run=true",
                    &serde_json::json!({ "policy": text }),
                )
                .await
                .context("cannot get the controller's dry run of the new policy")?;
            (report, format!("the loaded policy -> {}", new.display()))
        }
        (false, _) => anyhow::bail!(
            "policy diff needs two files, OLD.toml NEW.toml (or --live NEW.toml to compare with the controller's policy)"
        ),
        (true, _) => anyhow::bail!(
            "policy diff --live takes one file, NEW.toml: the old policy is the controller's"
        ),
    };
    let changed = !report.diff.is_empty() || !report.live.is_empty();
    if args.json {
        if args.live {
            output::print_json(&report)?;
        } else {
            output::print_json(&report.diff)?;
        }
    } else {
        output::write_stdout(&render(
            &title,
            &report.diff,
            args.live.then_some(&report.live),
        ))?;
    }
    Ok(i32::from(changed))
}

/// The report in words: names, items and cells, then each changed decision with the rules
/// responsible, then (live) users, targets and sessions.
pub(crate) fn render(title: &str, d: &PolicyDiff, live: Option<&Live>) -> String {
    let mut out = String::new();
    let short = |h: &str| h.get(..12).unwrap_or(h).to_owned();
    let _ = writeln!(
        out,
        "{} ({} -> {})",
        escaped(title),
        short(&d.old_hash),
        short(&d.new_hash)
    );
    if d.is_empty() && live.is_none_or(Live::is_empty) {
        out.push_str("No change: the two policies decide alike.\n");
        return out;
    }
    for (what, names) in [
        ("zones", &d.zones),
        ("services", &d.services),
        ("roles", &d.roles),
    ] {
        if !names.added.is_empty() {
            let _ = writeln!(out, "{what} added: {}", escaped(names.added.join(", ")));
        }
        if !names.removed.is_empty() {
            let _ = writeln!(out, "{what} removed: {}", escaped(names.removed.join(", ")));
        }
    }
    for (what, items) in [
        ("zone", &d.zone_changes),
        ("service", &d.service_changes),
        ("role", &d.role_changes),
    ] {
        for item in items {
            for change in &item.changes {
                let _ = writeln!(out, "{what} {}: {}", escaped(&item.name), escaped(change));
            }
        }
    }
    for c in &d.cells {
        let _ = writeln!(
            out,
            "cell {} -> {}: {} -> {}",
            escaped(&c.from),
            escaped(&c.to),
            escaped(&c.old),
            escaped(&c.new)
        );
    }
    let s = d.summary();
    if !d.changes.is_empty() {
        let _ = writeln!(
            out,
            "\nDecisions ({} now denied, {} now allowed, {} on other terms):",
            s.denied, s.allowed, s.changed
        );
        for c in &d.changes {
            let kind = match c.kind {
                ChangeKind::Denied => "DENIED ",
                ChangeKind::Allowed => "ALLOWED",
                ChangeKind::Changed => "CHANGED",
            };
            let _ = writeln!(
                out,
                "  {kind} role {}: {} -> {} {}",
                escaped(&c.role),
                escaped(&c.source_zone),
                escaped(&c.target_zone),
                escaped(&c.service)
            );
            for b in &c.because {
                let _ = writeln!(out, "          {}", escaped(b));
            }
        }
    }
    if let Some(live) = live {
        render_live(&mut out, live);
    }
    out
}

fn render_live(out: &mut String, live: &Live) {
    if live.is_empty() {
        out.push_str("\nNo user, target or live session is affected.\n");
        return;
    }
    if !live.users.is_empty() {
        out.push_str("\nUsers (with the groups of their last login):\n");
    }
    for u in &live.users {
        let _ = writeln!(
            out,
            "  {} ({}):",
            escaped(&u.user),
            escaped(u.groups.join(", "))
        );
        for c in &u.changes {
            let verb = if c.new.as_str() == "allow" {
                "gains"
            } else {
                "loses"
            };
            let _ = writeln!(
                out,
                "    {verb} {} -> {} {}",
                escaped(&c.source_zone),
                escaped(&c.target_zone),
                escaped(&c.service)
            );
        }
    }
    if !live.targets.is_empty() {
        out.push_str("\nTargets:\n");
    }
    for t in &live.targets {
        let zone = |z: &Option<String>| z.as_deref().unwrap_or("no zone").to_owned();
        let place = if t.old_zone == t.new_zone {
            zone(&t.new_zone)
        } else {
            format!("{} -> {}", zone(&t.old_zone), zone(&t.new_zone))
        };
        let _ = writeln!(
            out,
            "  {} ({place}, {}):",
            escaped(&t.target),
            escaped(t.service.as_deref().unwrap_or("no service"))
        );
        for c in &t.changes {
            let _ = writeln!(
                out,
                "    role {} from {}: {} -> {}",
                escaped(&c.role),
                escaped(&c.source_zone),
                c.old.outcome.as_str(),
                c.new.outcome.as_str()
            );
        }
    }
    if !live.sessions.is_empty() {
        out.push_str("\nLive sessions the reload would end:\n");
    }
    for s in &live.sessions {
        let _ = writeln!(
            out,
            "  {}  {} -> {}: {}",
            escaped(&s.session),
            escaped(&s.user),
            escaped(&s.target),
            escaped(&s.reason)
        );
    }
}

#[cfg(test)]
mod tests;
