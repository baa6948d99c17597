//! The workers page through the router: state, heartbeat and live sessions for
//! `workers:admin`; a 403 audited otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::StatusCode;

use crate::console::harness::Client;
use crate::console::policy::tests::POLICY;

#[tokio::test]
async fn an_admin_sees_each_worker_with_its_state_and_live_sessions() {
    let c = Client::start(POLICY).await;
    let admin = c.logged_in("ada", &["admins"]).await;
    let api = &c.f.api;
    crate::console::harness::live_session(api).await;

    let got = c.get("/console/workers", &admin).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let body = &got.body;
    assert!(body.contains("<strong>w1</strong>"), "{body}");
    assert!(body.contains("<code>127.0.0.1:9401</code>"), "{body}");
    assert!(
        body.contains("<span class=\"state active\">active</span>"),
        "{body}"
    );
    assert!(
        body.contains("<td data-label=\"Live sessions\">1</td>"),
        "{body}"
    );
    assert!(body.contains(" s ago)"), "{body}");

    // Not heard for longer than `workers.lost_after` (30 s): lost.
    c.f.clock.advance(std::time::Duration::from_secs(31));
    let got = c.get("/console/workers", &admin).await;
    assert!(
        got.body.contains("<span class=\"state lost\">lost</span>"),
        "{}",
        got.body
    );
}

#[tokio::test]
async fn without_workers_admin_the_page_is_refused_and_audited() {
    let c = Client::start(POLICY).await;
    let reviewer = c.logged_in("rita", &["reviewers"]).await;
    let (got, events) = c.events(c.get("/console/workers", &reviewer)).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(events, ["permission_denied"]);
    assert!(got.body.contains("workers:admin"), "{}", got.body);
}
