//! The offline check of an exported bundle (`portcullis recordings verify`): every audit event
//! it carries is checked on its own (hash and signature, by the bundle's keys or only the
//! pinned ones), the sealed heads among them are read, and the chunks are checked against
//! them ([`super::check`]). Pure: the caller reads the file and prints the report.
//!
//! The bundle holds a selection of the audit log, not the whole chain, so the events' links
//! (`prev_hash`) are not checked here; each event's signature is what proves it. With the
//! bundle's own keys the check proves the bundle is consistent; only keys pinned from
//! elsewhere (`--public-key`) prove it came from this Portcullis.

use anyhow::bail;
use portcullis_audit::chain::{event_hash, KeyRing, PublicKeyInfo};
use portcullis_proto::recording::{Bundle, BUNDLE_FORMAT};
use serde::Serialize;
use serde_json::Value;

use super::check::{check, ChainReport, State};
use super::seal::{RecordingEvent, Seal};

/// What [`verify_bundle`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BundleReport {
    pub(crate) session_id: String,
    pub(crate) recording_id: String,
    /// The chain and its seals; `state` is broken also when an audit event is forged.
    #[serde(flatten)]
    pub(crate) chain: ChainReport,
    /// Audit events whose hash and signature verified.
    pub(crate) events_verified: usize,
    /// The first audit event that failed its check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bad_event: Option<BadEvent>,
    /// The seals of this recording found among the verified events, oldest first.
    pub(crate) seals: Vec<Seal>,
    /// The ids of the keys the events were checked with.
    pub(crate) keys: Vec<String>,
    /// Whether those were pinned (`--public-key`) rather than taken from the bundle.
    pub(crate) pinned_keys: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BadEvent {
    /// Its position in the bundle's `audit_events`.
    pub(crate) index: usize,
    /// Its `sequence`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sequence: Option<u64>,
    pub(crate) problem: String,
}

/// Checks `bundle`; with `pinned` keys, only events they signed count as signed.
pub(crate) fn verify_bundle(
    bundle: &Bundle,
    pinned: &[PublicKeyInfo],
) -> anyhow::Result<BundleReport> {
    if bundle.format != BUNDLE_FORMAT {
        bail!(
            "the file is a {:?}, not a recording bundle ({BUNDLE_FORMAT}); export one with \
             `portcullis sessions export ID --format bundle`",
            bundle.format
        );
    }
    let keys = if pinned.is_empty() {
        bundle_keys(bundle)?
    } else {
        pinned.to_vec()
    };
    if keys.is_empty() {
        bail!(
            "no audit public keys: the bundle carries none; give --public-key KEY_ID:BASE64 \
             (from `portcullis audit keys`)"
        );
    }
    let ring = KeyRing::new(&keys);
    let mut bad_event = None;
    let mut seals = Vec::new();
    let mut events_verified = 0;
    for (index, event) in bundle.audit_events.iter().enumerate() {
        let sequence = event.get("sequence").and_then(Value::as_u64);
        if let Err(problem) = check_event(event, &ring) {
            bad_event = Some(BadEvent {
                index,
                sequence,
                problem,
            });
            break;
        }
        events_verified += 1;
        match RecordingEvent::of(event) {
            Some(Ok(RecordingEvent::Sealed(seal))) if seal.recording_id == bundle.recording_id => {
                seals.push(seal);
            }
            Some(Err(why)) => {
                bad_event = Some(BadEvent {
                    index,
                    sequence,
                    problem: format!("a recording event this CLI cannot read: {why}"),
                });
                break;
            }
            _ => {}
        }
    }
    let mut chain = {
        let mine: Vec<&Seal> = seals.iter().collect();
        check(&bundle.chunks, &mine)
    };
    if let Some(problem) = first_foreign_chunk(bundle) {
        chain.state = State::Broken;
        chain.broken_at = Some(0);
        chain.verified_up_to = 0;
        chain.sealed_up_to = 0;
        chain.head_hash.clear();
        chain.why = Some(problem);
    }
    if let Some(bad) = &bad_event {
        // A forged or edited event: nothing it or any later event says can be trusted.
        chain.state = State::Broken;
        let at = bad
            .sequence
            .map_or(format!("#{}", bad.index), |s| s.to_string());
        chain.why = Some(format!("audit event {at} is not genuine: {}", bad.problem));
    }
    if let Some(seal) = seals.iter().find(|s| s.session_id != bundle.session_id) {
        chain.state = State::Broken;
        chain.why = Some(format!(
            "audit event {} seals this recording for session {}, not {}",
            seal.audit_sequence, seal.session_id, bundle.session_id
        ));
    }
    Ok(BundleReport {
        session_id: bundle.session_id.clone(),
        recording_id: bundle.recording_id.clone(),
        chain,
        events_verified,
        bad_event,
        seals,
        keys: keys.iter().map(|k| k.id.clone()).collect(),
        pinned_keys: !pinned.is_empty(),
    })
}

fn bundle_keys(bundle: &Bundle) -> anyhow::Result<Vec<PublicKeyInfo>> {
    let mut keys = Vec::new();
    for line in &bundle.public_keys {
        keys.extend(PublicKeyInfo::parse_flag_lines(line).map_err(|why| {
            anyhow::anyhow!("the bundle's public key line {line:?} is not KEY_ID:BASE64: {why}")
        })?);
    }
    Ok(keys)
}

/// Checks one event on its own: its content matches its hash, and a key of `ring` signed it.
fn check_event(event: &Value, ring: &KeyRing) -> Result<(), String> {
    let object = event.as_object().ok_or("it is not a JSON object")?;
    let text = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("it has no `{name}`"))
    };
    let (hash, key_id, signature) = (text("hash")?, text("key_id")?, text("signature")?);
    let computed = event_hash(object).map_err(|e| format!("it cannot be hashed: {e}"))?;
    if computed != hash {
        return Err("its content does not match its hash: it was edited".into());
    }
    if !ring.contains(key_id) {
        return Err(format!(
            "it is signed by key {key_id}, which is not among the keys checked with"
        ));
    }
    if !ring.verify_event(key_id, hash, signature) {
        return Err(format!(
            "its signature by key {key_id} does not verify: it was forged"
        ));
    }
    Ok(())
}

/// A chunk that names another recording than the bundle does, if any. The chain check
/// already holds every chunk to one recording id; this holds that id to the bundle's, which
/// the seals are matched by.
fn first_foreign_chunk(bundle: &Bundle) -> Option<String> {
    let first = bundle.chunks.first()?.data.as_deref()?;
    let chunk = portcullis_proto::recording::Chunk::decode(first).ok()?;
    let id = chunk.header.recording_id;
    (id.as_str() != bundle.recording_id).then(|| {
        format!(
            "the chunks belong to recording {id}, the bundle names {}",
            bundle.recording_id
        )
    })
}
