use std::time::{Duration, Instant};

use super::*;
use crate::link::{EndReason, Hello, SessionEnd, Sync};

const SILENCE: Duration = Duration::from_secs(10);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The id a frame carries, read back from its bytes.
fn id_of(bytes: &[u8]) -> u64 {
    match decode(bytes).unwrap() {
        Frame::Request { id, .. } | Frame::Response { id, .. } => id,
    }
}

fn response(id: u64, body: Response) -> Vec<u8> {
    encode(&Frame::Response { id, body }).unwrap().to_vec()
}

fn request(id: u64, body: Request) -> Vec<u8> {
    encode(&Frame::Request { id, body }).unwrap().to_vec()
}

fn ask(peer: &mut Peer<&'static str>, tag: &'static str, now: Instant) -> u64 {
    id_of(&peer.request(Request::Ping, tag, None, now).unwrap())
}

#[test]
fn the_worker_numbers_its_requests_odd_and_the_controller_even() {
    let now = Instant::now();
    let mut worker = Peer::new(Role::Worker, SILENCE, now);
    let mut controller = Peer::new(Role::Controller, SILENCE, now);
    let worker_ids: Vec<u64> = (0..4).map(|_| ask(&mut worker, "w", now)).collect();
    let controller_ids: Vec<u64> = (0..4).map(|_| ask(&mut controller, "c", now)).collect();
    assert_eq!(worker_ids, [1, 3, 5, 7]);
    assert_eq!(controller_ids, [2, 4, 6, 8]);
    assert!(Role::Worker.numbers(u64::MAX) && !Role::Controller.numbers(u64::MAX));
}

#[test]
fn answers_reach_what_their_own_request_awaits_in_any_order() {
    let now = Instant::now();
    let mut peer = Peer::new(Role::Worker, SILENCE, now);
    let first = ask(&mut peer, "first", now);
    let second = ask(&mut peer, "second", now);
    assert_eq!(peer.in_flight(), 2);
    match peer.receive(&response(second, Response::Admitted), now) {
        Ok(Incoming::Answer {
            awaits: "second",
            body: Response::Admitted,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    match peer.receive(&response(first, Response::Ok), now) {
        Ok(Incoming::Answer {
            awaits: "first",
            body: Response::Ok,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(peer.in_flight(), 0);
}

#[test]
fn an_answer_to_an_id_never_used_is_refused() {
    let now = Instant::now();
    let mut peer = Peer::new(Role::Controller, SILENCE, now);
    let asked = ask(&mut peer, "x", now);
    // An id of ours not used yet, and an id of the other side's parity.
    for id in [asked + 2, asked + 1, 0, u64::MAX] {
        match peer.receive(&response(id, Response::Ok), now) {
            Err(LinkError::UnknownReply { id: refused }) => assert_eq!(refused, id),
            other => panic!("id {id}: unexpected {other:?}"),
        }
    }
    // The request actually in flight is still answered.
    assert!(matches!(
        peer.receive(&response(asked, Response::Ok), now),
        Ok(Incoming::Answer { awaits: "x", .. })
    ));
}

#[test]
fn a_second_answer_to_one_request_is_refused() {
    let now = Instant::now();
    let mut peer = Peer::new(Role::Worker, SILENCE, now);
    let id = ask(&mut peer, "x", now);
    assert!(peer.receive(&response(id, Response::Ok), now).is_ok());
    match peer.receive(&response(id, Response::Ok), now) {
        Err(LinkError::DuplicateReply { id: refused }) => assert_eq!(refused, id),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_request_numbered_with_this_sides_parity_is_refused() {
    let now = Instant::now();
    let mut worker: Peer<()> = Peer::new(Role::Worker, SILENCE, now);
    let mut controller: Peer<()> = Peer::new(Role::Controller, SILENCE, now);
    assert!(matches!(
        worker.receive(&request(3, Request::Ping), now),
        Err(LinkError::RequestIdOfOurs { id: 3 })
    ));
    assert!(matches!(
        controller.receive(&request(2, Request::RenewCertificate), now),
        Err(LinkError::RequestIdOfOurs { id: 2 })
    ));
    assert!(matches!(
        worker.receive(&request(2, Request::Ping), now),
        Ok(Incoming::Request {
            id: 2,
            body: Request::Ping
        })
    ));
    assert!(matches!(
        controller.receive(&request(1, Request::RenewCertificate), now),
        Ok(Incoming::Request {
            id: 1,
            body: Request::RenewCertificate
        })
    ));
}

#[test]
fn a_request_times_out_at_its_deadline_and_its_late_answer_is_harmless_once() {
    let start = Instant::now();
    let mut peer = Peer::new(Role::Worker, SILENCE, start);
    let timed = id_of(
        &peer
            .request(Request::Ping, "timed", Some(secs(5)), start)
            .unwrap(),
    );
    let patient = ask(&mut peer, "patient", start);
    assert_eq!(peer.next_deadline(), start + secs(5));

    let due = peer.poll_timers(start + millis(4_999)).unwrap();
    assert!(due.expired.is_empty());
    let due = peer.poll_timers(start + secs(5)).unwrap();
    match due.expired.as_slice() {
        [("timed", LinkError::TimedOut { after })] => assert_eq!(*after, secs(5)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(peer.in_flight(), 1, "a request without a deadline waits");
    assert_eq!(peer.next_deadline(), start + SILENCE);

    // The answer comes after all: nobody waits for it, and the link is fine.
    match peer.receive(&response(timed, Response::Ok), start + secs(6)) {
        Ok(Incoming::Late { id }) => assert_eq!(id, timed),
        other => panic!("unexpected {other:?}"),
    }
    // But only once.
    assert!(matches!(
        peer.receive(&response(timed, Response::Ok), start + secs(6)),
        Err(LinkError::DuplicateReply { .. })
    ));
    assert!(matches!(
        peer.receive(&response(patient, Response::Ok), start + secs(6)),
        Ok(Incoming::Answer {
            awaits: "patient",
            ..
        })
    ));
}

#[test]
fn a_silent_peer_is_noticed_and_any_frame_or_a_pause_in_reading_restarts_the_count() {
    let start = Instant::now();
    let mut peer: Peer<()> = Peer::new(Role::Controller, SILENCE, start);
    assert!(peer.poll_timers(start + secs(9)).is_ok());
    assert_eq!(peer.next_deadline(), start + SILENCE);
    // A frame at 9 s: silent only from 19 s.
    peer.receive(
        &request(
            1,
            Request::Heartbeat {
                live_sessions: vec![],
                phase: Default::default(),
            },
        ),
        start + secs(9),
    )
    .unwrap();
    assert!(peer.poll_timers(start + secs(18)).is_ok());
    peer.not_reading(start + secs(18));
    assert!(peer.poll_timers(start + secs(27)).is_ok());
    match peer.poll_timers(start + secs(28)) {
        Err(LinkError::Silent { after }) => assert_eq!(after, SILENCE),
        other => panic!("unexpected {other:?}"),
    }
    // A frame that does not decode is not a sign of life.
    let mut peer: Peer<()> = Peer::new(Role::Controller, SILENCE, start);
    assert!(peer.receive(b"nonsense", start + secs(9)).is_err());
    assert!(matches!(
        peer.poll_timers(start + SILENCE),
        Err(LinkError::Silent { .. })
    ));
}

#[test]
fn heartbeats_are_due_at_once_then_once_per_interval() {
    let start = Instant::now();
    let mut peer: Peer<()> = Peer::new(Role::Worker, SILENCE, start);
    assert!(
        !peer.poll_timers(start).unwrap().heartbeat,
        "none before a schedule"
    );
    peer.heartbeat_every(secs(1), start);
    assert_eq!(peer.next_deadline(), start);
    assert!(peer.poll_timers(start).unwrap().heartbeat);
    assert!(!peer.poll_timers(start + millis(999)).unwrap().heartbeat);
    assert_eq!(peer.next_deadline(), start + secs(1));
    assert!(peer.poll_timers(start + secs(1)).unwrap().heartbeat);
    assert!(!peer.poll_timers(start + millis(1_500)).unwrap().heartbeat);
    // A driver that stalled for 4.5 s gets one heartbeat, not a burst, and the next one an
    // interval later.
    let late = start + millis(6_500);
    assert!(peer.poll_timers(late).unwrap().heartbeat);
    assert!(!peer.poll_timers(late).unwrap().heartbeat);
    assert_eq!(peer.next_deadline(), late + secs(1));
}

#[test]
fn closing_fails_every_request_in_flight_and_refuses_new_ones() {
    let now = Instant::now();
    let mut peer = Peer::new(Role::Controller, SILENCE, now);
    ask(&mut peer, "a", now);
    peer.request(Request::Ping, "b", Some(secs(5)), now)
        .unwrap();
    assert!(peer.awaits_any(|t| *t == "b"));
    let failed = peer.close();
    let tags: Vec<&str> = failed.iter().map(|(tag, _)| *tag).collect();
    assert_eq!(tags, ["a", "b"]);
    assert!(failed.iter().all(|(_, e)| matches!(e, LinkError::Closed)));
    assert_eq!(peer.in_flight(), 0);
    assert!(!peer.awaits_any(|_| true));
    match peer.request(Request::Ping, "c", None, now) {
        Err(Unsent {
            awaits: "c",
            error: LinkError::Closed,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn oversize_and_garbage_frames_are_errors_never_panics() {
    let now = Instant::now();
    let mut peer: Peer<&str> = Peer::new(Role::Worker, SILENCE, now);
    let huge = vec![b' '; MAX_FRAME_LEN + 1];
    assert!(matches!(
        peer.receive(&huge, now),
        Err(LinkError::FrameTooLarge { len }) if len == MAX_FRAME_LEN + 1
    ));
    for garbage in [
        &b""[..],
        b"\xff\x00",
        b"{}",
        b"[1,2]",
        br#"{"frame":"request","id":-1,"body":{"type":"ping"}}"#,
        br#"{"frame":"request","id":2,"body":{"type":"gone_fishing"}}"#,
        br#"{"frame":"response","id":1}"#,
    ] {
        match peer.receive(garbage, now) {
            Err(LinkError::Malformed { reason }) => assert!(!reason.is_empty()),
            other => panic!("{garbage:?}: unexpected {other:?}"),
        }
    }
    // The serde error names what was wrong (the controller's log quotes it, escaped).
    match peer.receive(
        br#"{"frame":"request","id":2,"body":{"type":"gone_fishing"}}"#,
        now,
    ) {
        Err(e) => assert!(e.to_string().contains("gone_fishing"), "{e}"),
        Ok(other) => panic!("unexpected {other:?}"),
    }

    // A request too large to send is given back, and its id is not used up.
    let events =
        vec![crate::link::ConnectionEvent::opened("s", "c", 1, "a", &"e".repeat(MAX_FRAME_LEN)); 1];
    match peer.request(Request::Events { events }, "big", None, now) {
        Err(Unsent {
            awaits: "big",
            error: LinkError::FrameTooLarge { len },
        }) => assert!(len > MAX_FRAME_LEN),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(peer.in_flight(), 0);
    assert_eq!(
        id_of(&peer.request(Request::Ping, "next", None, now).unwrap()),
        1
    );
    assert!(matches!(
        peer.answer(2, Response::error("x".repeat(MAX_FRAME_LEN))),
        Err(LinkError::FrameTooLarge { .. })
    ));
}

/// What the worker's requests await in the exchange below.
#[derive(Debug, PartialEq)]
enum WorkerAwaits {
    Hello,
    Heartbeat,
}

#[test]
fn a_worker_peer_and_a_controller_peer_speak_to_each_other_in_memory() {
    let now = Instant::now();
    let mut worker: Peer<WorkerAwaits> = Peer::new(Role::Worker, SILENCE, now);
    let mut controller: Peer<&str> = Peer::new(Role::Controller, SILENCE, now);

    // The hello, on the wire exactly as before the peer existed.
    let hello = worker
        .request(
            Request::Hello(Hello {
                protocol_version: crate::PROTOCOL_VERSION,
                worker_id: "w_1".into(),
                proxy_addr: "127.0.0.1:1".into(),
                live_sessions: vec![],
                phase: Default::default(),
            }),
            WorkerAwaits::Hello,
            Some(secs(10)),
            now,
        )
        .unwrap();
    assert!(
        std::str::from_utf8(&hello)
            .unwrap()
            .starts_with(r#"{"frame":"request","id":1,"body":{"type":"hello","#),
        "{hello:?}"
    );
    let Ok(Incoming::Request {
        id,
        body: Request::Hello(h),
    }) = controller.receive(&hello, now)
    else {
        panic!("the controller did not see a hello");
    };
    assert_eq!(h.worker_id, "w_1");
    let sync = |ended| {
        Response::Sync(Sync {
            grant_keys: vec![],
            ended,
            heartbeat_ms: 1000,
            controller_id: "c_1".into(),
            tls_ca: None,
        })
    };
    let answer = controller.answer(id, sync(vec![])).unwrap();
    match worker.receive(&answer, now) {
        Ok(Incoming::Answer {
            awaits: WorkerAwaits::Hello,
            body: Response::Sync(s),
        }) => worker.heartbeat_every(Duration::from_millis(s.heartbeat_ms), now),
        other => panic!("unexpected {other:?}"),
    }

    // Both ask at once: the worker its heartbeat, the controller a session's end.
    assert!(worker.poll_timers(now).unwrap().heartbeat);
    let heartbeat = worker
        .request(
            Request::Heartbeat {
                live_sessions: vec!["s_1".into()],
                phase: Default::default(),
            },
            WorkerAwaits::Heartbeat,
            None,
            now,
        )
        .unwrap();
    let end = controller
        .request(
            Request::EndSession(SessionEnd {
                session_id: "s_1".into(),
                reason: EndReason::Canceled,
            }),
            "end s_1",
            Some(secs(5)),
            now,
        )
        .unwrap();
    assert_eq!((id_of(&heartbeat), id_of(&end)), (3, 2));

    // The frames cross; each side answers the other's request and then gets its own answer.
    let Ok(Incoming::Request { id, body }) = worker.receive(&end, now) else {
        panic!("the worker did not see the end");
    };
    assert!(matches!(
        body,
        Request::EndSession(SessionEnd {
            reason: EndReason::Canceled,
            ..
        })
    ));
    let ended = worker.answer(id, Response::Ok).unwrap();
    let Ok(Incoming::Request { id, body }) = controller.receive(&heartbeat, now) else {
        panic!("the controller did not see the heartbeat");
    };
    assert!(matches!(body, Request::Heartbeat { .. }));
    let reconcile = controller
        .answer(
            id,
            sync(vec![SessionEnd {
                session_id: "s_1".into(),
                reason: EndReason::Canceled,
            }]),
        )
        .unwrap();
    assert!(matches!(
        controller.receive(&ended, now),
        Ok(Incoming::Answer {
            awaits: "end s_1",
            body: Response::Ok
        })
    ));
    assert!(matches!(
        worker.receive(&reconcile, now),
        Ok(Incoming::Answer {
            awaits: WorkerAwaits::Heartbeat,
            body: Response::Sync(_)
        })
    ));
    assert_eq!((worker.in_flight(), controller.in_flight()), (0, 0));

    // A controller talking to a controller is caught at its first request.
    let mut other_controller: Peer<()> = Peer::new(Role::Controller, SILENCE, now);
    let ping = other_controller
        .request(Request::Ping, (), None, now)
        .unwrap();
    assert!(matches!(
        controller.receive(&ping, now),
        Err(LinkError::RequestIdOfOurs { id: 2 })
    ));
}

#[test]
fn the_silence_limit_follows_the_heartbeat_and_stays_inside_the_admission_grace() {
    // The default interval: a hung controller is noticed in 2.5 s, well inside the worker's
    // 5 s admission grace, with time left to link to another controller.
    assert_eq!(silence_limit(secs(1)), millis(2500));
    assert!(silence_limit(secs(1)) < secs(5) - secs(2));
    // A long interval never makes a live link look silent between two of its frames.
    for every in [secs(10), secs(15), secs(60)] {
        assert!(silence_limit(every) > every * 2, "{every:?}");
    }
    // A worker set to the interval the hello's answer named goes silent at that limit.
    let start = Instant::now();
    let mut worker: Peer<&str> = Peer::new(Role::Worker, secs(10), start);
    worker.silent_after(silence_limit(millis(200)));
    assert!(worker.poll_timers(start + millis(800)).is_ok());
    assert!(matches!(
        worker.poll_timers(start + millis(900)),
        Err(LinkError::Silent { .. })
    ));
}

#[test]
fn a_sync_without_the_tls_ca_bundle_still_decodes_and_one_with_it_keeps_it() {
    // A controller of an earlier release sends no bundle: the worker keeps the CAs it has.
    let earlier =
        r#"{"type":"sync","grant_keys":[],"ended":[],"heartbeat_ms":1000,"controller_id":"c_1"}"#;
    let Response::Sync(sync) = serde_json::from_str::<Response>(earlier).unwrap() else {
        panic!("not a sync");
    };
    assert_eq!(sync.tls_ca, None);
    let with = serde_json::to_string(&Response::Sync(Sync {
        tls_ca: Some("PEM".into()),
        ..sync
    }))
    .unwrap();
    let Response::Sync(back) = serde_json::from_str::<Response>(&with).unwrap() else {
        panic!("not a sync");
    };
    assert_eq!(back.tls_ca.as_deref(), Some("PEM"));
}
