#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use portcullis_proto::access::{RequestState, UnderRequest};

use super::*;
use crate::store::access_requests::RunRecord;

fn target(name: &str) -> TargetRecord {
    TargetRecord {
        id: format!("t_{name}"),
        name: name.into(),
        address: "10.0.0.5:22".into(),
        zone: None,
        service: Some("ssh".into()),
        vmid: None,
        tags: vec![],
        pool: None,
        max_session_secs: 3600,
        connection_limit: 0,
        ssh_host_keys: vec![],
        ssh_host_cas: vec![],
        vault_ssh_mount: None,
        vault_ssh_role: None,
        vault_secrets: vec![],
        source: None,
        source_key: None,
        available: true,
        discovered: None,
        proxmox_cluster: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn request(run: Option<RunRecord>) -> AccessRecord {
    AccessRecord {
        id: "ar_1".into(),
        user_id: "u_1".into(),
        role: "oncall".into(),
        targets: vec!["web".into()],
        zone: None,
        state: RequestState::Approved,
        reason: None,
        break_glass: false,
        duration_secs: 600,
        created_at: 100,
        approved_at: Some(100),
        expires_at: 700,
        approvals_needed: 0,
        decided_by: None,
        decision_reason: None,
        run,
    }
}

struct Key(portcullis_crypto::ed25519::SigningKey);

impl Key {
    fn new() -> Key {
        let pkcs8 = portcullis_crypto::ed25519::SigningKey::generate_pkcs8().unwrap();
        Key(portcullis_crypto::ed25519::SigningKey::from_pkcs8(&pkcs8).unwrap())
    }
    fn public(&self) -> String {
        let raw: [u8; 32] = self.0.public_key().try_into().unwrap();
        portcullis_proto::keys::b64(&portcullis_proto::keys::ed25519_spki(&raw))
    }
    fn prove(&self, id: &str, client: &str) -> String {
        portcullis_proto::keys::b64(&self.0.sign(&run_proof_message(id, client)))
    }
}

fn running(key: &Key) -> RunRecord {
    RunRecord {
        command: vec!["make".into()],
        public_key: Some(key.public()),
        keepalive_secs: Some(10),
        started_at: Some(100),
        last_seen_at: Some(100),
        ..RunRecord::default()
    }
}

fn under(proof: Option<String>) -> UnderRequest {
    UnderRequest {
        request_id: "ar_1".into(),
        run_proof: proof,
    }
}

#[test]
fn a_run_session_needs_the_runs_proof_for_this_client_key_and_a_listed_target() {
    let key = Key::new();
    let r = request(Some(running(&key)));
    let good = under(Some(key.prove("ar_1", "CLIENT")));
    assert_eq!(check_run(&r, &target("web"), &good, "CLIENT"), Ok(()));
    // The proof of another session's key, or by another key, or none.
    let err = check_run(&r, &target("web"), &good, "OTHER").unwrap_err();
    assert!(err.contains("does not verify"), "{err}");
    let forged = under(Some(Key::new().prove("ar_1", "CLIENT")));
    assert!(check_run(&r, &target("web"), &forged, "CLIENT").is_err());
    let err = check_run(&r, &target("web"), &under(None), "CLIENT").unwrap_err();
    assert!(err.contains("only that run"), "{err}");
    // Outside the list.
    let err = check_run(&r, &target("db"), &good, "CLIENT").unwrap_err();
    assert!(err.contains("target list"), "{err}");
    // Not started, or finished.
    let mut idle = running(&key);
    idle.started_at = None;
    assert!(check_run(&request(Some(idle)), &target("web"), &good, "CLIENT").is_err());
    let mut done = running(&key);
    done.finished_at = Some(200);
    let err = check_run(&request(Some(done)), &target("web"), &good, "CLIENT").unwrap_err();
    assert!(err.contains("finished"), "{err}");
}

#[test]
fn a_request_without_a_run_takes_no_proof_and_covers_its_targets_or_its_zone() {
    let plain = request(None);
    assert_eq!(check_run(&plain, &target("web"), &under(None), "C"), Ok(()));
    assert!(check_run(&plain, &target("web"), &under(Some("x".into())), "C").is_err());
    assert!(covers(&plain, &target("web"), None));
    let mut by_id = plain.clone();
    by_id.targets = vec!["t_web".into()];
    assert!(covers(&by_id, &target("web"), None));
    assert!(!covers(&plain, &target("db"), Some("PROD")));
    let mut zoned = plain;
    zoned.targets = vec![];
    zoned.zone = Some("PROD".into());
    assert!(covers(&zoned, &target("db"), Some("PROD")));
    assert!(!covers(&zoned, &target("db"), Some("LAB")));
    assert!(!covers(&zoned, &target("db"), None));
}

fn decision(outcome: &str) -> Decision {
    serde_json::from_value(serde_json::json!({
        "outcome": outcome, "reason": "the matrix blocks LOCAL -> LAB (X)", "source_zone": "LOCAL",
        "target_zone": "LAB", "service": "ssh", "cells": [], "roles": [], "policy_hash": "h",
        "constraints": {"max_session_secs": null, "connection_limit": null, "logins": []}
    }))
    .unwrap()
}

#[test]
fn break_glass_requires_recording_and_a_denial_under_a_request_keeps_its_reason() {
    let mut glass = request(None);
    glass.break_glass = true;
    let covered = allowed(&glass, decision("allow")).unwrap();
    assert!(covered.decision.constraints.recording.required);
    assert_eq!(
        (covered.request_id.as_str(), covered.expires_at),
        ("ar_1", 700)
    );
    let plain = allowed(&request(None), decision("allow")).unwrap();
    assert!(!plain.decision.constraints.recording.required);
    let denied = allowed(&request(None), decision("deny")).unwrap_err();
    assert!(
        denied.reason.contains("ar_1") && denied.reason.contains("(X)"),
        "{}",
        denied.reason
    );
    assert!(denied.decision.is_some());
}
