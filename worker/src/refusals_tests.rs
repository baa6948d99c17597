//! The summing of refusals, on times made by hand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_proto::proxy::RefusalCode;

use super::{Aggregator, Refused, MAX_SESSIONS};

const WINDOW: Duration = Duration::from_secs(10);

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn refused(session: Option<&str>, code: RefusalCode, client: &str) -> Refused {
    Refused {
        session_id: session.map(str::to_owned),
        code,
        client_addr: client.to_owned(),
        message: "the session has ended (canceled)".to_owned(),
    }
}

fn numbered() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("r_{n}")
    }
}

#[test]
fn a_burst_of_one_sessions_refusals_is_one_summary_with_its_count_and_times() {
    let mut agg = Aggregator::new(WINDOW);
    for i in 0..500 {
        let client = if i == 0 { "192.0.2.7" } else { "192.0.2.8" };
        agg.note(
            refused(Some("s_1"), RefusalCode::SessionEnded, client),
            at(i),
        );
    }
    assert!(
        agg.due(at(9_999), numbered()).is_empty(),
        "the window is still open"
    );
    let due = agg.due(at(10_000), numbered());
    assert_eq!(due.len(), 1, "{due:?}");
    let summary = &due[0];
    assert_eq!(summary.session_id.as_deref(), Some("s_1"));
    assert_eq!(summary.code, RefusalCode::SessionEnded);
    assert_eq!(summary.count, 500);
    assert_eq!(summary.first_at_ms, 1_700_000_000_000);
    assert_eq!(summary.last_at_ms, 1_700_000_000_499);
    assert_eq!(summary.client_addr, "192.0.2.7");
    assert_eq!(
        summary.message.as_deref(),
        Some("the session has ended (canceled)")
    );
    assert!(agg.drain(numbered()).is_empty(), "nothing left");
}

#[test]
fn each_session_and_code_has_its_own_summary() {
    let mut agg = Aggregator::new(WINDOW);
    agg.note(
        refused(Some("s_1"), RefusalCode::SessionEnded, "192.0.2.7"),
        at(0),
    );
    agg.note(
        refused(Some("s_2"), RefusalCode::SessionEnded, "192.0.2.7"),
        at(1),
    );
    agg.note(
        refused(Some("s_1"), RefusalCode::ControllerUnreachable, "192.0.2.7"),
        at(2),
    );
    agg.note(
        refused(Some("s_1"), RefusalCode::SessionEnded, "192.0.2.7"),
        at(3),
    );
    let due = agg.drain(numbered());
    let keys: Vec<(Option<&str>, RefusalCode, u64)> = due
        .iter()
        .map(|s| (s.session_id.as_deref(), s.code, s.count))
        .collect();
    assert_eq!(
        keys,
        [
            (Some("s_1"), RefusalCode::SessionEnded, 2),
            (Some("s_2"), RefusalCode::SessionEnded, 1),
            (Some("s_1"), RefusalCode::ControllerUnreachable, 1),
        ]
    );
    let ids: Vec<&str> = due.iter().map(|s| s.summary_id.as_str()).collect();
    assert_eq!(ids, ["r_1", "r_2", "r_3"]);
}

#[test]
fn refusals_without_a_session_are_summed_per_code_and_carry_no_words_of_the_client() {
    let mut agg = Aggregator::new(WINDOW);
    for (i, client) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .enumerate()
    {
        agg.note(
            Refused {
                session_id: None,
                code: RefusalCode::BadHandshake,
                client_addr: (*client).to_owned(),
                message: "unknown field `grant-with-secret`".to_owned(),
            },
            at(i as u64),
        );
    }
    agg.note(
        refused(None, RefusalCode::InvalidGrant, "198.51.100.1"),
        at(5),
    );
    let due = agg.drain(numbered());
    assert_eq!(due.len(), 2, "{due:?}");
    assert_eq!(due[0].code, RefusalCode::BadHandshake);
    assert_eq!(due[0].count, 3);
    assert_eq!(due[0].client_addr, "198.51.100.1");
    assert!(due
        .iter()
        .all(|s| s.session_id.is_none() && s.message.is_none()));
}

#[test]
fn a_window_ends_its_length_after_its_first_refusal_and_a_later_one_opens_anew() {
    let mut agg = Aggregator::new(WINDOW);
    agg.note(
        refused(Some("s_1"), RefusalCode::SessionEnded, "192.0.2.7"),
        at(0),
    );
    agg.note(
        refused(Some("s_1"), RefusalCode::SessionEnded, "192.0.2.7"),
        at(9_000),
    );
    assert_eq!(agg.due(at(10_000), numbered())[0].count, 2);
    agg.note(
        refused(Some("s_1"), RefusalCode::SessionEnded, "192.0.2.7"),
        at(10_001),
    );
    assert!(agg.due(at(19_999), numbered()).is_empty());
    assert_eq!(agg.due(at(20_001), numbered())[0].count, 1);
}

#[test]
fn past_the_tracked_sessions_further_ones_are_summed_without_a_session() {
    let mut agg = Aggregator::new(WINDOW);
    for i in 0..MAX_SESSIONS + 5 {
        agg.note(
            refused(
                Some(&format!("s_{i}")),
                RefusalCode::SessionEnded,
                "192.0.2.7",
            ),
            at(0),
        );
    }
    let due = agg.drain(numbered());
    assert_eq!(due.len(), MAX_SESSIONS + 1);
    let rest: Vec<_> = due.iter().filter(|s| s.session_id.is_none()).collect();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].count, 5);
    assert_eq!(rest[0].message, None);
}
