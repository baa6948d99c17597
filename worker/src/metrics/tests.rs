use std::sync::Arc;
use std::time::Duration;

use super::*;

#[test]
fn connections_bytes_and_admissions_are_counted() {
    let m = Arc::new(Metrics::new());
    let zero = m.encode(0);
    assert!(
        zero.contains("portcullis_worker_bytes_total{direction=\"up\"} 0"),
        "{zero}"
    );
    assert!(
        zero.contains("portcullis_worker_admissions_total{outcome=\"refused\"} 0"),
        "{zero}"
    );
    m.admission(true, Duration::from_millis(2));
    m.admission(false, Duration::from_millis(1));
    let open = m.opened();
    let text = m.encode(1);
    assert!(
        text.contains("portcullis_worker_connections_open 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_connections_total 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_admissions_total{outcome=\"admitted\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_admission_duration_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_linked_controllers 1"),
        "{text}"
    );
    m.relayed(5, 7);
    drop(open);
    let text = m.encode(0);
    assert!(
        text.contains("portcullis_worker_connections_open 0"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_bytes_total{direction=\"up\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_bytes_total{direction=\"down\"} 7"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_worker_linked_controllers 0"),
        "{text}"
    );
}

#[test]
fn names_are_prefixed_and_counters_end_in_total() {
    let text = Metrics::new().encode(0);
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let mut words = line.split_whitespace().skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert!(name.starts_with("portcullis_worker_"), "{line}");
        if kind == "counter" {
            assert!(text.contains(&format!("{name}_total")), "{line}");
        }
    }
}

#[test]
fn ready_only_when_linked_and_heard() {
    assert_eq!(readiness(1, true), Ok(()));
    assert_eq!(readiness(0, true), Err(NotReady::Unlinked));
    assert_eq!(readiness(2, false), Err(NotReady::Unlinked));
}
