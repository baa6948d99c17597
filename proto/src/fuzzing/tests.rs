//! Replays the seed corpus and every past crash of this crate's fuzz targets (see
//! `fuzz/README.md`); `write_seeds` regenerates the seeds that need the fixed signing key.

use std::path::{Path, PathBuf};

use super::*;
use crate::api::JoinRequest;
use crate::grant::GrantKey;
use crate::link::{
    AdmitFirst, ConnectionEvent, Hello, Request, Response, SessionEnd, Sync as LinkSync,
};
use crate::proxy::RefusalCode;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

include!("../../../fuzz/replay.rs");

#[test]
fn proxy_hello_corpus_replays() {
    replay_corpus(&fuzz_dir(), "proxy_hello", proxy_hello);
}

#[test]
fn grant_verify_corpus_replays() {
    replay_corpus(&fuzz_dir(), "grant_verify", grant_verify);
}

#[test]
fn link_frames_corpus_replays() {
    replay_corpus(&fuzz_dir(), "link_frames", link_frames);
}

#[test]
fn recording_chunks_corpus_replays() {
    replay_corpus(&fuzz_dir(), "recording_chunks", recording_chunks);
}

/// Writes the seeds of `recording_chunks`: a complete recording of a pty and an exec
/// channel, the same cut short, and one chunk alone:
/// `cargo test -p portcullis-proto --lib -- --ignored write_recording_seeds`.
#[test]
#[ignore = "regenerates fuzz/corpus seeds"]
fn write_recording_seeds() {
    use crate::recording::{CastHeader, Event, Recorder, RecordingId};
    use std::time::Duration;

    let mut rec = Recorder::with_chunk_len(RecordingId::new("r_fuzz").unwrap(), 256);
    let header = Event::PtyStarted(CastHeader {
        width: 80,
        height: 24,
        timestamp: NOW,
        term: "xterm".into(),
        command: None,
    });
    let mut chunks = rec.record(0, Duration::ZERO, &header).unwrap();
    for i in 0..8u64 {
        let output = Event::Output(format!("\u{1b}]52;c;aGk=\u{7}line {i}\r\n"));
        chunks.extend(rec.record(0, Duration::from_millis(i), &output).unwrap());
    }
    let exec = Event::Exec {
        command: "id".into(),
    };
    chunks.extend(rec.record(1, Duration::ZERO, &exec).unwrap());
    chunks.extend(rec.finish().unwrap());
    let framed_all = |chunks: &[crate::recording::Encoded]| -> Vec<u8> {
        chunks.iter().flat_map(|c| framed(&c.bytes)).collect()
    };
    let dir = fuzz_dir().join("corpus").join("recording_chunks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("complete"), framed_all(&chunks)).unwrap();
    std::fs::write(dir.join("cut_short"), framed_all(&chunks[..2])).unwrap();
    std::fs::write(dir.join("one_chunk"), &chunks[0].bytes).unwrap();
}

#[test]
fn seed_recording_is_complete_so_the_fuzzer_starts_past_the_chain() {
    let seed = std::fs::read(fuzz_dir().join("corpus/recording_chunks/complete")).unwrap();
    let mut pieces = Vec::new();
    let mut rest = &seed[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (piece, tail) = tail.split_at(u32::from_be_bytes(*len) as usize);
        pieces.push(piece);
        rest = tail;
    }
    assert!(pieces.len() > 2, "{} chunks", pieces.len());
    assert!(matches!(
        crate::recording::verify(pieces),
        crate::recording::Verdict::Complete { .. }
    ));
}

#[test]
fn seed_grant_is_accepted_so_the_fuzzer_starts_past_the_signature() {
    let token = valid_token();
    assert_eq!(
        grant::verify(&token, &grant_keys(), WORKER_ID, NOW),
        Ok(valid_claims())
    );
}

fn valid_token() -> String {
    let payload = serde_json::to_vec(&valid_claims()).unwrap();
    sign_raw(br#"{"alg":"EdDSA","kid":"k_fuzz"}"#, &payload)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Writes the seeds of `proxy_hello`, `grant_verify` and `link_frames`:
/// `cargo test -p portcullis-proto --lib -- --ignored write_seeds`.
#[test]
#[ignore = "regenerates fuzz/corpus seeds"]
fn write_seeds() {
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    let token = valid_token();
    let hello = |version: u32| ClientHello {
        protocol_version: version,
        grant: token.clone(),
    };
    write(
        "proxy_hello",
        "hello",
        &proxy::encode_frame(&hello(crate::PROTOCOL_VERSION)).unwrap(),
    );
    write(
        "proxy_hello",
        "hello_version_999",
        &proxy::encode_frame(&hello(999)).unwrap(),
    );
    write(
        "proxy_hello",
        "reply_refused",
        &proxy::encode_frame(&WorkerReply::Refused {
            code: RefusalCode::InvalidGrant,
            reason: "grant is malformed".into(),
        })
        .unwrap(),
    );
    write(
        "proxy_hello",
        "reply_accepted",
        &proxy::encode_frame(&WorkerReply::Accepted {
            connection_id: "c_1".into(),
        })
        .unwrap(),
    );
    write("proxy_hello", "length_too_large", &[0xff, 0xff, 0xff, 0xff]);

    write(
        "grant_verify",
        "token",
        &[&[0u8][..], token.as_bytes()].concat(),
    );
    let claims = serde_json::to_vec(&valid_claims()).unwrap();
    write("grant_verify", "claims", &[&[1u8][..], &claims].concat());
    write(
        "grant_verify",
        "header",
        &[&[2u8][..], br#"{"alg":"EdDSA","kid":"k_fuzz","typ":"JWT"}"#].concat(),
    );
    write(
        "grant_verify",
        "header_hs256",
        &[&[2u8][..], br#"{"alg":"HS256","kid":"k_fuzz"}"#].concat(),
    );

    let frames = [
        (
            "hello",
            Frame::Request {
                id: 1,
                body: Request::Hello(Hello {
                    protocol_version: 1,
                    worker_id: "w_1".into(),
                    proxy_addr: "127.0.0.1:9202".into(),
                    live_sessions: vec!["s_1".into()],
                    phase: Default::default(),
                }),
            },
        ),
        (
            "sync",
            Frame::Response {
                id: 1,
                body: Response::Sync(LinkSync {
                    grant_keys: vec![GrantKey {
                        kid: KID.into(),
                        public_key: grant_keys()[1].public_key.clone(),
                    }],
                    ended: vec![SessionEnd {
                        session_id: "s_1".into(),
                        reason: link::EndReason::Expired,
                    }],
                    heartbeat_ms: 1000,
                    controller_id: "c_1".into(),
                    tls_ca: None,
                }),
            },
        ),
        (
            "admit_first",
            Frame::Request {
                id: 3,
                body: Request::AdmitFirst(AdmitFirst {
                    session_id: "s_1".into(),
                    connection_id: "c_1".into(),
                    client_addr: "127.0.0.1:50000".into(),
                }),
            },
        ),
        (
            "events",
            Frame::Request {
                id: 5,
                body: Request::Events {
                    events: vec![
                        ConnectionEvent::opened("s_1", "c_1", NOW, "127.0.0.1", "10.0.0.1:22"),
                        ConnectionEvent::closed("s_1", "c_1", NOW, 10, 20, link::EndReason::Closed),
                    ],
                },
            },
        ),
        (
            "join",
            Frame::Request {
                id: 1,
                body: Request::Join(JoinRequest {
                    token: "jt_x".into(),
                    name: "worker-1".into(),
                    public_key: "AAAA".into(),
                    proxy_addr: "127.0.0.1:9202".into(),
                }),
            },
        ),
        (
            "end_session",
            Frame::Request {
                id: 2,
                body: Request::EndSession(SessionEnd {
                    session_id: "s_1".into(),
                    reason: link::EndReason::Canceled,
                }),
            },
        ),
        (
            "events_ack",
            Frame::Response {
                id: u64::MAX,
                body: Response::EventsAck {
                    event_ids: vec!["c_1:opened".into()],
                },
            },
        ),
    ];
    for (name, frame) in frames {
        write("link_frames", name, &framed(&link::encode(&frame).unwrap()));
    }
    let two = [
        framed(br#"{"frame":"request","id":2,"body":{"type":"ping"}}"#),
        framed(br#"{"frame":"response","id":2,"body":{"type":"error","message":"no"}}"#),
    ]
    .concat();
    write("link_frames", "ping_and_error", &two);
}
