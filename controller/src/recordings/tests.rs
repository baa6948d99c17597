//! The pure decisions of the recordings module: what becomes of a chunk given the stored
//! head, when a head is sealed, what the retention deletes, and how a stored chain reads.
//! (The same behaviours through the link and the API: `api/recordings_tests.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use portcullis_proto::recording::{
    Chunk, ChunkHash, Encoded, Event, Recorder, RecordingId, RecordingState, SealedHead,
    StoredChunk,
};

use super::ingest::{check, Check, Facts};
use super::read::verdict;
use super::retention::{doomed, Limits, Reason};
use super::seal::{due, Cadence, Due};
use crate::store::recordings::RecordingRow;

fn chunks(n_lines: usize, finish: bool) -> Vec<Encoded> {
    let mut rec = Recorder::with_chunk_len(RecordingId::new("c_1").unwrap(), 300);
    let mut out = Vec::new();
    for i in 0..n_lines {
        let at = Duration::from_millis(i as u64);
        out.extend(
            rec.record(0, at, &Event::Output(format!("output line {i}\r\n")))
                .unwrap(),
        );
    }
    out.extend(if finish { rec.finish() } else { rec.flush() }.unwrap());
    out
}

/// The stored row after `chunks`.
fn head(chunks: &[Encoded], finished: bool) -> RecordingRow {
    let bytes = chunks
        .iter()
        .map(|c| Chunk::decode(&c.bytes).unwrap().body.len() as u64)
        .sum();
    RecordingRow {
        id: "c_1".into(),
        session_id: "s_1".into(),
        connection_id: "c_1".into(),
        worker_id: "w_1".into(),
        chunks: chunks.len() as u64,
        bytes,
        head_hash: chunks.last().map(|c| c.hash.to_hex()).unwrap_or_default(),
        finished,
        first_at: 1_000,
        last_at: 1_000,
        sealed_chunks: 0,
        sealed_at: None,
    }
}

fn decide(row: Option<&RecordingRow>, chunk: &Encoded, stored: Option<&str>, cap: u64) -> Check {
    let decoded = Chunk::decode(&chunk.bytes).unwrap();
    check(&Facts {
        chunk: &decoded,
        hash: chunk.hash,
        session_id: "s_1",
        head: row,
        stored_at_seq: stored,
        cap,
    })
}

#[test]
fn the_next_chunk_is_appended_a_stored_one_is_idempotent_and_a_gap_waits() {
    let all = chunks(40, true);
    assert_eq!(decide(None, &all[0], None, u64::MAX), Check::Append);
    assert!(matches!(
        decide(None, &all[1], None, u64::MAX),
        Check::Later(_)
    ));
    let row = head(&all[..2], false);
    assert_eq!(decide(Some(&row), &all[2], None, u64::MAX), Check::Append);
    let stored = all[1].hash.to_hex();
    assert_eq!(
        decide(Some(&row), &all[1], Some(&stored), u64::MAX),
        Check::AlreadyStored
    );
    assert!(matches!(
        decide(Some(&row), &all[3], None, u64::MAX),
        Check::Later(_)
    ));
}

#[test]
fn a_replaced_chunk_a_broken_chain_another_session_a_chunk_after_the_final_and_the_cap_are_refused()
{
    let all = chunks(40, true);
    let row = head(&all[..2], false);
    let other = all[0].hash.to_hex();
    assert!(matches!(
        decide(Some(&row), &all[1], Some(&other), u64::MAX),
        Check::Refused(r) if r.contains("different chunk 1")
    ));
    // Chunk 2 of a recording whose stored head is another chunk.
    let mut moved = row.clone();
    moved.head_hash = ChunkHash([9; 32]).to_hex();
    assert!(matches!(
        decide(Some(&moved), &all[2], None, u64::MAX),
        Check::Refused(r) if r.contains("does not chain")
    ));
    let mut foreign = row.clone();
    foreign.session_id = "s_2".into();
    assert!(matches!(
        decide(Some(&foreign), &all[2], None, u64::MAX),
        Check::Refused(r) if r.contains("belongs to session s_2")
    ));
    let mut finished = row.clone();
    finished.finished = true;
    assert!(matches!(
        decide(Some(&finished), &all[2], None, u64::MAX),
        Check::Refused(r) if r.contains("final")
    ));
    let body = Chunk::decode(&all[2].bytes).unwrap().body.len() as u64;
    assert_eq!(
        decide(Some(&row), &all[2], None, row.bytes + body),
        Check::Append
    );
    assert!(matches!(
        decide(Some(&row), &all[2], None, row.bytes + body - 1),
        Check::Refused(r) if r.contains("max_bytes_per_recording")
    ));
}

#[test]
fn a_head_is_sealed_when_final_every_n_chunks_after_the_interval_and_at_the_sessions_end() {
    let cadence = Cadence {
        chunks: 4,
        interval: Duration::from_secs(300),
    };
    let all = chunks(40, false);
    let mut row = head(&all[..3], false);
    assert_eq!(due(&row, false, 1_000, cadence), None);
    assert_eq!(due(&row, false, 1_300, cadence), Some(Due::Checkpoint));
    assert_eq!(due(&row, true, 1_000, cadence), Some(Due::Checkpoint));
    row.chunks = 4;
    assert_eq!(due(&row, false, 1_000, cadence), Some(Due::Checkpoint));
    row.sealed_chunks = 4;
    row.sealed_at = Some(1_200);
    assert_eq!(due(&row, true, 1_000, cadence), None, "sealed already");
    row.chunks = 5;
    assert_eq!(due(&row, false, 1_499, cadence), None);
    assert_eq!(due(&row, false, 1_500, cadence), Some(Due::Checkpoint));
    row.finished = true;
    assert_eq!(due(&row, false, 1_000, cadence), Some(Due::Finished));
    row.chunks = 0;
    assert_eq!(due(&row, true, 9_999, cadence), None, "nothing stored");
}

#[test]
fn the_retention_spares_live_sessions_and_deletes_by_age_then_oldest_first_by_size() {
    let row = |id: &str, last_at: i64, bytes: u64| RecordingRow {
        id: id.into(),
        last_at,
        bytes,
        ..head(&[], false)
    };
    let rows = vec![
        (row("a", 100, 10), true),
        (row("live", 150, 1000), false),
        (row("b", 200, 10), true),
        (row("c", 300, 10), true),
    ];
    let ids = |out: Vec<(&RecordingRow, Reason)>| -> Vec<(String, Reason)> {
        out.into_iter()
            .map(|(r, why)| (r.id.clone(), why))
            .collect()
    };
    let none = Limits {
        max_age: None,
        max_total_bytes: None,
    };
    assert!(doomed(&rows, 1030, 10_000, none).is_empty());
    let by_age = Limits {
        max_age: Some(Duration::from_secs(9_850)),
        ..none
    };
    assert_eq!(
        ids(doomed(&rows, 1030, 10_000, by_age)),
        [("a".to_string(), Reason::Age)]
    );
    let by_size = Limits {
        max_total_bytes: Some(1015),
        ..none
    };
    assert_eq!(
        ids(doomed(&rows, 1030, 10_000, by_size)),
        [
            ("a".to_string(), Reason::Size),
            ("b".to_string(), Reason::Size)
        ]
    );
    // However far over, a live session's recording stays.
    let tiny = Limits {
        max_total_bytes: Some(1),
        ..none
    };
    assert_eq!(doomed(&rows, 1030, 10_000, tiny).len(), 3);
}

fn stored(all: &[Encoded]) -> Vec<StoredChunk> {
    all.iter()
        .map(|c| StoredChunk {
            seq: c.seq,
            data: Some(c.bytes.clone()),
            unreadable: None,
        })
        .collect()
}

fn seal(all: &[Encoded], n: usize, complete: bool) -> SealedHead {
    SealedHead {
        chunks: n as u64,
        head_hash: all[n - 1].hash.to_hex(),
        bytes: 0,
        complete,
        audit_sequence: 42,
    }
}

#[test]
fn a_stored_chain_reads_complete_incomplete_or_broken_at_an_unreadable_or_missing_chunk() {
    let all = chunks(40, true);
    let n = all.len() as u64;
    let (state, up_to, hash, why) = verdict(&stored(&all), Some(&seal(&all, all.len(), true)));
    assert_eq!((state, up_to, why), (RecordingState::Complete, n, None));
    assert_eq!(hash, all.last().unwrap().hash.to_hex());

    let cut = &all[..all.len() - 2];
    let (state, up_to, hash, _) = verdict(&stored(cut), Some(&seal(&all, 3, false)));
    assert_eq!((state, up_to), (RecordingState::Incomplete, n - 2));
    assert_eq!(hash, cut.last().unwrap().hash.to_hex());

    let mut unreadable = stored(&all);
    unreadable[2].data = None;
    unreadable[2].unreadable = Some("chunk 2 does not open".into());
    let (state, up_to, hash, why) = verdict(&unreadable, None);
    assert_eq!((state, up_to), (RecordingState::Broken, 2));
    assert_eq!(hash, all[1].hash.to_hex());
    assert_eq!(why.as_deref(), Some("chunk 2 does not open"));

    // The tail removed after a seal covered it: broken where the stored chain stops.
    let (state, up_to, _, why) = verdict(&stored(&all[..3]), Some(&seal(&all, 5, false)));
    assert_eq!((state, up_to), (RecordingState::Broken, 3));
    assert!(why.unwrap().contains("sealed 5 chunks"));
}
