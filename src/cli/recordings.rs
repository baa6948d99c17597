//! `portcullis recordings verify BUNDLE`: the offline check of an exported recording bundle
//! (docs/recordings.md). No controller, no login and no configuration: the bundle and,
//! ideally, the audit public keys pinned from elsewhere are all it reads.
//!
//! - `seal`: the recording events of the audit log (sealed heads, deletions), read in one
//!   place.
//! - `check`: a recording's chunks against its sealed heads.
//! - `bundle`: a whole bundle (its audit events' hashes and signatures, then `check`).

pub(crate) mod bundle;
pub(crate) mod check;
pub(crate) mod seal;

use std::path::PathBuf;

use anyhow::Context as _;
use portcullis_audit::chain::PublicKeyInfo;
use portcullis_proto::recording::Bundle;

use super::exit;
use super::output;
use bundle::{verify_bundle, BundleReport};
use check::State;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum RecordingsCommand {
    /// Check an exported recording bundle offline: its chunk chain, the audit events that
    /// seal it, and their signatures.
    ///
    /// Needs no controller, login or configuration: copy the bundle (and the portcullis
    /// binary) to any machine. The audit events in the bundle are checked against the public
    /// keys in the bundle unless you pin keys with --public-key. Without pinning, the check
    /// proves only that the bundle is consistent: whoever made it could have signed it with a
    /// key of their own. Pinning the keys `portcullis audit keys` printed (kept somewhere the
    /// controller's admins cannot write) is what proves the recording came from your
    /// Portcullis and was not altered.
    ///
    /// Exit status: 0 complete (every chunk chains, the final chunk is there, and a signed
    /// audit event seals it); 1 broken or tampered (a chunk altered, missing or unreadable,
    /// an audit event forged or edited, or a sealed head that does not match); 11
    /// incomplete (the chain holds but ends early: a live session, a killed worker, or
    /// chunks no audit event seals yet); 3 the bundle cannot be read.
    ///
    /// In a deployment (a bundle needs a recording, from the SSH gateway; `portcullis dev` has none):
    ///   portcullis sessions export s_0123... --format bundle -o rec.json
    ///   portcullis recordings verify rec.json --public-key "$(cat audit-keys.txt)"
    ///   portcullis recordings verify rec.json --public-key k_ab12:Base64Key= --json
    #[command(verbatim_doc_comment)]
    Verify {
        /// The bundle file (`sessions export --format bundle`).
        bundle: PathBuf,
        /// Trust only these audit public keys: KEY_ID:BASE64, repeatable; the output of
        /// `portcullis audit keys` pasted whole works too.
        #[arg(long = "public-key", value_name = "KEY_ID:BASE64")]
        public_keys: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: RecordingsCommand) -> anyhow::Result<i32> {
    match cmd {
        RecordingsCommand::Verify {
            bundle,
            public_keys,
            json,
        } => {
            let mut pinned = Vec::new();
            for text in &public_keys {
                pinned.extend(
                    PublicKeyInfo::parse_flag_lines(text)
                        .map_err(anyhow::Error::msg)
                        .context("bad --public-key")?,
                );
            }
            let text = std::fs::read(&bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let parsed: Bundle = serde_json::from_slice(&text).with_context(|| {
                format!(
                    "{} is not a recording bundle (`portcullis sessions export ID --format bundle` writes one)",
                    bundle.display()
                )
            })?;
            let report = verify_bundle(&parsed, &pinned)
                .with_context(|| format!("cannot check {}", bundle.display()))?;
            print_report(&report, json)?;
            Ok(exit_code(report.chain.state))
        }
    }
}

/// `recordings verify`'s exit status for a recording in `state`.
pub(crate) fn exit_code(state: State) -> i32 {
    match state {
        State::Complete => 0,
        State::Broken => 1,
        State::Incomplete => i32::from(exit::INCOMPLETE),
    }
}

fn print_report(report: &BundleReport, json: bool) -> anyhow::Result<()> {
    if json {
        return output::print_json(report);
    }
    let keys = if report.pinned_keys {
        format!("pinned keys {}", report.keys.join(", "))
    } else {
        format!(
            "the bundle's own keys {} (pin them with --public-key to prove where it came from)",
            report.keys.join(", ")
        )
    };
    let sealed = match report.seals.iter().max_by_key(|s| s.chunks) {
        Some(seal) => format!(
            "newest seal: audit event {} ({} chunks{})",
            seal.audit_sequence,
            seal.chunks,
            if seal.complete { ", final" } else { "" }
        ),
        None => "no seal".to_owned(),
    };
    output::print_fields(&[
        ("Recording", report.recording_id.clone()),
        ("Session", report.session_id.clone()),
        ("Result", report.chain.summary()),
        ("Chunks", report.chain.chunks.to_string()),
        (
            "Verified head",
            output::or_dash(Some(&report.chain.head_hash)),
        ),
        (
            "Audit events",
            format!("{} verified, {sealed}", report.events_verified),
        ),
        ("Keys", keys),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
