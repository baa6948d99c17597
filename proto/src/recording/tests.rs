use std::time::Duration;

use proptest::prelude::*;

use super::chunk::{hash, MAX_BODY_LEN};
use super::*;

fn id() -> RecordingId {
    RecordingId::new("rec_1").unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pty_header() -> Event {
    Event::PtyStarted(CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: "xterm-256color".into(),
        command: None,
    })
}

/// A small session: a pty channel with output, input and a resize, an exec channel and an
/// sftp write, cut into many small chunks.
fn session(chunk_len: usize) -> Vec<Encoded> {
    let mut rec = Recorder::with_chunk_len(id(), chunk_len);
    let mut out = Vec::new();
    out.extend(rec.record(0, ms(0), &pty_header()).unwrap());
    for i in 0..40u64 {
        let line = format!("line {i}: h\u{e9}llo \u{1b}[1mbold\u{1b}[0m\r\n");
        out.extend(rec.record(0, ms(10 * i), &Event::Output(line)).unwrap());
    }
    out.extend(
        rec.record(0, ms(500), &Event::Input("ls\r".into()))
            .unwrap(),
    );
    let resize = Event::Resized {
        width: 120,
        height: 40,
    };
    out.extend(rec.record(0, ms(600), &resize).unwrap());
    let exec = Event::Exec {
        command: "uname -a".into(),
    };
    out.extend(rec.record(1, ms(0), &exec).unwrap());
    out.extend(rec.record(1, ms(5), &Event::Exited { status: 0 }).unwrap());
    let sftp = Event::Sftp {
        op: SftpOp::Write,
        path: "/tmp/x".into(),
        to: None,
        mode: Some(0o644),
        bytes: 1234,
    };
    out.extend(rec.record(2, ms(7), &sftp).unwrap());
    out.extend(rec.finish().unwrap());
    out
}

fn bytes(chunks: &[Encoded]) -> Vec<Vec<u8>> {
    chunks.iter().map(|c| c.bytes.clone()).collect()
}

fn decoded(chunks: &[Encoded]) -> Vec<Chunk> {
    chunks
        .iter()
        .map(|c| Chunk::decode(&c.bytes).unwrap())
        .collect()
}

#[test]
fn a_recorded_chain_verifies_complete_with_its_head() {
    let chunks = session(256);
    assert!(chunks.len() > 8, "small chunks: {}", chunks.len());
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.seq, i as u64);
        assert_eq!(c.hash, hash(&c.bytes));
    }
    let last = chunks.last().unwrap();
    assert_eq!(
        verify(bytes(&chunks)),
        Verdict::Complete {
            chunks: chunks.len() as u64,
            head_hash: last.hash
        }
    );
    let all = decoded(&chunks);
    assert_eq!(all[0].header.prev_hash, ChunkHash::GENESIS);
    for pair in all.windows(2) {
        assert_eq!(pair[1].header.prev_hash, pair[0].hash().unwrap());
    }
    let end = all.last().unwrap().header.end.unwrap();
    let events: u64 = all.iter().map(|c| c.body.lines().count() as u64).sum();
    // 1 header + 40 output + input + resize + exec + exit + sftp.
    assert_eq!(events, 46);
    assert_eq!(end.events, 46);
    assert!(all[..all.len() - 1].iter().all(|c| c.header.end.is_none()));
}

#[test]
fn the_recorder_head_is_the_last_emitted_chunk() {
    let mut rec = Recorder::new(id());
    assert_eq!(rec.head(), (0, ChunkHash::GENESIS));
    rec.record(0, ms(0), &pty_header()).unwrap();
    let flushed = rec.flush().unwrap();
    assert_eq!(flushed.len(), 1);
    assert_eq!(rec.head(), (1, flushed[0].hash));
    assert!(rec.flush().unwrap().is_empty(), "nothing left to flush");
    rec.finish().unwrap();
    assert_eq!(
        rec.record(0, ms(1), &Event::Output("x".into())),
        Err(RecordError::Finished)
    );
}

#[test]
fn a_flipped_byte_breaks_the_chain_at_the_altered_chunk() {
    let chunks = session(256);
    let n = chunks.len();
    for target in [0, 3, n / 2] {
        let mut all = bytes(&chunks);
        // The last byte is body text (a newline): the chunk still decodes, only its hash moves.
        let last = all[target].len() - 1;
        all[target][last] ^= 0x20;
        match verify(all) {
            Verdict::Broken { at_seq, why } => {
                assert_eq!(at_seq, target as u64, "{why}");
                assert!(why.contains("does not chain"), "{why}");
            }
            other => panic!("flipping chunk {target} gave {other:?}"),
        }
    }
    // A flipped header byte (the seq) is caught at that chunk.
    let mut all = bytes(&chunks);
    let seq_at = 4 + 2 + 1 + "rec_1".len() + 7;
    all[5][seq_at] ^= 1;
    assert!(matches!(verify(all), Verdict::Broken { at_seq: 5, .. }));
}

#[test]
fn a_final_chunk_whose_totals_disagree_is_broken() {
    let chunks = session(256);
    let mut all = bytes(&chunks);
    let last = all.len() - 1;
    // Claim one more event than recorded: the totals no longer match.
    let events_at = 4 + 2 + 8 + 7;
    all[last][events_at] ^= 1;
    assert!(matches!(verify(all), Verdict::Broken { at_seq, .. } if at_seq == last as u64));
}

#[test]
fn a_changed_final_chunk_shows_only_in_the_head_hash() {
    let chunks = session(256);
    let mut all = bytes(&chunks);
    let last = all.len() - 1;
    // The final chunk's channel: nothing after it chains to it, so only the head moves, which
    // is why the controller seals the head into the audit chain.
    let channel_at = 4 + 2 + 16 + 1 + "rec_1".len() + 8 + 32 + 3;
    all[last][channel_at] ^= 1;
    match verify(all) {
        Verdict::Complete {
            chunks: n,
            head_hash,
        } => {
            assert_eq!(n, chunks.len() as u64);
            assert_ne!(head_hash, chunks[last].hash);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_truncated_recording_is_incomplete_up_to_its_last_chunk() {
    let chunks = session(256);
    for keep in [0, 1, 7, chunks.len() - 1] {
        let verdict = verify(bytes(&chunks[..keep]));
        let head_hash = keep
            .checked_sub(1)
            .map_or(ChunkHash::GENESIS, |i| chunks[i].hash);
        match verdict {
            Verdict::Incomplete {
                verified_up_to,
                head_hash: got,
                why,
            } => {
                assert_eq!(verified_up_to, keep as u64, "{why}");
                assert_eq!(got, head_hash);
            }
            other => panic!("keeping {keep} chunks gave {other:?}"),
        }
    }
}

#[test]
fn a_missing_or_repeated_chunk_is_a_gap() {
    let chunks = session(256);
    let mut all = bytes(&chunks);
    all.remove(4);
    match verify(all) {
        Verdict::Broken { at_seq: 4, why } => assert!(why.contains("found chunk 5"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut all = bytes(&chunks);
    all.insert(3, all[2].clone());
    assert!(matches!(verify(all), Verdict::Broken { at_seq: 3, .. }));
    let mut all = bytes(&chunks);
    all.push(all[0].clone());
    assert!(matches!(verify(all), Verdict::Broken { .. }));
}

#[test]
fn a_chunk_of_another_recording_is_refused() {
    let mut a = Recorder::new(id());
    let mut b = Recorder::new(RecordingId::new("rec_2").unwrap());
    let mut all = Vec::new();
    for rec in [&mut a, &mut b] {
        rec.record(0, ms(0), &pty_header()).unwrap();
        all.push(rec.flush().unwrap());
    }
    // b's chunk 0 where a's chunk 1 should be: wrong seq first; make it seq 1 by recording more.
    b.record(0, ms(1), &Event::Output("x".into())).unwrap();
    let b1 = b.flush().unwrap();
    let verdict = verify([all[0][0].bytes.clone(), b1[0].bytes.clone()]);
    match verdict {
        Verdict::Broken { at_seq: 1, why } => assert!(why.contains("rec_2"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversize_chunks_are_refused_on_encode_and_decode() {
    let chunk = Chunk {
        header: ChunkHeader {
            recording_id: id(),
            seq: 0,
            prev_hash: ChunkHash::GENESIS,
            channel: 0,
            kind: ChunkKind::Events,
            end: None,
        },
        body: "x".repeat(MAX_CHUNK_LEN),
    };
    assert!(matches!(chunk.encode(), Err(ChunkError::TooLong { .. })));
    let fits = Chunk {
        body: "x".repeat(MAX_BODY_LEN),
        ..chunk.clone()
    };
    let mut encoded = fits.encode().unwrap();
    assert!(encoded.len() <= MAX_CHUNK_LEN);
    encoded.resize(MAX_CHUNK_LEN + 1, b'x');
    assert_eq!(
        Chunk::decode(&encoded),
        Err(ChunkError::TooLong {
            len: MAX_CHUNK_LEN + 1
        })
    );
}

#[test]
fn the_recorder_keeps_chunks_under_the_cap_and_cuts_long_output() {
    let mut rec = Recorder::new(id());
    let mut out = rec.record(0, ms(0), &pty_header()).unwrap();
    // 1 MiB of output in one write, with multi-byte characters at every cut.
    let text = "\u{e9}\u{1b}".repeat(350_000);
    out.extend(rec.record(0, ms(1), &Event::Output(text.clone())).unwrap());
    out.extend(rec.finish().unwrap());
    assert!(out.len() >= 5, "{} chunks", out.len());
    assert!(out.iter().all(|c| c.bytes.len() <= MAX_CHUNK_LEN));
    assert!(matches!(verify(bytes(&out)), Verdict::Complete { .. }));
    let cast = cast(&decoded(&out), 0).unwrap();
    let mut replayed = String::new();
    for line in cast.lines().skip(1) {
        let (_, _, data): (f64, String, String) = serde_json::from_str(line).unwrap();
        replayed.push_str(&data);
    }
    assert_eq!(replayed, text);
}

#[test]
fn an_event_larger_than_a_chunk_is_refused() {
    let mut rec = Recorder::new(id());
    let exec = Event::Exec {
        command: "a".repeat(MAX_CHUNK_LEN),
    };
    assert!(matches!(
        rec.record(1, ms(0), &exec),
        Err(RecordError::EventTooLarge { .. })
    ));
}

#[test]
fn asciicast_output_is_json_lines_with_a_v2_header_and_events() {
    let chunks = decoded(&session(256));
    let text = cast(&chunks, 0).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({
            "version": 2,
            "width": 80,
            "height": 24,
            "timestamp": 1_700_000_000u64,
            "env": {"TERM": "xterm-256color"}
        })
    );
    assert_eq!(
        lines[1],
        serde_json::json!([0.0, "o", "line 0: h\u{e9}llo \u{1b}[1mbold\u{1b}[0m\r\n"])
    );
    assert_eq!(lines[2][0], serde_json::json!(0.01));
    assert_eq!(lines[41], serde_json::json!([0.5, "i", "ls\r"]));
    assert_eq!(lines[42], serde_json::json!([0.6, "r", "120x40"]));
    assert_eq!(lines.len(), 43, "exec and sftp events stay out of the cast");
    assert_eq!(
        cast(&chunks, 1),
        Err(asciicast::CastError::NoPty { channel: 1 })
    );
}

#[test]
fn structured_events_are_json_lines() {
    let chunks = decoded(&session(10_000));
    let events: Vec<serde_json::Value> = chunks
        .iter()
        .filter(|c| c.header.kind == ChunkKind::Events)
        .flat_map(|c| {
            c.body
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        events,
        [
            serde_json::json!({"event": "exec", "t": 0.0, "command": "uname -a"}),
            serde_json::json!({"event": "exited", "t": 0.005, "status": 0}),
            serde_json::json!({"event": "sftp", "t": 0.007, "op": "write", "path": "/tmp/x", "mode": 0o644, "bytes": 1234}),
        ]
    );
}

#[test]
fn recording_ids_are_short_and_plain() {
    assert!(RecordingId::new("r_0123-abc").is_ok());
    for bad in ["", "a b", "a/b", "\u{e9}", &"a".repeat(65)] {
        assert_eq!(RecordingId::new(bad), Err(ChunkError::BadId), "{bad:?}");
    }
}

proptest! {
    #[test]
    fn any_output_round_trips_and_verifies(
        writes in proptest::collection::vec(".{0,300}", 0..30),
        chunk_len in 0usize..2048,
        cut in 0usize..40,
    ) {
        let mut rec = Recorder::with_chunk_len(id(), chunk_len);
        let mut out = rec.record(0, ms(0), &pty_header()).unwrap();
        for (i, w) in writes.iter().enumerate() {
            out.extend(rec.record(0, ms(i as u64), &Event::Output(w.clone())).unwrap());
        }
        out.extend(rec.finish().unwrap());
        for c in &out {
            let chunk = Chunk::decode(&c.bytes).unwrap();
            prop_assert_eq!(chunk.encode().unwrap(), c.bytes.clone());
        }
        let complete = matches!(verify(bytes(&out)), Verdict::Complete { .. });
        prop_assert!(complete);
        let keep = cut.min(out.len() - 1);
        let incomplete = matches!(
            verify(bytes(&out[..keep])),
            Verdict::Incomplete { verified_up_to, .. } if verified_up_to == keep as u64
        );
        prop_assert!(incomplete);
        let cast = cast(&decoded(&out), 0).unwrap();
        let replayed: String = cast
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str::<(f64, String, String)>(l).unwrap().2)
            .collect();
        prop_assert_eq!(replayed, writes.concat());
    }
}
