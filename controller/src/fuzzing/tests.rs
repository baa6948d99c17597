//! Replays the seed corpus and every past crash of the controller's fuzz targets (see
//! `fuzz/README.md`).

use std::path::Path;

use super::*;

include!("../../../fuzz/replay.rs");

fn replay(name: &str, target: fn(&[u8])) {
    replay_corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz"),
        name,
        target,
    );
}

#[test]
fn controller_config_corpus_replays() {
    replay("controller_config", controller_config);
}

#[test]
fn oidc_callback_corpus_replays() {
    replay("oidc_callback", oidc_callback);
}

#[test]
fn proxmox_answers_corpus_replays() {
    replay("proxmox_answers", proxmox_answers);
}

#[test]
fn audit_verify_corpus_replays() {
    replay("audit_verify", audit_verify);
}

#[test]
fn sealed_seed_chain_verifies_so_the_fuzzer_starts_past_the_signature() {
    let signer = audit_signer().unwrap();
    let mut prev = crate::audit::chain::GENESIS.to_owned();
    let mut verifier = Verifier::new(
        KeyRing::new(&[PublicKeyInfo::ed25519(
            signer.key_id(),
            signer.public_key(),
            None,
        )]),
        None,
    );
    for sequence in 1..=2 {
        let mut event = serde_json::json!({"schema": 2, "sequence": sequence, "type": "x"})
            .as_object()
            .cloned()
            .unwrap();
        seal(&signer, &mut event, &mut prev);
        verifier.push(&Value::Object(event)).unwrap();
    }
    assert_eq!(verifier.finish(None).unwrap().events, 2);
}

/// Writes the seeds of `audit_verify` (an export, a sink's copy, a chain for the harness to
/// seal): `cargo test -p portcullis-controller --lib -- --ignored write_audit_seeds`.
#[test]
#[ignore = "regenerates fuzz/corpus seeds"]
fn write_audit_seeds() {
    let signer = audit_signer().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/audit_verify");
    std::fs::create_dir_all(&dir).unwrap();
    let event = |sequence: u64| {
        serde_json::json!({
            "schema": 2, "id": format!("ev_{sequence}"), "sequence": sequence,
            "time": "2026-01-01T00:00:00.000Z", "type": "session_authorized",
            "actor": {"user": "alice", "groups": ["admins"], "source": "10.0.0.5"},
            "decision": "allow",
            "details": {"session_id": "s_1", "cells": ["ops>prod"], "n": [1.5, -2, null]},
        })
        .as_object()
        .cloned()
        .unwrap()
    };
    let mut prev = crate::audit::chain::GENESIS.to_owned();
    let sealed: Vec<String> = (1..=3)
        .map(|sequence| {
            let mut e = event(sequence);
            seal(&signer, &mut e, &mut prev);
            Value::Object(e).to_string()
        })
        .collect();
    let checkpoint =
        serde_json::to_string(&signer.checkpoint(3, &prev, "2026-01-01T00:00:01Z")).unwrap();
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        version: 1,
        exported_at: "2026-01-01T00:00:02.000Z".into(),
        head: Some(Head {
            sequence: 3,
            hash: prev.clone(),
        }),
        keys: vec![PublicKeyInfo::ed25519(
            signer.key_id(),
            signer.public_key(),
            Some("active"),
        )],
    };
    let export = [
        vec![serde_json::to_string(&header).unwrap()],
        sealed.clone(),
        vec![checkpoint.clone()],
    ]
    .concat()
    .join("\n");
    std::fs::write(dir.join("export"), [b"\x00", export.as_bytes()].concat()).unwrap();
    let sink = [sealed.clone(), vec![sealed[1].clone(), checkpoint]]
        .concat()
        .join("\n");
    std::fs::write(dir.join("sink_copy"), [b"\x00", sink.as_bytes()].concat()).unwrap();
    let unsealed: Vec<String> = (1..=3)
        .map(|sequence| Value::Object(event(sequence)).to_string())
        .collect();
    let unsealed = [vec![r#"{"type":"legacy","schema":1}"#.to_owned()], unsealed]
        .concat()
        .join("\n");
    std::fs::write(
        dir.join("resealed"),
        [b"\x01", unsealed.as_bytes()].concat(),
    )
    .unwrap();
}
