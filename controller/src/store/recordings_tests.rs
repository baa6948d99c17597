//! The recordings store on both backends (PostgreSQL when the suite's cluster is there, see
//! `suite_tests`): where it lives, its migrations beside the main store's, and its rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::recordings::{ChunkRow, NewChunk, RecordingStore};
use super::Store;
use crate::secret::SecretString;

fn chunk(seq: u64, finished: bool) -> ChunkRow {
    ChunkRow {
        recording_id: "c_1".into(),
        seq,
        channel: 0,
        kind: "asciicast".into(),
        finished,
        body_len: 100,
        chunk_hash: format!("{seq:064x}"),
        ciphertext: vec![seq as u8; 40],
        key_id: "k_1".into(),
        stored_at: 1_000 + seq as i64,
    }
}

async fn rows_and_chain(recordings: &RecordingStore, other: &RecordingStore) {
    let new = |row| NewChunk {
        session_id: "s_1",
        worker_id: "w_1",
        row,
    };
    assert!(recordings.append(&new(chunk(0, false))).await.unwrap());
    assert!(
        !recordings.append(&new(chunk(0, false))).await.unwrap(),
        "seq 0 twice"
    );
    assert!(
        !recordings.append(&new(chunk(2, false))).await.unwrap(),
        "a gap"
    );
    assert!(recordings.append(&new(chunk(1, true))).await.unwrap());
    assert!(
        !recordings.append(&new(chunk(2, false))).await.unwrap(),
        "after the final"
    );
    // Another controller's pool on the same store sees it.
    let head = other.get("c_1").await.unwrap().unwrap();
    assert_eq!((head.chunks, head.bytes, head.finished), (2, 200, true));
    assert_eq!(head.head_hash, format!("{:064x}", 1));
    assert_eq!((head.first_at, head.last_at), (1_000, 1_001));
    let stored = other.chunks("c_1", 1, 10).await.unwrap();
    assert_eq!(stored, vec![chunk(1, true)]);
    assert_eq!(
        other.chunk_hash("c_1", 0).await.unwrap(),
        Some(format!("{:064x}", 0))
    );
    assert_eq!(other.unsealed(10).await.unwrap().len(), 1);
    recordings.mark_sealed("c_1", 2, 1_002).await.unwrap();
    recordings.mark_sealed("c_1", 1, 1_003).await.unwrap();
    let head = other.get("c_1").await.unwrap().unwrap();
    assert_eq!(
        (head.sealed_chunks, head.sealed_at),
        (2, Some(1_002)),
        "never back"
    );
    assert!(other.unsealed(10).await.unwrap().is_empty());
    assert_eq!(other.total_bytes().await.unwrap(), 200);
    assert_eq!(other.of_session("s_1").await.unwrap().len(), 1);
    assert!(recordings.delete("c_1").await.unwrap());
    assert!(other.get("c_1").await.unwrap().is_none());
    assert!(other.chunks("c_1", 0, 10).await.unwrap().is_empty());
    assert_eq!(other.total_bytes().await.unwrap(), 0);
}

#[tokio::test]
async fn on_sqlite_recordings_live_in_a_private_file_of_their_own_beside_the_main_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}", dir.path().join("main.db").display()));
    let main = Store::connect(&url, 1).await.unwrap();
    main.migrate().await.unwrap();
    let recordings = RecordingStore::open(&url, None, 1).await.unwrap();
    let file = dir.path().join("main-recordings.db");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut conn = main.conn().await.unwrap();
    let in_main = sqlx::query("SELECT COUNT(*) FROM recordings")
        .execute(&mut *conn)
        .await;
    assert!(in_main.is_err(), "the main file has no recordings table");
    drop(conn);
    rows_and_chain(&recordings, &recordings).await;
    // Opening again (a restart) applies nothing twice.
    drop(recordings);
    RecordingStore::open(&url, None, 1).await.unwrap();
}

#[tokio::test]
async fn on_postgres_recordings_have_their_own_pool_on_the_shared_database() {
    let Some(url) = super::suite_tests::fresh_pg_database().await else {
        return;
    };
    let url = SecretString::from(url);
    // The recordings store first, then the main store's migrations: either order works, and
    // twice is a no-op.
    let recordings = RecordingStore::open(&url, None, 2).await.unwrap();
    let main = Store::connect(&url, 2).await.unwrap();
    main.migrate().await.unwrap();
    main.migrate().await.unwrap();
    let other = RecordingStore::open(&url, None, 2).await.unwrap();
    rows_and_chain(&recordings, &other).await;
}
