//! The Audit page through the router without a socket (as `console::tests`): the filters of
//! `audit list`, keyset pages newest first, `audit:read` (a refusal is a 403 audited as
//! `permission_denied`), escaping of audit fields, the JSON-lines export, and the
//! incremental check: its watermark moves forward, stops before a bad event, and only
//! "verify from the start" finds an event edited before it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::api::extract::PeerAddr;
use crate::api::tests::Api;
use crate::audit::watermark::{self, Status};
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::store::audit_verified;

const HOST: &str = "ctl.test:8443";
const ORIGIN: &str = "https://ctl.test:8443";

const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]

[[role]]
name = "reviewer"
groups = ["reviewers"]
permissions = ["audit:read"]

[[role]]
name = "user"
groups = ["users"]
"#;

struct Got {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Got {
    /// The sequence numbers in the events table, in page order.
    fn seqs(&self) -> Vec<u64> {
        self.body
            .split("<td data-label=\"Seq\"><a href=\"/console/audit/")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
            .collect()
    }

    fn next(&self) -> Option<String> {
        let marker = "<a rel=\"next\" href=\"";
        let start = self.body.find(marker)? + marker.len();
        let len = self.body[start..].find('"').unwrap();
        Some(self.body[start..start + len].replace("&amp;", "&"))
    }

    fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker).unwrap() + marker.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_owned()
    }
}

async fn start() -> Api {
    Api::start_with_policy(POLICY).await
}

/// A console session of dev-login user `name` in `groups`; its cookie value.
async fn console_login(api: &Api, name: &str, groups: &[&str]) -> String {
    api.login(name, groups).await;
    let mut conn = api.state.store.conn().await.unwrap();
    let (id,): (String,) = sqlx::query_as("SELECT id FROM users WHERE username = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let user = crate::store::users::get(&mut conn, &id)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let tx = api.state.begin_audited().await.unwrap();
    crate::console::session::open_in(tx, &api.state, &user, "127.0.0.1")
        .await
        .unwrap()
        .secret
}

async fn send(api: &Api, request: Request<Body>) -> Got {
    let mut request = request;
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let response = api.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn cookie(value: &str) -> String {
    format!("{}={value}", crate::console::session::COOKIE)
}

async fn get(api: &Api, path: &str, session: &str) -> Got {
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie(session))
        .body(Body::empty())
        .unwrap();
    send(api, request).await
}

/// A same-origin form POST as the browser sends it.
async fn post(api: &Api, path: &str, session: &str, fields: &[(&str, &str)]) -> Got {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie(session))
        .body(Body::from(body))
        .unwrap();
    send(api, request).await
}

/// Commits one `target_deleted` event naming `name` (any text: it is audited as given).
async fn target_deleted(api: &Api, name: &str) -> u64 {
    let tx = api.state.begin_audited().await.unwrap();
    tx.commit(AuditEvent::new(
        Actor::system(),
        Event::TargetDeleted {
            details: event::TargetName { name: name.into() },
        },
    ))
    .await
    .unwrap();
    api.last_seq().await
}

/// Edits event `seq`'s body in the store, as someone with write access to the database.
async fn tamper(api: &Api, seq: u64) {
    let mut conn = api.state.store.conn().await.unwrap();
    let found = crate::store::audit::after_stored(&mut conn, seq - 1, 1)
        .await
        .unwrap();
    let edited = found[0].body.replacen("\"time\":\"", "\"time\":\"1", 1);
    assert_ne!(edited, found[0].body);
    crate::store::audit::tamper(&mut conn, seq, &edited)
        .await
        .unwrap();
}

async fn watermark_at(api: &Api) -> Option<u64> {
    let mut conn = api.state.store.conn().await.unwrap();
    audit_verified::get(&mut conn)
        .await
        .unwrap()
        .map(|m| m.sequence)
}

#[tokio::test]
async fn the_search_filters_as_audit_list_and_pages_newest_first_on_the_sequence() {
    let api = start().await;
    let rita = console_login(&api, "rita", &["reviewers"]).await;
    for n in 0..60 {
        target_deleted(&api, &format!("t{n}")).await;
    }
    api.login("bob", &["users"]).await;
    let head = api.last_seq().await;

    // Page by page, newest first, no event twice, none left out.
    let mut seen = Vec::new();
    let mut page = get(&api, "/console/audit", &rita).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.seqs().len(), 50);
    loop {
        seen.extend(page.seqs());
        let Some(next) = page.next() else { break };
        assert!(next.starts_with("/console/audit?before="), "{next}");
        page = get(&api, &next, &rita).await;
        assert_eq!(page.status, StatusCode::OK);
    }
    let all: Vec<u64> = (1..=head).rev().collect();
    assert_eq!(seen, all);

    // The filters of `audit list`, kept in the page links.
    let bob = get(&api, "/console/audit?user=bob", &rita).await;
    assert!(!bob.seqs().is_empty());
    assert!(bob.body.contains("value=\"bob\""));
    for seq in bob.seqs() {
        let event = get(&api, &format!("/console/audit/{seq}"), &rita).await;
        assert!(
            event.body.contains("&quot;user&quot;: &quot;bob&quot;"),
            "{}",
            event.body
        );
    }
    let deleted = get(&api, "/console/audit?type=target_deleted&since=1h", &rita).await;
    assert_eq!(deleted.seqs().len(), 50);
    let older = get(&api, &deleted.next().unwrap(), &rita).await;
    assert_eq!(older.seqs().len(), 10);
    assert!(deleted
        .next()
        .unwrap()
        .contains("type=target_deleted&since=1h&before="));
    let none = get(&api, "/console/audit?decision=deny", &rita).await;
    assert!(none.seqs().is_empty() && none.body.contains("No events match."));
    let bad = get(&api, "/console/audit?since=yesterday", &rita).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("RFC 3339"), "{}", bad.body);
}

#[tokio::test]
async fn without_audit_read_every_audit_page_is_403_and_audited_as_permission_denied() {
    let api = start().await;
    let bob = console_login(&api, "bob", &["users"]).await;
    let page = get(&api, "/console/sessions", &bob).await;
    let csrf = page.csrf();
    for path in [
        "/console/audit",
        "/console/audit/1",
        "/console/audit/export",
    ] {
        let (got, events) = api.audited(get(&api, path, &bob)).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{path}: {}", got.body);
        assert!(got.body.contains("audit:read"), "{}", got.body);
        assert_eq!(events, ["permission_denied"], "{path}");
    }
    let (got, events) = api
        .audited(post(
            &api,
            "/console/audit/verify",
            &bob,
            &[("csrf_token", &csrf)],
        ))
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(events, ["permission_denied"]);
}

#[tokio::test]
async fn audit_fields_are_rendered_escaped_and_an_event_page_shows_its_json() {
    let api = start().await;
    let rita = console_login(&api, "rita", &["reviewers"]).await;
    let evil = "<script>alert(1)</script>\"'";
    let seq = target_deleted(&api, evil).await;
    let event = get(&api, &format!("/console/audit/{seq}"), &rita).await;
    assert_eq!(event.status, StatusCode::OK);
    assert!(!event.body.contains("<script>"), "{}", event.body);
    // The JSON is pretty-printed, then escaped.
    assert!(
        event.body.contains(
            "&quot;name&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;\\&quot;&#39;&quot;"
        ),
        "{}",
        event.body
    );
    assert!(event
        .body
        .contains("\n  &quot;type&quot;: &quot;target_deleted&quot;"));
    let list = get(
        &api,
        "/console/audit?user=%3Cscript%3E&type=target_deleted",
        &rita,
    )
    .await;
    assert!(!list.body.contains("<script>"), "{}", list.body);
    assert!(list.body.contains("value=\"&lt;script&gt;\""));
    let missing = get(&api, "/console/audit/99999", &rita).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let junk = get(&api, "/console/audit/%3Cb%3E", &rita).await;
    assert_eq!(junk.status, StatusCode::NOT_FOUND);
    assert!(!junk.body.contains("<b>"));
}

#[tokio::test]
async fn the_export_is_the_search_as_json_lines_after_the_export_header() {
    let api = start().await;
    let rita = console_login(&api, "rita", &["reviewers"]).await;
    for n in 0..3 {
        target_deleted(&api, &format!("t{n}")).await;
    }
    let got = get(&api, "/console/audit/export?type=target_deleted", &rita).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let lines: Vec<Value> = got
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["format"], "portcullis-audit-export");
    assert_eq!(lines[0]["head"]["sequence"], api.last_seq().await);
    assert!(!lines[0]["keys"].as_array().unwrap().is_empty());
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|e| e["details"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t2", "t1", "t0"]);
    // Each line is the event as signed: it verifies on its own.
    let keys =
        crate::audit::chain::KeyRing::new(&api.state.keys.audit_public_keys().await.unwrap());
    for e in &lines[1..] {
        let map = e.as_object().unwrap();
        let hash = crate::audit::chain::event_hash(map).unwrap();
        assert_eq!(e["hash"], hash.as_str());
        assert!(keys.verify_event(
            e["key_id"].as_str().unwrap(),
            &hash,
            e["signature"].as_str().unwrap()
        ));
    }
}

#[tokio::test]
async fn the_watermark_moves_forward_in_batches_and_stops_before_a_bad_event() {
    let api = start().await;
    for n in 0..5 {
        target_deleted(&api, &format!("t{n}")).await;
    }
    let head = api.last_seq().await;

    // Two events per check: partial, then verified up to the head.
    let first = watermark::check(&api.state, 2).await.unwrap();
    assert!(
        matches!(&first, Status::Partial { up_to: Some(h), left } if h.sequence == 2 && *left == head - 2),
        "{first:?}"
    );
    assert_eq!(watermark_at(&api).await, Some(2));
    let mut status = first;
    for _ in 0..head {
        status = watermark::check(&api.state, 2).await.unwrap();
        if !matches!(status, Status::Partial { .. }) {
            break;
        }
    }
    assert!(
        matches!(&status, Status::Verified { up_to: Some(h), .. } if h.sequence == head),
        "{status:?}"
    );
    assert_eq!(watermark_at(&api).await, Some(head));

    // An event edited before the watermark is not checked again...
    tamper(&api, 3).await;
    let again = watermark::check(&api.state, 2).await.unwrap();
    assert!(matches!(again, Status::Verified { .. }), "{again:?}");

    // ...until the check starts from the first event: it names it, and the watermark stays
    // just before it, however often the check runs and however many events follow.
    watermark::reset(&api.state, Actor::system()).await.unwrap();
    assert_eq!(watermark_at(&api).await, None);
    for _ in 0..3 {
        target_deleted(&api, "later").await;
        let broken = watermark::check(&api.state, 10_000).await.unwrap();
        match broken {
            Status::Broken { up_to, failure } => {
                assert_eq!(failure.sequence, 3);
                assert_eq!(failure.problem, crate::audit::verify::Problem::Edited);
                assert_eq!(up_to.map(|h| h.sequence), Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(watermark_at(&api).await, Some(2));
    }
}

#[tokio::test]
async fn verify_from_the_start_needs_the_csrf_token_and_the_page_then_names_the_bad_event() {
    let api = start().await;
    let rita = console_login(&api, "rita", &["reviewers"]).await;
    let seq = target_deleted(&api, "edited later").await;
    target_deleted(&api, "after it").await;
    let page = get(&api, "/console/audit", &rita).await;
    assert!(page.body.contains("Verified up to event"), "{}", page.body);
    assert!(page.body.contains("portcullis audit verify --public-key"));
    tamper(&api, seq).await;
    let still = get(&api, "/console/audit", &rita).await;
    assert!(
        still.body.contains("Verified up to event"),
        "{}",
        still.body
    );

    let (refused, events) = api
        .audited(post(&api, "/console/audit/verify", &rita, &[]))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(events, ["permission_denied"]);
    assert!(watermark_at(&api).await.is_some());

    let (done, events) = api
        .audited(post(
            &api,
            "/console/audit/verify",
            &rita,
            &[("csrf_token", &page.csrf())],
        ))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        events,
        ["audit_verification_reset"],
        "who sent the check back is audited"
    );
    assert_eq!(done.headers[header::LOCATION], "/console/audit");
    let broken = get(&api, "/console/audit", &rita).await;
    let expected = format!("The chain breaks at event {seq} (");
    assert!(broken.body.contains(&expected), "{}", broken.body);
    assert!(broken.body.contains("it was edited"), "{}", broken.body);
    // The search leaves the edited event out and names it.
    assert!(!broken.seqs().contains(&seq));
    assert!(
        broken.body.contains(&format!("<li>event {seq}: ")),
        "{}",
        broken.body
    );
}
