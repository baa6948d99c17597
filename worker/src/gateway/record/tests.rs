use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis_policy::{Fallback, Recording as Policy};
use portcullis_proto::link::ConnectionEventKind;
use portcullis_proto::recording::{
    cast, verify, Chunk, ChunkKind, ChunkOutcome, FailureAction, RecordingFailure, Verdict,
};

use super::*;

const CONNECTION: &str = "c_rec";

fn policy(input: bool, fallback: Fallback) -> Policy {
    Policy {
        required: true,
        input,
        fallback,
    }
}

fn limits(max_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        chunk_len: 4096,
        flush_every: Duration::from_millis(50),
    }
}

fn start(shared: &Arc<Shared>, policy: Policy, limits: Limits) -> Arc<Recording> {
    let ids = Ids {
        session_id: "s_rec".into(),
        connection_id: CONNECTION.into(),
    };
    Recording::start(shared, ids, policy, limits)
}

/// Every chunk spooled so far, decoded, in seq order.
fn spooled(shared: &Shared) -> Vec<(Vec<u8>, Chunk)> {
    let mut all = Vec::new();
    loop {
        let batch = shared.chunks.batch();
        if batch.is_empty() {
            break;
        }
        let acks = batch
            .iter()
            .map(|c| portcullis_proto::recording::ChunkAck {
                recording_id: c.recording_id.clone(),
                seq: c.seq,
                outcome: ChunkOutcome::Stored,
            })
            .collect();
        for c in batch {
            assert_eq!(c.session_id, "s_rec");
            assert_eq!(c.connection_id, CONNECTION);
            let chunk = Chunk::decode(&c.data).unwrap();
            all.push((c.data, chunk));
        }
        shared.chunks.acknowledged(acks);
    }
    all.sort_by_key(|(_, c)| c.header.seq);
    all
}

/// The structured event lines of `channel`.
fn events(chunks: &[(Vec<u8>, Chunk)], channel: u32) -> Vec<serde_json::Value> {
    chunks
        .iter()
        .filter(|(_, c)| c.header.channel == channel && c.header.kind == ChunkKind::Events)
        .flat_map(|(_, c)| c.body.lines().map(|l| serde_json::from_str(l).unwrap()))
        .collect()
}

/// The asciicast lines of `channel` after the header: (code, data).
fn cast_events(
    chunks: &[(Vec<u8>, Chunk)],
    channel: u32,
) -> (serde_json::Value, Vec<(String, String)>) {
    let text = cast(chunks.iter().map(|(_, c)| c), channel).unwrap();
    let mut lines = text.lines();
    let header = serde_json::from_str(lines.next().unwrap()).unwrap();
    let events = lines
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v[1].as_str().unwrap().to_owned(),
                v[2].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (header, events)
}

fn failures(shared: &Shared) -> Vec<RecordingFailure> {
    shared
        .spool
        .pending(100)
        .into_iter()
        .filter_map(|e| match e.kind {
            ConnectionEventKind::RecordingFailed(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn complete(chunks: &[(Vec<u8>, Chunk)]) -> bool {
    matches!(
        verify(chunks.iter().map(|(b, _)| b)),
        Verdict::Complete { .. }
    )
}

/// A pty session: header, output decoded across reads, input (when asked), resize, exit.
async fn pty_session(input: bool) -> Vec<(Vec<u8>, Chunk)> {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let recording = start(
        &shared,
        policy(input, Fallback::CloseChannel),
        limits(1 << 20),
    );
    let channel = recording.channel(Opened::Session);
    channel.pty_requested(100, 30, "xterm-256color");
    channel.started(Start::Shell).await;
    channel.target_sent(b"hello \xc3", false).await;
    channel.user_sent(b"ls\r").await;
    channel.target_sent(b"\xa9t\xff", false).await;
    channel.resized(120, 40).await;
    channel.target_sent(b"\xe2\x82", false).await;
    channel.exited(3).await;
    channel.closed().await;
    recording.finish().await;
    let chunks = spooled(&shared);
    assert!(complete(&chunks));
    assert!(failures(&shared).is_empty());
    chunks
}

#[tokio::test]
async fn a_pty_records_its_header_output_resizes_and_exit_in_order_and_input_only_when_asked() {
    let chunks = pty_session(false).await;
    let (header, lines) = cast_events(&chunks, 0);
    assert_eq!(header["width"], 100);
    assert_eq!(header["height"], 30);
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    let expected = |input: bool| {
        let mut v = vec![("o", "hello ")];
        if input {
            v.push(("i", "ls\r"));
        }
        v.extend([("o", "ét\u{fffd}"), ("r", "120x40"), ("o", "\u{fffd}")]);
        v.into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines, expected(false));
    let exit = events(&chunks, 0);
    assert_eq!(exit.len(), 1, "{exit:?}");
    assert_eq!(exit[0]["event"], "exited");
    assert_eq!(exit[0]["status"], 3);

    let chunks = pty_session(true).await;
    assert_eq!(cast_events(&chunks, 0).1, expected(true));
}

#[tokio::test]
async fn an_exec_without_a_pty_records_its_command_and_exit_not_its_output_and_a_forward_its_bytes()
{
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let recording = start(
        &shared,
        policy(true, Fallback::CloseChannel),
        limits(1 << 20),
    );
    let exec = recording.channel(Opened::Session);
    let forward = recording.channel(Opened::Forward {
        destination: "db-01:5432".into(),
    });
    exec.started(Start::Exec(b"id -un")).await;
    exec.user_sent(b"secret\n").await;
    exec.target_sent(b"alice\n", false).await;
    exec.exited(0).await;
    exec.closed().await;
    forward.user_sent(b"ping").await;
    forward.target_sent(b"pong-pong!", false).await;
    forward.closed().await;
    // A shell without a pty is a terminal of its own.
    let shell = recording.channel(Opened::Session);
    shell.started(Start::Shell).await;
    shell.target_sent(b"$ ", false).await;
    // A pty of no size (`ssh -tt` without a terminal) is replayable too.
    let sizeless = recording.channel(Opened::Session);
    sizeless.pty_requested(0, 0, "xterm");
    sizeless.started(Start::Exec(b"top")).await;
    recording.finish().await;

    let chunks = spooled(&shared);
    assert!(complete(&chunks));
    let exec_events = events(&chunks, 0);
    assert_eq!(exec_events.len(), 2, "{exec_events:?}");
    assert_eq!(exec_events[0]["event"], "exec");
    assert_eq!(exec_events[0]["command"], "id -un");
    assert_eq!(exec_events[1]["event"], "exited");
    assert!(
        cast(chunks.iter().map(|(_, c)| c), 0).is_err(),
        "no terminal"
    );
    let body: String = chunks.iter().map(|(_, c)| c.body.as_str()).collect();
    assert!(
        !body.contains("alice") && !body.contains("secret"),
        "{body}"
    );

    let forward_events = events(&chunks, 1);
    assert_eq!(forward_events.len(), 1, "{forward_events:?}");
    assert_eq!(forward_events[0]["event"], "forward");
    assert_eq!(forward_events[0]["destination"], "db-01:5432");
    assert_eq!(forward_events[0]["bytes_out"], 4);
    assert_eq!(forward_events[0]["bytes_in"], 10);

    let (header, lines) = cast_events(&chunks, 2);
    assert_eq!(
        (header["width"].clone(), header["height"].clone()),
        (80.into(), 24.into())
    );
    assert_eq!(lines, vec![("o".to_owned(), "$ ".to_owned())]);
    let (header, _) = cast_events(&chunks, 3);
    assert_eq!(
        (header["width"].clone(), header["height"].clone()),
        (80.into(), 24.into())
    );
    assert_eq!(header["command"], "top");
}

#[tokio::test]
async fn a_live_recording_is_flushed_without_waiting_for_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let recording = start(
        &shared,
        policy(false, Fallback::CloseChannel),
        limits(1 << 20),
    );
    let channel = recording.channel(Opened::Session);
    channel.started(Start::Shell).await;
    channel.target_sent(b"live", false).await;
    until_flushed(&shared).await;
    let chunks = spooled(&shared);
    assert!(matches!(
        verify(chunks.iter().map(|(b, _)| b)),
        Verdict::Incomplete { .. }
    ));
    assert!(chunks.iter().any(|(_, c)| c.body.contains("live")));
    recording.finish().await;
}

/// Output until the recording fails; returns the recording and its channel.
async fn fill(
    shared: &Arc<Shared>,
    policy: Policy,
    max_bytes: u64,
) -> (Arc<Recording>, Arc<ChannelRec>) {
    let recording = start(shared, policy, limits(max_bytes));
    let channel = recording.channel(Opened::Session);
    channel.started(Start::Shell).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !recording.status.stopped.load(Ordering::Relaxed) {
        assert!(tokio::time::Instant::now() < deadline, "never failed");
        channel.target_sent(&[b'x'; 300], false).await;
        tokio::task::yield_now().await;
    }
    (recording, channel)
}

#[tokio::test]
async fn a_required_recording_at_its_cap_closes_the_channels_and_still_ends_within_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let max = 20_000;
    let (recording, channel) = fill(&shared, policy(false, Fallback::CloseChannel), max).await;
    let line = tokio::time::timeout(Duration::from_secs(10), channel.closing())
        .await
        .unwrap();
    assert!(
        line.contains("size cap reached") && line.contains("channel is closed"),
        "{line}"
    );
    assert!(recording.closed());
    recording.finish().await;
    let chunks = spooled(&shared);
    let total: usize = chunks.iter().map(|(b, _)| b.len()).sum();
    assert!(total as u64 <= max, "{total} > {max}");
    assert!(total as u64 > max / 2, "{total}: the cap is used");
    assert!(complete(&chunks), "the final chunk fits under the cap");
    let failures = failures(&shared);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].cause, "size_cap");
    assert_eq!(failures[0].recording_id, CONNECTION);
    assert_eq!(failures[0].action, FailureAction::ClosedChannels);
}

#[tokio::test]
async fn an_opted_in_zone_goes_on_unrecorded_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let (recording, channel) =
        fill(&shared, policy(false, Fallback::ContinueUnrecorded), 20_000).await;
    assert!(!recording.closed());
    // Nothing more is recorded, and nothing waits.
    channel.target_sent(b"more", false).await;
    recording.finish().await;
    let failures = failures(&shared);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].action, FailureAction::ContinuedUnrecorded);
}

#[tokio::test]
async fn a_full_spool_fails_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests_with(dir.path(), "[recording]\nspool_max_bytes = 5000\n");
    let (recording, _channel) = fill(&shared, policy(false, Fallback::CloseChannel), 1 << 20).await;
    assert!(recording.closed());
    recording.finish().await;
    let failures = failures(&shared);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].cause, "spool_full");
    assert!(
        failures[0].message.contains("spool"),
        "{}",
        failures[0].message
    );
}

#[tokio::test]
async fn the_stores_refusal_closes_the_channels() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let recording = start(
        &shared,
        policy(false, Fallback::CloseChannel),
        limits(1 << 20),
    );
    let channel = recording.channel(Opened::Session);
    channel.started(Start::Shell).await;
    channel.target_sent(b"x", false).await;
    until_flushed(&shared).await;
    let refused = shared
        .chunks
        .batch()
        .into_iter()
        .map(|c| portcullis_proto::recording::ChunkAck {
            recording_id: c.recording_id,
            seq: c.seq,
            outcome: ChunkOutcome::Refused {
                reason: "the session is unknown".into(),
            },
        })
        .collect();
    shared.chunks.acknowledged(refused);
    let line = tokio::time::timeout(Duration::from_secs(10), channel.closing())
        .await
        .unwrap();
    assert!(line.contains("store refused"), "{line}");
    recording.finish().await;
    let failures = failures(&shared);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].cause, "store_refused");
    assert!(failures[0].message.contains("the session is unknown"));
    assert!(shared.chunks.is_empty(), "a refused chunk leaves the spool");
}

#[tokio::test]
async fn an_sftp_channel_its_tracker_gives_up_on_closes_the_channels_of_a_required_recording() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests(dir.path());
    let recording = start(
        &shared,
        policy(false, Fallback::CloseChannel),
        limits(1 << 20),
    );
    let sftp = recording.channel(Opened::Session);
    sftp.started(Start::Subsystem("sftp")).await;
    // A packet of length 0 is no SFTP: the tracker stops following the channel, and what
    // the channel does next would go unrecorded.
    sftp.user_sent(&[0, 0, 0, 0, 1]).await;
    let line = tokio::time::timeout(Duration::from_secs(10), sftp.closing())
        .await
        .unwrap();
    assert!(line.contains("cannot be followed"), "{line}");
    assert!(recording.closed());
    recording.finish().await;
    assert!(
        complete(&spooled(&shared)),
        "what was recorded ends complete"
    );
    let failures = failures(&shared);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].cause, "untracked");
    assert_eq!(failures[0].action, FailureAction::ClosedChannels);
}

/// Waits (polling, with a deadline) until the recorder's periodic flush spooled a chunk.
async fn until_flushed(shared: &Shared) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.chunks.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nothing flushed");
        // The spool has no notification to wait on; a short poll within the deadline.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
