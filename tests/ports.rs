//! A peer that must be told its port before it starts is started again on another port when
//! the first was taken meanwhile (tests/common/ports.rs), instead of failing the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::net::TcpListener;

use common::dev::{curl, Dev};
use common::ports::{free_port, start_on_ports, Start};

#[test]
fn a_dev_whose_api_port_is_taken_starts_on_another() {
    // Another process holds the first port the harness picks.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let mut picks = 0;
    let mut prepared = Vec::new();
    let (dev, last) = Dev::start_on_ports(
        || {
            picks += 1;
            if picks == 1 {
                taken_port
            } else {
                free_port()
            }
        },
        |port| {
            prepared.push(port);
            port
        },
        |port| vec!["--api-port".into(), port.to_string()],
    );
    assert_eq!(picks, 2, "one collision, then a start");
    assert_eq!(prepared.len(), 2, "the preparation ran for each port tried");
    assert_eq!(prepared[0], taken_port);
    assert_ne!(last, taken_port);
    assert_eq!(
        dev.ready["api"].as_str().unwrap(),
        format!("127.0.0.1:{last}"),
        "{}",
        dev.ready
    );
    let (code, body) = curl(&dev, "GET", "/v1/health", None, None);
    assert_eq!(code, 200, "{body}");
    drop(taken);
}

#[test]
fn a_start_that_keeps_colliding_fails_after_a_bounded_number_of_ports() {
    let mut tried = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        start_on_ports("a peer", free_port, |port| {
            tried.push(port);
            Start::<()>::Collided("bind: Address already in use".into())
        })
    }));
    let message = outcome
        .err()
        .and_then(|e| e.downcast::<String>().ok())
        .expect("the start fails with a message");
    assert_eq!(tried.len(), common::ports::ATTEMPTS);
    assert!(
        message.contains("did not start on any of 5 ports") && message.contains("in use"),
        "{message}"
    );
}

#[test]
fn a_failure_other_than_a_taken_port_is_not_retried() {
    let mut tried = 0;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        start_on_ports("a peer", free_port, |_| {
            tried += 1;
            common::ports::collided_or_panic::<()>("the peer did not start", "bad config".into())
        })
    }));
    assert!(outcome.is_err());
    assert_eq!(tried, 1);
}
