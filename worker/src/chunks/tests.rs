use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn name(recording: &str, seq: u64) -> ChunkName {
    ChunkName {
        session_id: "s_1".into(),
        connection_id: recording.into(),
        recording_id: recording.into(),
        seq,
    }
}

fn ack(recording: &str, seq: u64, outcome: ChunkOutcome) -> ChunkAck {
    ChunkAck {
        recording_id: recording.into(),
        seq,
        outcome,
    }
}

fn sent(batch: &[SpooledChunk]) -> Vec<(String, u64, Vec<u8>)> {
    batch
        .iter()
        .map(|c| (c.recording_id.clone(), c.seq, c.data.clone()))
        .collect()
}

#[tokio::test]
async fn chunks_are_private_files_and_a_restarted_worker_sends_them_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recordings");
    let spool = ChunkSpool::open(path.clone(), 1 << 20);
    for seq in [0, 1, 2] {
        spool
            .write(name("c_a", seq), format!("a{seq}").into_bytes())
            .await
            .unwrap();
    }
    spool.write(name("c_b", 0), b"b0".to_vec()).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(&path).unwrap().flatten().collect();
    assert_eq!(files.len(), 4);
    for file in &files {
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", file.file_name());
    }
    let dir_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    drop(spool);
    // A half-written file of a killed writer, and a stranger.
    std::fs::write(path.join(".tmpXYZ.tmp"), b"half").unwrap();
    std::fs::write(path.join("notes.txt"), b"mine").unwrap();

    let again = ChunkSpool::open(path.clone(), 1 << 20);
    assert_eq!(again.len(), 4);
    again.ready().await;
    let batch = again.batch();
    assert_eq!(
        sent(&batch),
        vec![
            ("c_a".into(), 0, b"a0".to_vec()),
            ("c_b".into(), 0, b"b0".to_vec()),
            ("c_a".into(), 1, b"a1".to_vec()),
            ("c_a".into(), 2, b"a2".to_vec()),
        ],
        "seq order per recording, recordings taking turns"
    );
    assert_eq!(batch[0].session_id, "s_1");
    assert_eq!(batch[0].connection_id, "c_a");
    assert!(!path.join(".tmpXYZ.tmp").exists());
    assert!(path.join("notes.txt").exists());
}

#[tokio::test]
async fn stored_and_refused_chunks_are_deleted_and_a_refusal_reaches_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recordings");
    let spool = ChunkSpool::open(path.clone(), 1 << 20);
    let refusal = spool.watch("c_a");
    for seq in 0..3 {
        spool.write(name("c_a", seq), vec![b'x'; 10]).await.unwrap();
    }
    spool.acknowledged(vec![
        ack("c_a", 0, ChunkOutcome::Stored),
        ack(
            "c_a",
            1,
            ChunkOutcome::Refused {
                reason: "does not chain".into(),
            },
        ),
    ]);
    assert!(refusal.refused.is_cancelled());
    assert_eq!(refusal.reason(), "does not chain");
    assert_eq!(std::fs::read_dir(&path).unwrap().count(), 1);
    assert_eq!(
        sent(&spool.batch()),
        vec![("c_a".into(), 2, vec![b'x'; 10])]
    );
    // Acknowledged chunks do not come back after a restart.
    drop(spool);
    assert_eq!(ChunkSpool::open(path, 1 << 20).len(), 1);
}

#[tokio::test]
async fn later_and_an_old_controllers_error_keep_the_chunks_and_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let spool = ChunkSpool::open(dir.path().join("recordings"), 1 << 20)
        .with_back_off(Duration::from_millis(300), Duration::from_millis(600));
    spool.write(name("c_a", 0), b"x".to_vec()).await.unwrap();
    let later = ChunkOutcome::Later {
        reason: "store busy".into(),
    };
    spool.acknowledged(vec![ack("c_a", 0, later)]);
    assert_eq!(spool.len(), 1);
    let waited = tokio::time::timeout(Duration::from_millis(150), spool.ready()).await;
    assert!(waited.is_err(), "ready during the back-off");
    tokio::time::timeout(Duration::from_secs(5), spool.ready())
        .await
        .unwrap();

    spool.not_stored("workers do not serve this request");
    spool.not_stored("workers do not serve this request");
    assert_eq!(spool.len(), 1);
    let waited = tokio::time::timeout(Duration::from_millis(400), spool.ready()).await;
    assert!(waited.is_err(), "ready during the back-off");
    tokio::time::timeout(Duration::from_secs(5), spool.ready())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_spool_refuses_a_chunk_and_frees_room_as_chunks_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let spool = ChunkSpool::open(dir.path().join("recordings"), 100);
    spool.write(name("c_a", 0), vec![0; 60]).await.unwrap();
    let err = spool.write(name("c_a", 1), vec![0; 60]).await.unwrap_err();
    assert_eq!(err, SpoolError::Full { used: 60, max: 100 });
    spool.acknowledged(vec![ack("c_a", 0, ChunkOutcome::Stored)]);
    spool.write(name("c_a", 1), vec![0; 60]).await.unwrap();
}

#[tokio::test]
async fn a_batch_stays_under_its_byte_budget_but_always_carries_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let spool = ChunkSpool::open(dir.path().join("recordings"), 10 << 20);
    for seq in 0..5 {
        spool
            .write(name("c_a", seq), vec![0; 200 * 1024])
            .await
            .unwrap();
    }
    let batch = spool.batch();
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().map(|c| c.data.len()).sum::<usize>() <= MAX_BATCH_BYTES);
    let frame =
        serde_json::to_vec(&portcullis_proto::link::Request::RecordingChunks { chunks: batch })
            .unwrap();
    assert!(frame.len() < portcullis_proto::link::MAX_FRAME_LEN);
}

#[test]
fn names_round_trip_and_unsafe_ids_name_no_file() {
    let n = name("c_a", 42);
    assert_eq!(ChunkName::parse(&n.file_name().unwrap()), Some(n));
    let mut bad = name("c_a", 0);
    bad.session_id = "../etc".into();
    assert!(matches!(bad.file_name(), Err(SpoolError::BadName(_))));
    assert_eq!(ChunkName::parse("a.b.c.x.chunk"), None);
    assert_eq!(ChunkName::parse("a.b.c.1.2.chunk"), None);
}

#[tokio::test]
async fn a_chunk_leaves_only_once_every_chunk_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let spool = ChunkSpool::open(dir.path().join("recordings"), 1 << 20);
    // Chunk 0 still being written when chunk 1 is done.
    spool
        .lock()
        .writing
        .entry("c_a".into())
        .or_default()
        .insert(0);
    spool.write(name("c_a", 1), b"1".to_vec()).await.unwrap();
    spool.write(name("c_b", 0), b"b".to_vec()).await.unwrap();
    assert_eq!(sent(&spool.batch()), vec![("c_b".into(), 0, b"b".to_vec())]);
    spool.lock().writing.clear();
    spool.write(name("c_a", 0), b"0".to_vec()).await.unwrap();
    let batch = sent(&spool.batch());
    assert_eq!(
        batch[..2],
        [
            ("c_a".into(), 0, b"0".to_vec()),
            ("c_b".into(), 0, b"b".to_vec())
        ]
    );
    assert_eq!(batch[2], ("c_a".into(), 1, b"1".to_vec()));
}

#[tokio::test]
async fn nothing_is_ready_while_the_only_chunks_wait_for_an_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let spool = ChunkSpool::open(dir.path().join("recordings"), 1 << 20);
    spool
        .lock()
        .writing
        .entry("c_a".into())
        .or_default()
        .insert(0);
    spool.write(name("c_a", 1), b"1".to_vec()).await.unwrap();
    let ready = tokio::time::timeout(Duration::from_millis(100), spool.ready()).await;
    assert!(ready.is_err(), "ready with nothing to send");
}
