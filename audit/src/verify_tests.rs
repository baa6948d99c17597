use portcullis_crypto::ed25519::SigningKey;
use serde_json::{json, Map, Value};

use super::*;
use crate::chain::{PublicKeyInfo, Signer};

fn signer(id: &str) -> Signer {
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    Signer::from_pkcs8(id, &pkcs8).unwrap()
}

fn ring_of(signers: &[&Signer]) -> KeyRing {
    let infos: Vec<PublicKeyInfo> = signers
        .iter()
        .map(|s| PublicKeyInfo::ed25519(s.key_id(), s.public_key(), None))
        .collect();
    KeyRing::new(&infos)
}

/// A chain of `n` events starting at sequence 1.
fn chain(signer: &Signer, n: u64) -> Vec<Value> {
    let mut prev = GENESIS.to_owned();
    (1..=n)
        .map(|sequence| {
            let mut event: Map<String, Value> = json!({
                "schema": chain::SCHEMA, "id": format!("e_{sequence}"), "sequence": sequence,
                "time": "2025-01-01T00:00:00.000Z", "type": "target_created",
                "actor": {"user": "alice", "groups": ["admins"]},
                "details": {"n": sequence, "z": [1, {"b": 2, "a": 1}]}, "prev_hash": prev,
            })
            .as_object()
            .cloned()
            .unwrap();
            prev = signer.seal(&mut event).unwrap();
            Value::Object(event)
        })
        .collect()
}

fn verify(
    keys: KeyRing,
    events: &[Value],
    expect: Option<Head>,
    store: Option<&Head>,
) -> Result<Summary, Failure> {
    let mut v = Verifier::new(keys, expect);
    for e in events {
        v.push(e)?;
    }
    v.finish(store)
}

fn head_of(events: &[Value], sequence: u64) -> Head {
    let e = &events[usize::try_from(sequence - 1).unwrap()];
    Head {
        sequence,
        hash: e["hash"].as_str().unwrap().to_owned(),
    }
}

#[test]
fn a_clean_chain_verifies_up_to_its_head() {
    let s = signer("k_1");
    let events = chain(&s, 5);
    let head = head_of(&events, 5);
    let summary = verify(ring_of(&[&s]), &events, Some(head.clone()), Some(&head)).unwrap();
    assert_eq!(summary.events, 5);
    assert_eq!(summary.head, Some(head));
}

#[test]
fn canonical_form_ignores_member_order_and_whitespace() {
    let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 1, "x": "é"}], "a": null}"#).unwrap();
    assert_eq!(
        chain::canonical(&a).unwrap(),
        r#"{"a":null,"b":[1,{"x":"é","y":1}]}"#.as_bytes()
    );
    // A stored event re-read and re-serialised in another order still verifies.
    let s = signer("k_1");
    let events: Vec<Value> = chain(&s, 3)
        .into_iter()
        .map(|e| serde_json::from_str(&serde_json::to_string_pretty(&e).unwrap()).unwrap())
        .collect();
    verify(ring_of(&[&s]), &events, None, None).unwrap();
}

#[test]
fn an_edited_event_is_named() {
    let s = signer("k_1");
    let mut events = chain(&s, 5);
    events[2]["actor"]["user"] = json!("mallory");
    let failure = verify(ring_of(&[&s]), &events, None, None).unwrap_err();
    assert_eq!((failure.sequence, failure.problem), (3, Problem::Edited));
    assert_eq!(failure.id.as_deref(), Some("e_3"));
}

#[test]
fn a_deleted_event_is_named_by_its_position() {
    let s = signer("k_1");
    let mut events = chain(&s, 5);
    events.remove(1);
    let failure = verify(ring_of(&[&s]), &events, None, None).unwrap_err();
    assert_eq!(
        (failure.sequence, failure.problem),
        (2, Problem::OutOfSequence { found: 3 })
    );
}

#[test]
fn an_inserted_event_fails_its_signature() {
    let s = signer("k_1");
    let forger = signer("k_1"); // same key id, another key: cannot forge
    let mut events = chain(&s, 4);
    let mut forged = events[2].as_object().cloned().unwrap();
    forged.insert("id".into(), json!("e_forged"));
    forger.seal(&mut forged).unwrap();
    events[2] = Value::Object(forged);
    let failure = verify(ring_of(&[&s]), &events, None, None).unwrap_err();
    assert_eq!(
        (failure.sequence, failure.problem),
        (3, Problem::BadSignature)
    );
    assert_eq!(failure.id.as_deref(), Some("e_forged"));
}

#[test]
fn reordered_events_are_named() {
    let s = signer("k_1");
    let mut events = chain(&s, 5);
    events.swap(1, 3);
    let failure = verify(ring_of(&[&s]), &events, None, None).unwrap_err();
    assert_eq!(
        (failure.sequence, failure.problem),
        (2, Problem::OutOfSequence { found: 4 })
    );
}

#[test]
fn a_renumbered_chain_breaks_a_link() {
    let s = signer("k_1");
    let mut events = chain(&s, 5);
    events.remove(2);
    // Renumbering the rest to hide the gap changes their content, hence their hash.
    for (i, e) in events.iter_mut().enumerate().skip(2) {
        e["sequence"] = json!(i + 1);
    }
    let failure = verify(ring_of(&[&s]), &events, None, None).unwrap_err();
    assert_eq!(
        (failure.sequence, failure.problem),
        (3, Problem::BrokenLink)
    );
}

#[test]
fn a_cut_off_tail_is_found_against_the_expected_head_or_the_store_head() {
    let s = signer("k_1");
    let events = chain(&s, 6);
    let head = head_of(&events, 6);
    let failure = verify(ring_of(&[&s]), &events[..4], Some(head.clone()), None).unwrap_err();
    assert_eq!(failure.sequence, 5);
    assert_eq!(
        failure.problem,
        Problem::Truncated {
            last: Some(4),
            expected: 6
        }
    );
    let failure = verify(ring_of(&[&s]), &events[..4], None, Some(&head)).unwrap_err();
    assert_eq!(failure.sequence, 5);
    // Without a head to compare against, a shorter chain is still a valid chain.
    verify(ring_of(&[&s]), &events[..4], None, None).unwrap();
}

#[test]
fn a_rewritten_chain_does_not_match_the_expected_head() {
    let s = signer("k_1");
    let events = chain(&s, 4);
    let other = chain(&s, 4); // same content, other key material is not needed: ids equal
    let mut wrong = head_of(&other, 3);
    wrong.hash = "ab".repeat(32);
    let failure = verify(ring_of(&[&s]), &events, Some(wrong.clone()), None).unwrap_err();
    assert_eq!(failure.sequence, 3);
    assert_eq!(
        failure.problem,
        Problem::HeadMismatch {
            expected: wrong.hash
        }
    );
}

#[test]
fn events_signed_by_an_unknown_key_fail() {
    let s = signer("k_1");
    let other = signer("k_2");
    let events = chain(&s, 2);
    let failure = verify(ring_of(&[&other]), &events, None, None).unwrap_err();
    assert_eq!(failure.problem, Problem::UnknownKey("k_1".into()));
}

#[test]
fn unchained_events_are_allowed_only_before_the_chain() {
    let s = signer("k_1");
    let legacy = json!({"schema": 1, "id": "e_old", "type": "key_created"});
    let mut events = vec![legacy.clone()];
    events.extend(chain(&s, 2));
    let summary = verify(ring_of(&[&s]), &events, None, None).unwrap();
    assert_eq!((summary.unchained, summary.events), (1, 2));
    events.push(legacy);
    let failure = verify(ring_of(&[&s]), &events, None, None).unwrap_err();
    assert_eq!((failure.sequence, failure.problem), (3, Problem::Unsealed));
}

#[test]
fn checkpoints_verify_only_with_the_right_key() {
    let s = signer("k_1");
    let checkpoint = s.checkpoint(7, &"cd".repeat(32), "2025-01-01T00:00:00.000Z");
    assert!(checkpoint.verify(&ring_of(&[&s])));
    let mut moved = checkpoint.clone();
    moved.sequence = 6;
    assert!(!moved.verify(&ring_of(&[&s])));
    assert!(!checkpoint.verify(&ring_of(&[&signer("k_1")])));
}

#[test]
fn heads_parse_from_the_command_line() {
    let head: Head = format!("12:{}", "AB".repeat(32)).parse().unwrap();
    assert_eq!(head.sequence, 12);
    assert_eq!(head.hash, "ab".repeat(32));
    assert!("12".parse::<Head>().is_err());
    assert!("x:ab".parse::<Head>().is_err());
}

#[test]
fn redelivered_events_are_skipped_only_in_a_sink_copy() {
    let s = signer("k_1");
    let events = chain(&s, 4);
    let mut copy = events[..3].to_vec();
    copy.extend(events[1..].iter().cloned()); // the shipper resent 2 and 3, then sent 4
    let mut v = Verifier::new(ring_of(&[&s]), None).allow_redelivery();
    for e in &copy {
        v.push(e).unwrap();
    }
    assert_eq!(v.finish(None).unwrap().events, 4);
    let failure = verify(ring_of(&[&s]), &copy, None, None).unwrap_err();
    assert_eq!(failure.problem, Problem::OutOfSequence { found: 2 });
}

#[test]
fn every_index_column_is_checked_against_the_signed_body() {
    let s = signer("k_1");
    let mut events = chain(&s, 3);
    // A decision event, as authorize-session writes it.
    let mut body = events[2].as_object().cloned().unwrap();
    body.remove("hash");
    body.remove("signature");
    body.insert("type".into(), json!("session_denied"));
    body.insert("decision".into(), json!("deny"));
    body.insert("session".into(), Value::Null);
    body.insert("target".into(), json!("t_1"));
    body.insert(
        "actor".into(),
        json!({"user_id": "u_1", "user": "mallory", "groups": []}),
    );
    s.seal(&mut body).unwrap();
    events[2] = Value::Object(body);
    let columns: Vec<IndexColumns> = events
        .iter()
        .map(|e| IndexColumns::of(e.as_object().unwrap()).unwrap())
        .collect();
    assert_eq!(columns[2].actor.as_deref(), Some("u_1"));
    assert_eq!(columns[2].username.as_deref(), Some("mallory"));
    assert_eq!(columns[2].time, 1_735_689_600);
    let walk = |stored: &[IndexColumns]| {
        let mut v = Verifier::new(ring_of(&[&s]), None);
        for (e, c) in events.iter().zip(stored) {
            v.push_stored(e, c)?;
        }
        v.finish(None)
    };
    assert_eq!(walk(&columns).unwrap().events, 3);
    type Edit = fn(&mut IndexColumns);
    let edits: [(&str, Edit); 10] = [
        ("seq", |c| c.seq += 100),
        ("id", |c| c.id = "e_other".into()),
        ("time", |c| c.time += 3600),
        ("type", |c| c.kind = "login_succeeded".into()),
        ("actor", |c| c.actor = Some("u_2".into())),
        ("username", |c| c.username = Some("alice".into())),
        ("session_id", |c| c.session_id = Some("s_1".into())),
        ("target_id", |c| c.target_id = None),
        ("decision", |c| c.decision = Some("allow".into())),
        ("hash", |c| c.hash = Some(GENESIS.into())),
    ];
    for (column, edit) in edits {
        let mut stored = columns.clone();
        edit(&mut stored[2]);
        let failure = walk(&stored).unwrap_err();
        assert_eq!(failure.sequence, 3, "{column}");
        assert_eq!(failure.problem, Problem::IndexEdited { column }, "{column}");
        assert!(
            failure.to_string().contains(&format!("`{column}`")),
            "{failure}"
        );
    }
}

#[test]
fn an_event_at_the_largest_sequence_is_malformed_not_a_panic() {
    // Found by the `audit_verify` fuzz target: a chain signed by a key the verifier trusts
    // (an export header names its keys) overflowed `sequence + 1`.
    let s = signer("k1");
    let mut event: Map<String, Value> =
        json!({"schema": 2, "sequence": u64::MAX, "prev_hash": GENESIS})
            .as_object()
            .cloned()
            .unwrap();
    s.seal(&mut event).unwrap();
    let failure = verify(ring_of(&[&s]), &[Value::Object(event)], None, None).unwrap_err();
    assert!(
        matches!(&failure.problem, Problem::Malformed(m) if m.contains("out of range")),
        "{failure}"
    );
}

#[test]
fn a_resumed_walk_checks_only_the_events_after_its_start_and_their_link_to_it() {
    let s = signer("k_1");
    let events = chain(&s, 6);
    let from = head_of(&events, 3);
    let mut v = Verifier::resume(ring_of(&[&s]), from.clone());
    assert_eq!(v.last(), Some(&from));
    for e in &events[3..] {
        v.push(e).unwrap();
    }
    let summary = v.finish(Some(&head_of(&events, 6))).unwrap();
    assert_eq!(
        (summary.events, summary.head),
        (3, Some(head_of(&events, 6)))
    );

    // Nothing new: the start itself is the head.
    let v = Verifier::resume(ring_of(&[&s]), head_of(&events, 6));
    assert!(v.finish(Some(&head_of(&events, 6))).is_ok());

    // The next event must link to the start's hash and follow its sequence.
    let wrong = Head {
        sequence: 3,
        hash: "00".repeat(32),
    };
    let mut v = Verifier::resume(ring_of(&[&s]), wrong);
    let failure = v.push(&events[3]).unwrap_err();
    assert_eq!(
        (failure.sequence, failure.problem),
        (4, Problem::BrokenLink)
    );
    let mut v = Verifier::resume(ring_of(&[&s]), from);
    let failure = v.push(&events[4]).unwrap_err();
    assert_eq!(
        (failure.sequence, failure.problem),
        (4, Problem::OutOfSequence { found: 5 })
    );
}
