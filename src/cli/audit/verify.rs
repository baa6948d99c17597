//! `portcullis audit verify` and `audit keys`: walking the chain on the live store, an export
//! or a SIEM's copy, with pinned keys and checkpoints, and reporting the first bad event.

use std::io::{BufRead as _, BufReader};
use std::path::Path;

use anyhow::{bail, Context as _};
use portcullis_audit::chain::{Checkpoint, KeyRing, PublicKeyInfo, CHECKPOINT_TYPE};
use portcullis_audit::verify::{ExportHeader, Head, Summary, Verifier, EXPORT_FORMAT};
use serde_json::Value;

use super::recordings::{check_sealed, RecordingsCheck, SealedHeads};
use super::ExportPage;
use crate::cli::http::{ApiClient, ClientArgs};
use crate::cli::output;

/// What `verify` found.
pub(super) struct Outcome {
    result: Result<Summary, portcullis_audit::verify::Failure>,
    source: String,
    keys: Vec<String>,
    pinned: bool,
    expected: Option<Head>,
    /// The sealed recordings checked (the live store only, once the chain verified).
    recordings: Option<RecordingsCheck>,
}

fn ring(pinned: &[PublicKeyInfo], header_keys: &[PublicKeyInfo]) -> anyhow::Result<KeyRing> {
    let keys = if pinned.is_empty() {
        header_keys
    } else {
        pinned
    };
    if keys.is_empty() {
        bail!("no audit public keys: the export has none; give --public-key KEY_ID:BASE64");
    }
    Ok(KeyRing::new(keys))
}

pub(super) async fn verify_live(
    api: &ApiClient,
    pinned: Vec<PublicKeyInfo>,
    expect: Option<Head>,
) -> anyhow::Result<Outcome> {
    let mut after = 0;
    let mut verifier: Option<Verifier> = None;
    let mut store_head = None;
    let mut keys = Vec::new();
    let mut heads = SealedHeads::default();
    loop {
        let page: ExportPage = api
            .get(&format!("/v1/audit/export?after={after}&limit=5000"))
            .await
            .context("cannot read the audit log")?;
        let v = match verifier.as_mut() {
            Some(v) => v,
            None => {
                keys = page.header.keys.iter().map(|k| k.id.clone()).collect();
                store_head = page.header.head.clone();
                verifier.insert(Verifier::new(
                    ring(&pinned, &page.header.keys)?,
                    expect.clone(),
                ))
            }
        };
        let columns = page.columns.as_deref().unwrap_or_default();
        if page.columns.is_some() && columns.len() != page.events.len() {
            bail!(
                "the controller's export page has {} events but {} index rows",
                page.events.len(),
                columns.len()
            );
        }
        for (i, e) in page.events.iter().enumerate() {
            let pushed = match columns.get(i) {
                Some(stored) => v.push_stored(e, stored),
                None => v.push(e),
            };
            if let Err(failure) = pushed {
                return Ok(Outcome {
                    result: Err(failure),
                    source: "the live store".into(),
                    keys,
                    pinned: !pinned.is_empty(),
                    expected: expect,
                    recordings: None,
                });
            }
            heads.push(e);
        }
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    let verifier = verifier.context("the controller returned no export header")?;
    let result = verifier.finish(store_head.as_ref());
    let recordings = match &result {
        Ok(_) => Some(check_sealed(api, &heads).await),
        Err(_) => None,
    };
    Ok(Outcome {
        result,
        source: "the live store".into(),
        keys,
        pinned: !pinned.is_empty(),
        expected: expect,
        recordings,
    })
}

/// Verifies an export (header line first) or a sink copy (events and checkpoints, possibly
/// with duplicates from at-least-once delivery).
pub(super) async fn verify_file(
    path: &Path,
    pinned: Vec<PublicKeyInfo>,
    expect: Option<Head>,
    client: &ClientArgs,
) -> anyhow::Result<Outcome> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = BufReader::new(file).lines().enumerate().peekable();
    // An export starts with its header; a sink copy does not.
    let mut header: Option<ExportHeader> = None;
    if let Some((_, Ok(first))) = lines.peek() {
        if let Ok(h) = serde_json::from_str::<ExportHeader>(first) {
            if h.format == EXPORT_FORMAT {
                header = Some(h);
                lines.next();
            }
        }
    }
    let header_keys = match &header {
        Some(h) => h.keys.clone(),
        // A sink copy carries no keys: without --public-key, ask the controller.
        None if pinned.is_empty() => live_keys(client)
            .await
            .context("a sink copy carries no audit public keys: give --public-key KEY_ID:BASE64")?,
        None => Vec::new(),
    };
    let keys: Vec<String> = if pinned.is_empty() {
        header_keys.iter().map(|k| k.id.clone()).collect()
    } else {
        pinned.iter().map(|k| k.id.clone()).collect()
    };
    let mut verifier = Verifier::new(ring(&pinned, &header_keys)?, expect.clone());
    if header.is_none() {
        verifier = verifier.allow_redelivery();
    }
    let source = path.display().to_string();
    for (index, line) in lines {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => Value::String(format!("line {}: {e}", index + 1)),
        };
        if value.get("type").and_then(Value::as_str) == Some(CHECKPOINT_TYPE) {
            continue;
        }
        if let Err(failure) = verifier.push(&value) {
            return Ok(Outcome {
                result: Err(failure),
                source,
                keys,
                pinned: !pinned.is_empty(),
                expected: expect,
                recordings: None,
            });
        }
    }
    let store_head = header.and_then(|h| h.head);
    Ok(Outcome {
        result: verifier.finish(store_head.as_ref()),
        source,
        keys,
        pinned: !pinned.is_empty(),
        expected: expect,
        recordings: None,
    })
}

/// The newest checkpoint in a sink's copy whose signature verifies: with pinned keys, against
/// them; otherwise against the live controller's audit keys.
pub(super) async fn newest_checkpoint(
    path: &Path,
    pinned: &[PublicKeyInfo],
    client: &ClientArgs,
) -> anyhow::Result<Head> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let keys = if pinned.is_empty() {
        let api = ApiClient::from_args(client)?;
        let page: ExportPage = api.get("/v1/audit/export?limit=1").await.context(
            "cannot read the audit public keys to check the checkpoints; give --public-key",
        )?;
        KeyRing::new(&page.header.keys)
    } else {
        KeyRing::new(pinned)
    };
    let mut newest: Option<Checkpoint> = None;
    let mut forged = 0;
    for line in text.lines() {
        let Ok(c) = serde_json::from_str::<Checkpoint>(line) else {
            continue;
        };
        if c.kind != CHECKPOINT_TYPE {
            continue;
        }
        if !c.verify(&keys) {
            forged += 1;
            continue;
        }
        if newest.as_ref().is_none_or(|n| c.sequence > n.sequence) {
            newest = Some(c);
        }
    }
    if forged > 0 {
        eprintln!(
            "warning: {forged} checkpoint(s) in {} have signatures that do not verify; ignored",
            path.display()
        );
    }
    let c = newest.with_context(|| {
        format!(
            "{} holds no checkpoint with a valid signature",
            path.display()
        )
    })?;
    Ok(Head {
        sequence: c.sequence,
        hash: c.hash,
    })
}

/// The audit public keys the live controller publishes.
pub(super) async fn live_keys(client: &ClientArgs) -> anyhow::Result<Vec<PublicKeyInfo>> {
    let api = ApiClient::from_args(client)?;
    let page: ExportPage = api.get("/v1/audit/export?limit=1").await?;
    Ok(page.header.keys)
}

pub(super) fn report(outcome: &Outcome, json: bool) -> anyhow::Result<i32> {
    let keys_note = if outcome.pinned {
        "pinned keys"
    } else {
        "keys from the export (pin them with --public-key to rule out a replaced key)"
    };
    match &outcome.result {
        Ok(summary) => {
            if json {
                output::print_json(&serde_json::json!({
                    "ok": !outcome.recordings.as_ref().is_some_and(RecordingsCheck::failed),
                    "source": outcome.source,
                    "events": summary.events,
                    "unchained": summary.unchained,
                    "head": summary.head.as_ref().map(ToString::to_string),
                    "expected_head": outcome.expected.as_ref().map(ToString::to_string),
                    "keys": outcome.keys,
                    "pinned_keys": outcome.pinned,
                    "recordings": outcome.recordings,
                }))?;
            } else {
                let head = summary
                    .head
                    .as_ref()
                    .map_or("none (empty chain)".to_owned(), ToString::to_string);
                let mut text = format!(
                    "The audit chain of {} is intact: {} events verified, head {head}, {keys_note}.\n",
                    outcome.source, summary.events,
                );
                if summary.unchained > 0 {
                    text.push_str(&format!(
                        "{} events from before the chain began carry no hash and were not verified.\n",
                        summary.unchained
                    ));
                }
                if let Some(e) = &outcome.expected {
                    text.push_str(&format!("It reaches the expected head {e}.\n"));
                }
                if let Some(check) = &outcome.recordings {
                    if !check.failed() {
                        // Ids come from the store.
                        text.push_str(&format!(
                            "{}\n",
                            portcullis_proto::text::escaped(check.sentence())
                        ));
                    }
                }
                output::write_stdout(&text)?;
                if let Some(check) = outcome.recordings.as_ref().filter(|c| c.failed()) {
                    eprintln!("{}", portcullis_proto::text::escaped(check.sentence()));
                }
            }
            Ok(
                if outcome
                    .recordings
                    .as_ref()
                    .is_some_and(RecordingsCheck::failed)
                {
                    1
                } else {
                    0
                },
            )
        }
        Err(failure) => {
            if json {
                output::print_json(&serde_json::json!({
                    "ok": false,
                    "source": outcome.source,
                    "first_bad_event": failure.sequence,
                    "event_id": failure.id,
                    "problem": failure.problem.to_string(),
                    "keys": outcome.keys,
                    "pinned_keys": outcome.pinned,
                }))?;
            } else {
                // The event id and a malformed event's text come from the store.
                eprintln!(
                    "The audit chain of {} is NOT intact. First bad {}",
                    outcome.source,
                    portcullis_proto::text::escaped(failure)
                );
            }
            Ok(1)
        }
    }
}
