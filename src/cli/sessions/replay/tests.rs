use std::time::Duration;

use portcullis_proto::recording::{cast, CastHeader, Chunk, Event, Recorder, RecordingId};

use super::{parse_idle_limit, parse_speed, LiveChain, Pace, Player};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn waits_are_the_recorded_gaps_divided_by_the_speed() {
    let pace = Pace {
        speed: 1.0,
        idle_limit: None,
    };
    assert_eq!(pace.wait(0.0, 1.5), secs(1.5));
    assert_eq!(pace.wait(1.5, 1.5), Duration::ZERO);
    let fast = Pace {
        speed: 4.0,
        idle_limit: None,
    };
    assert_eq!(fast.wait(1.0, 3.0), secs(0.5));
    let slow = Pace {
        speed: 0.5,
        idle_limit: None,
    };
    assert_eq!(slow.wait(0.0, 1.0), secs(2.0));
}

#[test]
fn the_idle_limit_caps_pauses_before_the_speed_applies() {
    let pace = Pace {
        speed: 2.0,
        idle_limit: Some(1.0),
    };
    // A minute of silence becomes the one-second limit, played twice as fast.
    assert_eq!(pace.wait(10.0, 70.0), secs(0.5));
    // Short gaps are untouched.
    assert_eq!(pace.wait(10.0, 10.4), secs(0.2));
    let zero = Pace {
        speed: 1.0,
        idle_limit: Some(0.0),
    };
    assert_eq!(zero.wait(0.0, 5.0), Duration::ZERO);
}

#[test]
fn odd_times_never_wait_long_or_panic() {
    let pace = Pace {
        speed: 1.0,
        idle_limit: None,
    };
    assert_eq!(pace.wait(5.0, 1.0), Duration::ZERO, "backwards");
    assert_eq!(pace.wait(0.0, f64::NAN), Duration::ZERO);
    assert_eq!(pace.wait(0.0, f64::INFINITY), Duration::ZERO);
    assert_eq!(pace.wait(0.0, 1e12), Duration::from_secs(86_400));
    assert_eq!(Pace::INSTANT.wait(0.0, 100.0), Duration::ZERO);
}

#[test]
fn speeds_and_limits_are_parsed_strictly() {
    assert_eq!(parse_speed("2"), Ok(2.0));
    assert_eq!(parse_speed("0.5"), Ok(0.5));
    for bad in ["0", "-1", "inf", "NaN", "fast"] {
        assert!(parse_speed(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_idle_limit("0"), Ok(0.0));
    assert!(parse_idle_limit("-2").is_err());
}

/// A pty recording whose output holds what a hostile user's programs could write.
fn hostile_cast() -> String {
    let mut rec = Recorder::new(RecordingId::new("c_1").unwrap());
    let header = Event::PtyStarted(CastHeader {
        width: 80,
        height: 24,
        timestamp: 1_700_000_000,
        term: "xterm".into(),
        command: None,
    });
    let mut encoded = rec.record(0, Duration::ZERO, &header).unwrap();
    let outputs = [
        (0.5, "$ id\r\n"),
        // The clipboard, a DCS string (DECRQSS), an APC string, a device-attributes request.
        (1.0, "uid=0\x1b]52;c;cm0gLXJmIH4=\x07\r\n"),
        (1.5, "\x1bP$qm\x1b\\\x1b_hidden\x1b\\\x1b[c"),
        // Colours pass.
        (4.0, "\x1b[1mbold\x1b[m\r\n"),
    ];
    for (t, text) in outputs {
        let event = Event::Output(text.into());
        encoded.extend(rec.record(0, secs(t), &event).unwrap());
    }
    encoded.extend(
        rec.record(0, secs(4.5), &Event::Input("secret\r".into()))
            .unwrap(),
    );
    encoded.extend(rec.finish().unwrap());
    let chunks: Vec<Chunk> = encoded
        .iter()
        .map(|e| Chunk::decode(&e.bytes).unwrap())
        .collect();
    cast(&chunks, 0).unwrap()
}

#[test]
fn played_output_passes_through_the_terminal_filter_with_its_timing() {
    let cast = hostile_cast();
    assert!(
        cast.contains("\\u001b]52;"),
        "the recording holds the attack"
    );
    let mut player = Player::new(Pace {
        speed: 1.0,
        idle_limit: Some(2.0),
    });
    let mut printed = Vec::new();
    let mut waits = Vec::new();
    for line in cast.lines().skip(1) {
        let step = player.event(line).unwrap();
        waits.push(step.wait);
        printed.extend(step.print);
    }
    let text = String::from_utf8(printed).unwrap();
    assert_eq!(text, "$ id\r\nuid=0\r\n\x1b[1mbold\x1b[m\r\n");
    // 0.5 s, then 0.5 s twice, then 2.5 s cut to the 2 s limit; input waits nothing.
    assert_eq!(
        waits,
        [secs(0.5), secs(0.5), secs(0.5), secs(2.0), Duration::ZERO]
    );
}

#[test]
fn a_sequence_split_across_events_is_still_filtered() {
    let mut player = Player::new(Pace::INSTANT);
    let first = player.event(r#"[0.1, "o", "a\u001b]52;c;"]"#).unwrap();
    let second = player.event(r#"[0.2, "o", "cm0gLXJm\u0007b"]"#).unwrap();
    assert_eq!([first.print, second.print].concat(), b"ab");
}

#[test]
fn a_malformed_event_is_an_error_not_output() {
    let mut player = Player::new(Pace::INSTANT);
    assert!(player.event("not json").is_err());
    assert!(player.event(r#"{"t": 1}"#).is_err());
}

#[test]
fn the_live_chain_stops_at_an_altered_or_missing_chunk() {
    let mut rec = Recorder::with_chunk_len(RecordingId::new("c_1").unwrap(), 256);
    let mut encoded = Vec::new();
    for i in 0..20u64 {
        let event = Event::Output(format!("output line number {i}\r\n"));
        encoded.extend(rec.record(0, Duration::from_millis(i), &event).unwrap());
    }
    encoded.extend(rec.finish().unwrap());
    assert!(encoded.len() > 3);
    let mut chain = LiveChain::new();
    for e in &encoded {
        chain.push(&e.bytes).unwrap();
    }
    // Chunk 2 altered: chunk 3 no longer chains.
    let mut chain = LiveChain::new();
    chain.push(&encoded[0].bytes).unwrap();
    chain.push(&encoded[1].bytes).unwrap();
    let mut altered = encoded[2].bytes.clone();
    let last = altered.len() - 2;
    altered[last] ^= 1;
    chain.push(&altered).unwrap();
    let err = chain.push(&encoded[3].bytes).unwrap_err();
    assert!(err.to_string().contains("does not chain"), "{err}");
    // Chunk 1 missing.
    let mut chain = LiveChain::new();
    chain.push(&encoded[0].bytes).unwrap();
    let err = chain.push(&encoded[2].bytes).unwrap_err();
    assert!(err.to_string().contains("expected chunk 1"), "{err}");
}
