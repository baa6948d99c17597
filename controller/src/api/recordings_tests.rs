//! Session recordings end to end inside one controller (an in-memory SQLite store, the
//! recordings store beside it): chunks a worker sends on the link, what is stored and how
//! (encrypted, chained), the heads sealed into the audit chain, a worker's recording failure.
//! The reads, the retention and the key's rotation: `recordings_read_tests`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind, Request, Response};
use portcullis_proto::recording::{
    ChunkOutcome, ChunkPage, Encoded, Event, FailureAction, Recorder, RecordingFailure,
    RecordingId, RecordingList, RecordingState, SpooledChunk,
};
use serde_json::{json, Value};

use super::gateway_tests::{authorize, events_of, link, ssh_key, POLICY};
use super::tests::Api;
use crate::ManualClock;

/// The gateway tests' policy and a role that may read anyone's recordings.
fn policy() -> String {
    format!(
        "{POLICY}\n[[role]]\nname = \"auditor\"\ngroups = [\"auditors\"]\n\
         permissions = [\"recordings:read\"]\n"
    )
}

pub(super) struct Rig {
    pub(super) api: Api,
    pub(super) worker: String,
    pub(super) alice: String,
    pub(super) clock: Arc<ManualClock>,
}

pub(super) async fn rig(recordings: &str) -> Rig {
    let clock = Arc::new(ManualClock::at_unix(1_900_000_000));
    let extra = format!("[recordings]\n{recordings}\n");
    let api = Api::start_with(&policy(), &extra, clock.clone()).await;
    let worker = api.live_worker().await;
    let admin = api.login("root", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:2222", "zone": "LOCAL", "service": "echo",
                   "ssh_host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy9kvxOzR9cK82Y/ZGA67h2GTxNCKoOvISANSHgTAVI"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alice = api.login("alice", &["gateway"]).await;
    Rig {
        api,
        worker,
        alice,
        clock,
    }
}

impl Rig {
    /// A new gateway session of alice's.
    pub(super) async fn session(&self) -> String {
        let auth = authorize(&self.api, &self.alice, &ssh_key("alice")).await;
        auth["session_id"].as_str().unwrap().to_owned()
    }

    pub(super) async fn send(&self, worker: &str, chunks: Vec<SpooledChunk>) -> Vec<ChunkOutcome> {
        match link(&self.api, worker, Request::RecordingChunks { chunks }).await {
            Response::ChunksStored { acks } => acks.into_iter().map(|a| a.outcome).collect(),
            other => panic!("not a ChunksStored answer: {other:?}"),
        }
    }

    pub(super) async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.api.call(Method::GET, path, Some(token), None).await
    }
}

/// A pty recording of `lines` output lines cut into small chunks, finished or not.
pub(super) fn recording(id: &str, lines: usize, finish: bool) -> Vec<Encoded> {
    let mut rec = Recorder::with_chunk_len(RecordingId::new(id).unwrap(), 300);
    let mut out = Vec::new();
    for i in 0..lines {
        let at = Duration::from_millis(10 * i as u64);
        let line = format!("secret-output line {i}\r\n");
        out.extend(rec.record(0, at, &Event::Output(line)).unwrap());
    }
    if finish {
        out.extend(rec.finish().unwrap());
    } else {
        out.extend(rec.flush().unwrap());
    }
    out
}

pub(super) fn spooled(session: &str, id: &str, chunk: &Encoded) -> SpooledChunk {
    SpooledChunk {
        session_id: session.into(),
        connection_id: id.into(),
        recording_id: id.into(),
        seq: chunk.seq,
        data: chunk.bytes.clone(),
    }
}

pub(super) fn all(session: &str, id: &str, chunks: &[Encoded]) -> Vec<SpooledChunk> {
    chunks.iter().map(|c| spooled(session, id, c)).collect()
}

fn is_later(o: &ChunkOutcome) -> bool {
    matches!(o, ChunkOutcome::Later { .. })
}

fn refusal(o: &ChunkOutcome) -> String {
    match o {
        ChunkOutcome::Refused { reason } => reason.clone(),
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn chunks_in_order_are_stored_redelivery_is_idempotent_and_a_gap_waits() {
    let rig = rig("").await;
    let session = rig.session().await;
    let chunks = recording("c_one", 40, true);
    assert!(chunks.len() >= 5, "{}", chunks.len());

    // A gap: chunk 1 before chunk 0 waits.
    let outcomes = rig
        .send(&rig.worker, vec![spooled(&session, "c_one", &chunks[1])])
        .await;
    assert!(is_later(&outcomes[0]), "{outcomes:?}");

    let outcomes = rig
        .send(&rig.worker, all(&session, "c_one", &chunks[..3]))
        .await;
    assert_eq!(outcomes, vec![ChunkOutcome::Stored; 3]);
    // The same chunks again (a lost acknowledgement): stored, nothing changes.
    let outcomes = rig
        .send(&rig.worker, all(&session, "c_one", &chunks[..3]))
        .await;
    assert_eq!(outcomes, vec![ChunkOutcome::Stored; 3]);
    let head = rig
        .api
        .state
        .recordings
        .get("c_one")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((head.chunks, head.finished), (3, false));
    assert_eq!(head.head_hash, chunks[2].hash.to_hex());

    let outcomes = rig
        .send(&rig.worker, all(&session, "c_one", &chunks[3..]))
        .await;
    assert!(
        outcomes.iter().all(|o| *o == ChunkOutcome::Stored),
        "{outcomes:?}"
    );
    let head = rig
        .api
        .state
        .recordings
        .get("c_one")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.chunks, chunks.len() as u64);
    assert!(head.finished);

    // Its head is sealed as finished, with the chain's head hash.
    let finished = events_of(&rig.api, "recording_finished").await;
    assert_eq!(finished.len(), 1, "{finished:?}");
    let details = &finished[0]["details"];
    assert_eq!(details["recording_id"], "c_one");
    assert_eq!(details["chunks"], chunks.len() as u64);
    assert_eq!(details["head_hash"], chunks.last().unwrap().hash.to_hex());
    assert_eq!(details["complete"], true);
    assert_eq!(finished[0]["session"], session.as_str());
}

#[tokio::test]
async fn chunks_that_do_not_chain_or_belong_elsewhere_are_refused() {
    let rig = rig("max_bytes_per_recording = 600").await;
    let session = rig.session().await;
    let chunks = recording("c_two", 40, true);
    assert_eq!(
        rig.send(&rig.worker, all(&session, "c_two", &chunks[..1]))
            .await,
        vec![ChunkOutcome::Stored]
    );

    // Another recording's chunk 1 does not chain onto this one's chunk 0.
    let other = recording("c_two", 41, true);
    let mut foreign = other[1].clone();
    let decoded = portcullis_proto::recording::Chunk::decode(&foreign.bytes).unwrap();
    let mut forged = decoded.clone();
    forged.header.prev_hash = portcullis_proto::recording::ChunkHash([7; 32]);
    foreign.bytes = forged.encode().unwrap();
    let reason = refusal(
        &rig.send(&rig.worker, vec![spooled(&session, "c_two", &foreign)])
            .await[0],
    );
    assert!(reason.contains("does not chain"), "{reason}");

    // A different chunk 0 than the stored one.
    let mut altered = chunks[0].clone();
    let mut decoded = portcullis_proto::recording::Chunk::decode(&altered.bytes).unwrap();
    decoded.body = decoded.body.replace("line 0", "line X");
    altered.bytes = decoded.encode().unwrap();
    let reason = refusal(
        &rig.send(&rig.worker, vec![spooled(&session, "c_two", &altered)])
            .await[0],
    );
    assert!(reason.contains("different chunk 0"), "{reason}");

    // Another worker, an unknown session, bytes that are no chunk, a recording not named for
    // its connection.
    let reason = refusal(
        &rig.send("w_someone_else", all(&session, "c_two", &chunks[1..2]))
            .await[0],
    );
    assert!(reason.contains("another worker"), "{reason}");
    let reason = refusal(
        &rig.send(&rig.worker, all("s_nope", "c_two", &chunks[1..2]))
            .await[0],
    );
    assert!(reason.contains("unknown session"), "{reason}");
    let mut garbage = spooled(&session, "c_two", &chunks[1]);
    garbage.data = b"not a chunk".to_vec();
    let reason = refusal(&rig.send(&rig.worker, vec![garbage]).await[0]);
    assert!(reason.contains("does not decode"), "{reason}");
    let mut renamed = spooled(&session, "c_two", &chunks[1]);
    renamed.connection_id = "c_other".into();
    refusal(&rig.send(&rig.worker, vec![renamed]).await[0]);

    // The cap: 600 body bytes; chunks of ~300 bytes fill it after two.
    let outcomes = rig
        .send(&rig.worker, all(&session, "c_two", &chunks[1..]))
        .await;
    let first_refused = outcomes
        .iter()
        .position(|o| matches!(o, ChunkOutcome::Refused { .. }))
        .expect("a chunk over the cap");
    assert!(first_refused >= 1, "{outcomes:?}");
    assert!(refusal(&outcomes[first_refused]).contains("max_bytes_per_recording"));
    let head = rig
        .api
        .state
        .recordings
        .get("c_two")
        .await
        .unwrap()
        .unwrap();
    assert!(head.bytes <= 600, "{head:?}");
    assert_eq!(head.chunks, 1 + first_refused as u64);
}

#[tokio::test]
async fn chunks_are_encrypted_at_rest_and_an_altered_one_is_reported_unreadable() {
    let rig = rig("").await;
    let session = rig.session().await;
    let chunks = recording("c_enc", 20, true);
    rig.send(&rig.worker, all(&session, "c_enc", &chunks)).await;
    let stored = rig
        .api
        .state
        .recordings
        .chunks("c_enc", 0, 100)
        .await
        .unwrap();
    assert_eq!(stored.len(), chunks.len());
    for (row, chunk) in stored.iter().zip(&chunks) {
        assert_ne!(row.ciphertext, chunk.bytes);
        let text = String::from_utf8_lossy(&row.ciphertext);
        assert!(!text.contains("secret-output"), "plaintext at rest: {text}");
    }
    let recording_keys = rig.api.state.keys.recording_keys().await.unwrap();
    assert_eq!(recording_keys.len(), 1);
    assert!(stored.iter().all(|r| r.key_id == recording_keys[0].0));

    // The page serves the canonical bytes as the worker sent them.
    let path = format!("/v1/sessions/{session}/recordings/c_enc/chunks?from=0&limit=3");
    let (status, body) = rig.get(&rig.alice, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page: ChunkPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.chunks.len(), 3);
    assert_eq!(
        page.chunks[1].data.as_deref(),
        Some(chunks[1].bytes.as_slice())
    );
    assert_eq!(page.next, Some(3));
    assert!(page.finished);

    // One flipped byte in the store: that chunk is unreadable, never served altered, and the
    // recording is broken there.
    let mut flipped = stored[1].ciphertext.clone();
    flipped[20] ^= 1;
    rig.api
        .state
        .recordings
        .tamper("c_enc", 1, &flipped)
        .await
        .unwrap();
    let (_, body) = rig.get(&rig.alice, &path).await;
    let page: ChunkPage = serde_json::from_value(body).unwrap();
    assert!(page.chunks[1].data.is_none());
    assert!(page.chunks[1]
        .unreadable
        .as_deref()
        .unwrap()
        .contains("does not open"));
    assert!(page.chunks[2].data.is_some());
    let (_, body) = rig
        .get(&rig.alice, &format!("/v1/sessions/{session}/recordings"))
        .await;
    let list: RecordingList = serde_json::from_value(body).unwrap();
    let info = &list.recordings[0];
    assert_eq!(info.state, RecordingState::Broken);
    assert_eq!(info.verified_up_to, 1);
    assert_eq!(info.head_hash, chunks[0].hash.to_hex());
}

#[tokio::test]
async fn a_long_recording_is_checkpointed_and_one_cut_short_is_sealed_incomplete_at_its_sessions_end(
) {
    let rig = rig("checkpoint_chunks = 4").await;
    let session = rig.session().await;
    let chunks = recording("c_cut", 60, false);
    assert!(chunks.len() >= 9, "{}", chunks.len());
    rig.send(&rig.worker, all(&session, "c_cut", &chunks[..4]))
        .await;
    rig.send(&rig.worker, all(&session, "c_cut", &chunks[4..6]))
        .await;
    let checkpoints = events_of(&rig.api, "recording_checkpoint").await;
    assert_eq!(checkpoints.len(), 1, "every 4 chunks: {checkpoints:?}");
    assert_eq!(checkpoints[0]["details"]["chunks"], 4);
    assert_eq!(
        checkpoints[0]["details"]["head_hash"],
        chunks[3].hash.to_hex()
    );
    assert_eq!(checkpoints[0]["details"]["complete"], false);

    // One chunk more, then the worker dies: the session ends without a final chunk.
    rig.send(&rig.worker, all(&session, "c_cut", &chunks[6..7]))
        .await;
    assert_eq!(events_of(&rig.api, "recording_checkpoint").await.len(), 1);
    let (status, body) = rig
        .api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/cancel"),
            Some(&rig.alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let checkpoints = events_of(&rig.api, "recording_checkpoint").await;
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
    let last = &checkpoints[1]["details"];
    assert_eq!(last["chunks"], 7);
    assert_eq!(last["head_hash"], chunks[6].hash.to_hex());
    assert_eq!(last["complete"], false);
    assert!(events_of(&rig.api, "recording_finished").await.is_empty());

    // It verifies up to chunk 7, incomplete, against that seal.
    let (_, body) = rig
        .get(&rig.alice, &format!("/v1/sessions/{session}/recordings"))
        .await;
    let list: RecordingList = serde_json::from_value(body).unwrap();
    let info = &list.recordings[0];
    assert_eq!(info.state, RecordingState::Incomplete);
    assert_eq!(info.verified_up_to, 7);
    let sealed = info.sealed.as_ref().unwrap();
    assert_eq!((sealed.chunks, sealed.complete), (7, false));
    assert_eq!(sealed.head_hash, info.head_hash);
    assert_eq!(info.channels.len(), 1);

    // The sweeper's backstop seals nothing more: the head is sealed.
    crate::recordings::retention::sweep_once(&rig.api.state)
        .await
        .unwrap();
    assert_eq!(events_of(&rig.api, "recording_checkpoint").await.len(), 2);
}

#[tokio::test]
async fn a_workers_recording_failure_is_audited() {
    let rig = rig("").await;
    let session = rig.session().await;
    let failed = ConnectionEvent {
        event_id: "ev_1".into(),
        session_id: session.clone(),
        connection_id: "c_fail".into(),
        at: 1_900_000_000,
        kind: ConnectionEventKind::RecordingFailed(RecordingFailure {
            recording_id: "c_fail".into(),
            cause: "size_cap".into(),
            message: "the recording reached its cap".into(),
            action: FailureAction::ClosedChannels,
        }),
    };
    let answer = link(
        &rig.api,
        &rig.worker,
        Request::Events {
            events: vec![failed],
        },
    )
    .await;
    assert!(matches!(answer, Response::EventsAck { event_ids } if event_ids == ["ev_1"]));
    let events = events_of(&rig.api, "recording_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["details"],
        json!({"recording_id": "c_fail", "connection_id": "c_fail", "cause": "size_cap",
               "message": "the recording reached its cap", "action": "closed_channels"})
    );
    assert_eq!(
        events[0]["actor"]["source"],
        format!("worker:{}", rig.worker)
    );
}
