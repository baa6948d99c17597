//! Reading recordings through the API (who may, what each read audits, what a chunk page and
//! a bundle hold), the retention, and the recording key's rotation; the fixture and the
//! ingest tests are `recordings_tests`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use portcullis_proto::recording::{Bundle, ChunkOutcome, Encoded, RecordingList, RecordingState};
use serde_json::{json, Value};

use super::gateway_tests::events_of;
use super::recordings_tests::{all, recording, rig};

#[tokio::test]
async fn reads_need_the_owner_or_recordings_read_are_audited_and_a_refusal_is_audited() {
    let rig = rig("").await;
    let session = rig.session().await;
    let chunks = recording("c_read", 20, true);
    rig.send(&rig.worker, all(&session, "c_read", &chunks))
        .await;
    let list = format!("/v1/sessions/{session}/recordings");
    let page = format!("/v1/sessions/{session}/recordings/c_read/chunks?from=2");
    let bundle = format!("/v1/sessions/{session}/recordings/c_read/bundle");

    // Someone else without recordings:read (sessions:read-all is not enough).
    let admin = rig.api.login("root", &["admins"]).await;
    let bob = rig.api.login("bob", &["gateway"]).await;
    for token in [&admin, &bob] {
        for path in [&list, &page, &bundle] {
            let ((status, body), events) = rig.api.audited(rig.get(token, path)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
            assert_eq!(events, ["permission_denied"], "{path}");
        }
    }
    let denied = events_of(&rig.api, "permission_denied").await;
    assert_eq!(
        denied.last().unwrap()["details"]["permission"],
        "recordings:read"
    );

    // The owner and an auditor may; each read is audited with what was read.
    let auditor = rig.api.login("carol", &["auditors"]).await;
    for token in [&rig.alice, &auditor] {
        let ((status, body), events) = rig.api.audited(rig.get(token, &list)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(events, ["recording_read"]);
        let list: RecordingList = serde_json::from_value(body).unwrap();
        assert_eq!(list.recordings.len(), 1);
        assert_eq!(list.recordings[0].state, RecordingState::Complete);
        assert_eq!(list.recordings[0].chunks, chunks.len() as u64);

        let ((status, body), events) = rig.api.audited(rig.get(token, &page)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(events, ["recording_read"]);
        assert_eq!(body["chunks"][0]["seq"], 2);

        let ((status, body), events) = rig.api.audited(rig.get(token, &bundle)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(events, ["recording_read"]);
        let bundle: Bundle = serde_json::from_value(body).unwrap();
        assert_eq!(bundle.chunks.len(), chunks.len());
        let kinds: Vec<&str> = bundle
            .audit_events
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["session_authorized", "recording_finished"]);
        assert!(
            bundle.audit_events[1]["signature"].is_string(),
            "{:?}",
            bundle.audit_events[1]
        );
        let audit_key = rig
            .api
            .state
            .keys
            .active(crate::Purpose::Audit)
            .await
            .unwrap();
        assert!(bundle
            .public_keys
            .iter()
            .any(|k| k.starts_with(&format!("{}:", audit_key.id))));
    }
    let reads = events_of(&rig.api, "recording_read").await;
    let whats: Vec<(&str, &Value)> = reads
        .iter()
        .map(|e| {
            (
                e["details"]["what"].as_str().unwrap(),
                &e["details"]["recording_id"],
            )
        })
        .collect();
    assert_eq!(whats[0], ("list", &Value::Null));
    assert_eq!(whats[1], ("chunks", &json!("c_read")));
    assert_eq!(reads[1]["details"]["from"], 2);
    assert_eq!(whats[2], ("bundle", &json!("c_read")));
    assert_eq!(reads[3]["actor"]["user"], "carol");

    // An unknown recording of a session one may read is a 404; a page over 1024 a 400.
    let (status, _) = rig
        .get(
            &rig.alice,
            &format!("/v1/sessions/{session}/recordings/c_nope/bundle"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = rig.get(&rig.alice, &format!("{page}&limit=1025")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_waiting_chunk_page_answers_when_the_next_chunk_is_stored() {
    let rig = rig("").await;
    let session = rig.session().await;
    let chunks = recording("c_wait", 60, false);
    assert!(chunks.len() > 3, "the fixture makes several chunks");
    let spooled = all(&session, "c_wait", &chunks);
    rig.send(&rig.worker, spooled[..2].to_vec()).await;
    let page = format!("/v1/sessions/{session}/recordings/c_wait/chunks?from=2&wait=20");

    // Nothing at chunk 2 yet: the read waits rather than answering empty ...
    let mut waiting = std::pin::pin!(rig.get(&rig.alice, &page));
    assert!(
        tokio::time::timeout(Duration::from_millis(600), &mut waiting)
            .await
            .is_err(),
        "a page with nothing at `from` answered at once despite `wait`"
    );
    // ... and answers with the chunk once it is stored.
    rig.send(&rig.worker, spooled[2..3].to_vec()).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiting page answers once its chunk is stored");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["chunks"][0]["seq"], 2, "{body}");

    // A wait beyond the cap is the caller's mistake.
    let (status, body) = rig
        .get(
            &rig.alice,
            &format!("/v1/sessions/{session}/recordings/c_wait/chunks?wait=26"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "wait", "{body}");
}

#[tokio::test]
async fn the_retention_deletes_whole_recordings_of_ended_sessions_oldest_first_and_audits_each() {
    let ids = ["c_old", "c_mid", "c_new"];
    let recordings: Vec<Vec<Encoded>> = ids.iter().map(|id| recording(id, 30, true)).collect();
    let size = |chunks: &[Encoded]| -> u64 {
        chunks
            .iter()
            .map(|c| {
                portcullis_proto::recording::Chunk::decode(&c.bytes)
                    .unwrap()
                    .body
                    .len() as u64
            })
            .sum()
    };
    let sizes: Vec<u64> = recordings.iter().map(|r| size(r)).collect();
    // Room for the two newest only.
    let max = sizes[1] + sizes[2];
    let rig = rig(&format!("max_total_bytes = {max}\nretention = \"30d\"")).await;
    let mut sessions = Vec::new();
    for (id, chunks) in ids.iter().zip(&recordings) {
        let session = rig.session().await;
        rig.send(&rig.worker, all(&session, id, chunks)).await;
        sessions.push(session);
        rig.clock.advance(Duration::from_secs(60));
    }
    let total = rig.api.state.recordings.total_bytes().await.unwrap();
    assert_eq!(total, sizes.iter().sum::<u64>());
    // Nothing is deleted while the sessions are live, however large.
    assert_eq!(
        crate::recordings::retention::sweep_once(&rig.api.state)
            .await
            .unwrap(),
        0
    );
    for session in &sessions {
        let path = format!("/v1/sessions/{session}/cancel");
        let (status, _) = rig
            .api
            .call(Method::POST, &path, Some(&rig.alice), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    // Over the size: the oldest go until the rest fits.
    assert_eq!(
        crate::recordings::retention::sweep_once(&rig.api.state)
            .await
            .unwrap(),
        1
    );
    let deleted = events_of(&rig.api, "recording_deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["details"]["recording_id"], "c_old");
    assert_eq!(deleted[0]["reason"], "size");
    assert_eq!(deleted[0]["session"], sessions[0].as_str());
    assert!(rig
        .api
        .state
        .recordings
        .get("c_old")
        .await
        .unwrap()
        .is_none());
    assert!(rig
        .api
        .state
        .recordings
        .chunks("c_old", 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(rig
        .api
        .state
        .recordings
        .get("c_mid")
        .await
        .unwrap()
        .is_some());

    // A month later the rest are past their age.
    rig.clock.advance(Duration::from_secs(31 * 24 * 3600));
    assert_eq!(
        crate::recordings::retention::sweep_once(&rig.api.state)
            .await
            .unwrap(),
        2
    );
    let deleted = events_of(&rig.api, "recording_deleted").await;
    let ids: Vec<&str> = deleted
        .iter()
        .map(|e| e["details"]["recording_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c_old", "c_mid", "c_new"]);
    assert_eq!(deleted[1]["reason"], "age");
}

#[tokio::test]
async fn the_recording_key_is_created_audited_and_rotated_and_retired_keeping_old_chunks_readable()
{
    let rig = rig("").await;
    let created = events_of(&rig.api, "key_created").await;
    assert!(
        created
            .iter()
            .any(|e| e["details"]["purpose"] == "recording"),
        "{created:?}"
    );
    let session = rig.session().await;
    let chunks = recording("c_rot", 30, true);
    rig.send(&rig.worker, all(&session, "c_rot", &chunks[..2]))
        .await;
    rig.api
        .state
        .keys
        .rotate(crate::Purpose::Recording)
        .await
        .unwrap();
    let outcomes = rig
        .send(&rig.worker, all(&session, "c_rot", &chunks[2..]))
        .await;
    assert!(
        outcomes.iter().all(|o| *o == ChunkOutcome::Stored),
        "{outcomes:?}"
    );
    let stored = rig
        .api
        .state
        .recordings
        .chunks("c_rot", 0, 100)
        .await
        .unwrap();
    assert_ne!(
        stored[0].key_id,
        stored.last().unwrap().key_id,
        "sealed under the new key"
    );
    let (_, body) = rig
        .get(&rig.alice, &format!("/v1/sessions/{session}/recordings"))
        .await;
    let list: RecordingList = serde_json::from_value(body).unwrap();
    assert_eq!(
        list.recordings[0].state,
        RecordingState::Complete,
        "{list:?}"
    );

    // Retiring the old key stops nothing from opening the chunks sealed under it: they stay
    // until the retention deletes them.
    rig.api.state.keys.retire(&stored[0].key_id).await.unwrap();
    let (_, body) = rig
        .get(&rig.alice, &format!("/v1/sessions/{session}/recordings"))
        .await;
    let list: RecordingList = serde_json::from_value(body).unwrap();
    assert_eq!(
        list.recordings[0].state,
        RecordingState::Complete,
        "after the retirement: {list:?}"
    );
}
