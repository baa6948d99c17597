//! The bundle verifier on bundles built here with the real recorder and audit signer:
//! complete, incomplete, a flipped chunk byte, a forged or edited event, a head that does
//! not match, keys pinned from elsewhere, an unreadable chunk.

use std::time::Duration;

use portcullis_audit::chain::{PublicKeyInfo, Signer, GENESIS};
use portcullis_proto::recording::{
    Bundle, CastHeader, Encoded, Event, Recorder, RecordingId, StoredChunk, BUNDLE_FORMAT,
};
use serde_json::{json, Map, Value};

use super::bundle::verify_bundle;
use super::check::State;
use super::exit_code;
use crate::cli::exit;

const SESSION: &str = "s_1";
const RECORDING: &str = "c_1";

fn signer(seed: u8) -> Signer {
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap_or_default();
    pkcs8.extend_from_slice(&[seed; 32]);
    Signer::from_pkcs8(&format!("k_{seed}"), &pkcs8).unwrap()
}

fn key_line(signer: &Signer) -> String {
    let info = PublicKeyInfo::ed25519(signer.key_id(), signer.public_key(), None);
    format!("{}:{}", info.id, info.public_key)
}

/// A pty session of many small chunks; `finish` adds the final chunk.
fn recording(finish: bool) -> Vec<Encoded> {
    let mut rec = Recorder::with_chunk_len(RecordingId::new(RECORDING).unwrap(), 256);
    let mut out = Vec::new();
    let header = Event::PtyStarted(CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: "xterm".into(),
        command: None,
    });
    out.extend(rec.record(0, Duration::ZERO, &header).unwrap());
    for i in 0..30u64 {
        let line = Event::Output(format!("line {i} of the session\r\n"));
        out.extend(
            rec.record(0, Duration::from_millis(100 * i), &line)
                .unwrap(),
        );
    }
    out.extend(rec.flush().unwrap());
    if finish {
        out.extend(rec.finish().unwrap());
    }
    out
}

/// A sealed audit event: `recording_finished` (complete) or `recording_checkpoint` covering
/// chunks `0..chunks`.
fn seal_event(signer: &Signer, sequence: u64, chunks: &[Encoded], complete: bool) -> Value {
    let head = chunks.last().map(|c| c.hash.to_hex()).unwrap_or_default();
    let kind = if complete {
        "recording_finished"
    } else {
        "recording_checkpoint"
    };
    event(
        signer,
        sequence,
        kind,
        json!({
            "recording_id": RECORDING,
            "connection_id": RECORDING,
            "chunks": chunks.len(),
            "head_hash": head,
            "bytes": 0,
            "complete": complete,
        }),
    )
}

fn event(signer: &Signer, sequence: u64, kind: &str, details: Value) -> Value {
    let mut body = Map::new();
    body.insert("schema".into(), 3.into());
    body.insert("id".into(), format!("e_{sequence}").into());
    body.insert("sequence".into(), sequence.into());
    body.insert("time".into(), "2026-11-30T18:00:00Z".into());
    body.insert("type".into(), kind.into());
    body.insert("actor".into(), json!({"source": "worker:w_1"}));
    body.insert("target".into(), "t_1".into());
    body.insert("session".into(), SESSION.into());
    body.insert("decision".into(), Value::Null);
    body.insert("reason".into(), Value::Null);
    body.insert("policy_hash".into(), Value::Null);
    body.insert("details".into(), details);
    body.insert("prev_hash".into(), GENESIS.into());
    signer.seal(&mut body).unwrap();
    Value::Object(body)
}

fn bundle(chunks: &[Encoded], events: Vec<Value>, signer: &Signer) -> Bundle {
    Bundle {
        format: BUNDLE_FORMAT.into(),
        session_id: SESSION.into(),
        recording_id: RECORDING.into(),
        chunks: chunks
            .iter()
            .map(|c| StoredChunk {
                seq: c.seq,
                data: Some(c.bytes.clone()),
                unreadable: None,
            })
            .collect(),
        audit_events: events,
        public_keys: vec![key_line(signer)],
    }
}

/// A complete recording, sealed by a checkpoint and by its final event.
fn complete_bundle(signer: &Signer) -> (Vec<Encoded>, Bundle) {
    let chunks = recording(true);
    let started = event(signer, 7, "session_authorized", json!({}));
    let checkpoint = seal_event(signer, 9, &chunks[..3], false);
    let finished = seal_event(signer, 12, &chunks, true);
    let b = bundle(&chunks, vec![started, checkpoint, finished], signer);
    (chunks, b)
}

#[test]
fn a_complete_sealed_recording_verifies() {
    let signer = signer(1);
    let (chunks, b) = complete_bundle(&signer);
    assert!(chunks.len() > 5, "the test needs several chunks");
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Complete, "{report:?}");
    assert_eq!(report.chain.verified_up_to, chunks.len() as u64);
    assert_eq!(report.chain.sealed_up_to, chunks.len() as u64);
    assert_eq!(
        report.chain.head_hash,
        chunks[chunks.len() - 1].hash.to_hex()
    );
    assert_eq!(report.events_verified, 3);
    assert_eq!(report.seals.len(), 2);
    assert!(!report.pinned_keys);
    assert_eq!(exit_code(report.chain.state), 0);
    // Pinned to the key that signed it: the same.
    let pinned = PublicKeyInfo::parse_flag_lines(&key_line(&signer)).unwrap();
    let report = verify_bundle(&b, &pinned).unwrap();
    assert_eq!(report.chain.state, State::Complete);
    assert!(report.pinned_keys);
}

#[test]
fn a_recording_cut_short_is_incomplete_up_to_its_last_chunk() {
    let signer = signer(1);
    let chunks = recording(false);
    let checkpoint = seal_event(&signer, 4, &chunks[..2], false);
    let b = bundle(&chunks, vec![checkpoint], &signer);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Incomplete, "{report:?}");
    assert_eq!(report.chain.verified_up_to, chunks.len() as u64);
    assert_eq!(report.chain.sealed_up_to, 2);
    let summary = report.chain.summary();
    assert!(
        summary.starts_with(&format!(
            "incomplete: verified up to chunk {}",
            chunks.len() - 1
        )),
        "{summary}"
    );
    assert_eq!(exit_code(report.chain.state), i32::from(exit::INCOMPLETE));
}

#[test]
fn a_complete_chain_whose_final_chunk_is_not_sealed_is_incomplete() {
    let signer = signer(1);
    let chunks = recording(true);
    let checkpoint = seal_event(&signer, 4, &chunks[..2], false);
    let b = bundle(&chunks, vec![checkpoint], &signer);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Incomplete, "{report:?}");
    assert!(
        report
            .chain
            .why
            .as_deref()
            .unwrap_or("")
            .contains("not proven"),
        "{report:?}"
    );
}

#[test]
fn a_flipped_chunk_byte_breaks_the_recording_where_it_happened() {
    let signer = signer(1);
    let (_, mut b) = complete_bundle(&signer);
    // A byte of chunk 2's body (its last byte: the body ends the encoding).
    let data = b.chunks[2].data.as_mut().unwrap();
    let last = data.len() - 2;
    data[last] ^= 0x01;
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    // Chunk 3 no longer chains to chunk 2: the break is at chunk 2, chunks 0 and 1 stand.
    assert_eq!(report.chain.broken_at, Some(2));
    assert_eq!(report.chain.verified_up_to, 2);
    assert!(report.chain.summary().starts_with("BROKEN at chunk 2"));
    assert_eq!(exit_code(report.chain.state), 1);
}

#[test]
fn an_altered_last_chunk_is_caught_by_the_sealed_head() {
    // The chain alone cannot see a change to its last chunk: the seal does.
    let signer = signer(1);
    let chunks = recording(false);
    let checkpoint = seal_event(&signer, 4, &chunks, false);
    let mut b = bundle(&chunks, vec![checkpoint], &signer);
    let last = b.chunks.len() - 1;
    let data = b.chunks[last].data.as_mut().unwrap();
    let at = data.len() - 3;
    data[at] = b'X';
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    assert_eq!(report.chain.broken_at, Some(last as u64));
    assert!(
        report
            .chain
            .why
            .as_deref()
            .unwrap_or("")
            .contains("audit event 4"),
        "{report:?}"
    );
}

#[test]
fn a_head_mismatch_breaks_the_recording() {
    let signer = signer(1);
    let chunks = recording(true);
    // The seal names another head for chunk 3: the stored chunk 3 is not what was sealed.
    let mut checkpoint = seal_event(&signer, 5, &chunks[..4], false);
    checkpoint["details"]["head_hash"] = Value::String("ab".repeat(32));
    let mut body = checkpoint.as_object().unwrap().clone();
    signer.seal(&mut body).unwrap();
    let finished = seal_event(&signer, 9, &chunks, true);
    let b = bundle(&chunks, vec![Value::Object(body), finished], &signer);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    assert_eq!(report.chain.broken_at, Some(3));
    assert_eq!(report.chain.verified_up_to, 3);
}

#[test]
fn removed_final_chunks_are_caught_by_the_seal() {
    let signer = signer(1);
    let (chunks, mut b) = complete_bundle(&signer);
    b.chunks.truncate(chunks.len() - 2);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    assert_eq!(report.chain.broken_at, Some(chunks.len() as u64 - 2));
}

#[test]
fn a_forged_or_edited_event_is_tampering() {
    let signer = signer(1);
    // Forged: signed by a key of the forger's, who left the bundle's keys alone.
    let forger = self::signer(2);
    let (chunks, mut b) = complete_bundle(&signer);
    b.audit_events[2] = seal_event(&forger, 12, &chunks, true);
    // ... under the real key's id, so that only the signature is wrong.
    let mut forged = b.audit_events[2].as_object().unwrap().clone();
    forged.insert("key_id".into(), signer.key_id().into());
    forged.insert(
        "hash".into(),
        portcullis_audit::chain::event_hash(&forged).unwrap().into(),
    );
    b.audit_events[2] = Value::Object(forged);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    let bad = report.bad_event.as_ref().unwrap();
    assert_eq!(bad.sequence, Some(12));
    assert!(bad.problem.contains("forged"), "{bad:?}");
    assert!(
        report
            .chain
            .summary()
            .starts_with("BROKEN: audit event 12 is not genuine"),
        "{}",
        report.chain.summary()
    );
    assert_eq!(exit_code(report.chain.state), 1);

    // Edited: a signed event whose content changed afterwards.
    let (_, mut b) = complete_bundle(&signer);
    b.audit_events[1]["details"]["chunks"] = json!(1);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    let bad = report.bad_event.unwrap();
    assert_eq!(bad.sequence, Some(9));
    assert!(bad.problem.contains("edited"), "{bad:?}");
}

#[test]
fn a_bundle_re_signed_with_another_key_fails_only_against_pinned_keys() {
    // Whoever can write the store re-records the session and signs it all with a key of
    // their own, which they put in the bundle: consistent, but not ours.
    let ours = signer(1);
    let theirs = signer(2);
    let (_, b) = complete_bundle(&theirs);
    let unpinned = verify_bundle(&b, &[]).unwrap();
    assert_eq!(unpinned.chain.state, State::Complete);
    let pinned = PublicKeyInfo::parse_flag_lines(&key_line(&ours)).unwrap();
    let report = verify_bundle(&b, &pinned).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    let bad = report.bad_event.unwrap();
    assert!(bad.problem.contains("not among the keys"), "{bad:?}");
    assert_eq!(report.keys, vec![ours.key_id().to_owned()]);
}

#[test]
fn an_unreadable_chunk_breaks_the_recording() {
    let signer = signer(1);
    let (_, mut b) = complete_bundle(&signer);
    b.chunks[4].data = None;
    b.chunks[4].unreadable = Some("the ciphertext does not authenticate".into());
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
    assert_eq!(report.chain.broken_at, Some(4));
    assert!(
        report
            .chain
            .why
            .as_deref()
            .unwrap_or("")
            .contains("cannot be read"),
        "{report:?}"
    );
}

#[test]
fn seals_of_other_recordings_and_foreign_chunks_do_not_count() {
    let signer = signer(1);
    let chunks = recording(true);
    let mut other = seal_event(&signer, 3, &chunks, true);
    other["details"]["recording_id"] = json!("c_other");
    let mut body = other.as_object().unwrap().clone();
    signer.seal(&mut body).unwrap();
    let b = bundle(&chunks, vec![Value::Object(body)], &signer);
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Incomplete, "{report:?}");
    assert!(report.seals.is_empty());

    // The bundle names another recording than its chunks hold.
    let (_, mut b) = complete_bundle(&signer);
    b.recording_id = "c_2".into();
    let report = verify_bundle(&b, &[]).unwrap();
    assert_eq!(report.chain.state, State::Broken, "{report:?}");
}

#[test]
fn a_bundle_without_keys_or_of_another_format_is_refused() {
    let signer = signer(1);
    let (_, mut b) = complete_bundle(&signer);
    b.public_keys.clear();
    let err = verify_bundle(&b, &[]).unwrap_err();
    assert!(err.to_string().contains("--public-key"), "{err}");
    b.format = "something-else".into();
    assert!(verify_bundle(&b, &[]).is_err());
}

#[test]
fn the_bundle_report_is_stable_json() {
    let signer = signer(1);
    let (chunks, b) = complete_bundle(&signer);
    let report = verify_bundle(&b, &[]).unwrap();
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["state"], "complete");
    assert_eq!(value["verified_up_to"], chunks.len());
    assert_eq!(value["sealed_up_to"], chunks.len());
    assert_eq!(value["events_verified"], 3);
    assert_eq!(value["pinned_keys"], false);
    assert_eq!(value["seals"][1]["audit_sequence"], 12);
}

#[test]
fn seals_are_read_from_the_controllers_event_shape() {
    use super::seal::RecordingEvent;
    let signer = signer(1);
    let chunks = recording(true);
    // The session is the event's own member; the details carry the rest.
    let finished = seal_event(&signer, 12, &chunks, true);
    let Some(Ok(RecordingEvent::Sealed(seal))) = RecordingEvent::of(&finished) else {
        panic!("not read as a seal: {finished}");
    };
    assert_eq!(seal.session_id, SESSION);
    assert_eq!(seal.recording_id, RECORDING);
    assert_eq!(seal.audit_sequence, 12);
    assert_eq!(seal.chunks, chunks.len() as u64);
    assert_eq!(seal.head_hash, chunks[chunks.len() - 1].hash.to_hex());
    assert!(seal.complete);
    // A big number written as a string (I-JSON) still reads.
    let mut big = finished.clone();
    big["details"]["chunks"] = json!("9007199254740993");
    let Some(Ok(RecordingEvent::Sealed(seal))) = RecordingEvent::of(&big) else {
        panic!("not read as a seal");
    };
    assert_eq!(seal.chunks, 9_007_199_254_740_993);
    // A seal without its head is an error, not silence.
    let mut headless = finished.clone();
    headless["details"]
        .as_object_mut()
        .unwrap()
        .remove("head_hash");
    assert!(matches!(RecordingEvent::of(&headless), Some(Err(_))));
    // A deletion by the retention.
    let deleted = event(
        &signer,
        20,
        "recording_deleted",
        json!({"recording_id": RECORDING, "chunks": 3, "bytes": 10}),
    );
    assert_eq!(
        RecordingEvent::of(&deleted),
        Some(Ok(RecordingEvent::Deleted {
            session_id: SESSION.into(),
            recording_id: RECORDING.into()
        }))
    );
    // Other events are not about recordings.
    let other = event(&signer, 21, "session_authorized", json!({}));
    assert_eq!(RecordingEvent::of(&other), None);
}
