//! The session page, the player pages, the cast and live routes through the router (as
//! `console::tests`), and the live follower's pure check of each chunk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use portcullis_proto::recording::{
    CastHeader, Encoded, Event, Recorder, RecordingId, SpooledChunk, StoredChunk,
};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::PLAYER_CSP;
use crate::api::extract::PeerAddr;
use crate::console::harness::{self, Client, Got};
use crate::recordings::playback::{Follower, LiveMessage};

/// An admin who sees every session but not recordings, a reviewer who reads both, a user
/// who connects.
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
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "reviewer"
groups = ["reviewers"]
permissions = ["sessions:read-all", "recordings:read", "audit:read"]

[[role]]
name = "user"
groups = ["users"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
"#;

const RECORDING: &str = "c_rec1";
/// What the recorded terminal printed: markup that must stay text.
const OUTPUT: &str = "marker <script>alert(1)</script>\r\n";

struct Rig {
    client: Client,
    session: String,
}

/// A session of dev-login user `uma` with a finished recording: a pty channel printing
/// [`OUTPUT`] (and a typed password, recorded as input) and an exec channel.
async fn rig() -> Rig {
    rig_with(true).await
}

/// [`rig`] with a recording that is finished or not (a live one).
async fn rig_with(finish: bool) -> Rig {
    let client = Client::start(POLICY).await;
    let api = &client.f.api;
    let (worker, session) = harness::live_session(api).await;
    let chunks: Vec<SpooledChunk> = recording(finish)
        .iter()
        .map(|c| SpooledChunk {
            session_id: session.clone(),
            connection_id: RECORDING.into(),
            recording_id: RECORDING.into(),
            seq: c.seq,
            data: c.bytes.clone(),
        })
        .collect();
    let answer = crate::recordings::ingest::store_chunks(&api.state, &worker, chunks).await;
    assert!(
        !format!("{answer:?}").contains("Refused") && !format!("{answer:?}").contains("Later"),
        "{answer:?}"
    );
    Rig { client, session }
}

fn recording(finish: bool) -> Vec<Encoded> {
    let mut rec = Recorder::with_chunk_len(RecordingId::new(RECORDING).unwrap(), 300);
    let at = Duration::from_millis;
    let mut out = Vec::new();
    let header = CastHeader {
        width: 100,
        height: 30,
        timestamp: 1_900_000_000,
        term: "xterm".into(),
        command: None,
    };
    out.extend(rec.record(0, at(0), &Event::PtyStarted(header)).unwrap());
    out.extend(
        rec.record(0, at(10), &Event::Input("hunter2\r".into()))
            .unwrap(),
    );
    out.extend(
        rec.record(0, at(20), &Event::Output(OUTPUT.into()))
            .unwrap(),
    );
    out.extend(
        rec.record(
            1,
            at(30),
            &Event::Exec {
                command: "<b>rm</b> -rf".into(),
            },
        )
        .unwrap(),
    );
    out.extend(rec.record(1, at(40), &Event::Exited { status: 3 }).unwrap());
    if finish {
        out.extend(rec.finish().unwrap());
    } else {
        out.extend(rec.flush().unwrap());
    }
    out
}

impl Rig {
    async fn get(&self, path: &str, cookie: Option<&str>) -> Got {
        match cookie {
            Some(cookie) => self.client.get(path, cookie).await,
            None => self.client.get_anonymous(path).await,
        }
    }

    /// Local user `name` in `groups`, enrolled in TOTP and logged in to the console; the
    /// cookie's value.
    async fn console_user(&self, name: &str, groups: &[&str]) -> String {
        let cookie = self.client.logged_in(name, groups).await;
        self.client.f.clock.advance(Duration::from_secs(30));
        cookie
    }

    async fn audited(&self, path: &str, cookie: &str) -> (Got, Vec<String>) {
        self.client
            .f
            .api
            .audited(self.get(path, Some(cookie)))
            .await
    }

    fn path(&self, tail: &str) -> String {
        format!("/console/sessions/{}{tail}", self.session)
    }
}

#[tokio::test]
async fn the_session_page_shows_the_recording_escaped_to_those_the_api_lets_read_it() {
    let rig = rig().await;
    let rita = rig.console_user("rita", &["reviewers"]).await;
    let request = crate::audit::event::PveRequest {
        connection_id: "c_pve".into(),
        method: "POST".into(),
        path: "/api2/json/<img src=x>".into(),
        status: 403,
        bytes_up: 10,
        bytes_down: 20,
        millis: 7,
        refused: Some("no <write>".into()),
    };
    rig.client
        .f
        .api
        .state
        .audit_alone(
            crate::audit::AuditEvent::new(
                crate::audit::Actor::worker("w_1"),
                crate::audit::Event::PveRequest { details: request },
            )
            .session(&rig.session),
        )
        .await
        .unwrap();
    let (page, events) = rig.audited(&rig.path(""), &rita).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(events, ["recording_read"], "the listing is a read");
    assert!(page.body.contains(">uma<") && page.body.contains(">web<"));
    assert!(page.body.contains(RECORDING), "{}", page.body);
    assert!(
        page.body.contains("&lt;b&gt;rm&lt;/b&gt; -rf") && !page.body.contains("<b>rm"),
        "the exec command is escaped: {}",
        page.body
    );
    let play = format!("{}/recordings/{RECORDING}/play?channel=0", rig.path(""));
    assert!(page.body.contains(&play), "a Play link: {}", page.body);
    assert!(
        !page.body.contains("/watch"),
        "finished: no Follow live link"
    );
    assert!(!page.body.contains("hunter2"), "never the typed input");
    assert!(
        page.body.contains("Proxmox API requests")
            && page.body.contains("/api2/json/&lt;img src=x&gt;")
            && page.body.contains("no &lt;write&gt;")
            && !page.body.contains("<img"),
        "the request log, escaped: {}",
        page.body
    );

    // An admin sees the session (sessions:read-all) but not its recording.
    let ada = rig.console_user("ada", &["admins"]).await;
    let (page, events) = rig.audited(&rig.path(""), &ada).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(events.is_empty(), "{events:?}");
    assert!(page.body.contains("needs <code>recordings:read</code>"));
    assert!(
        !page.body.contains("Proxmox API requests")
            && page.body.contains("needs <code>audit:read</code>"),
        "no request log without audit:read: {}",
        page.body
    );
    assert!(!page.body.contains("/play"), "{}", page.body);
    for tail in ["/play", "/watch", "/cast", "/live"] {
        let path = format!("{}/recordings/{RECORDING}{tail}", rig.path(""));
        let (got, events) = rig.audited(&path, &ada).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{tail}: {}", got.body);
        assert!(got.body.contains("recordings:read"), "{}", got.body);
        assert_eq!(events, ["permission_denied"], "{tail}");
    }

    // Another user sees neither (sessions:read-all), refused and audited.
    let ugo = rig.console_user("ugo", &["users"]).await;
    let (got, events) = rig.audited(&rig.path(""), &ugo).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert_eq!(events, ["permission_denied"]);

    // Without a console session: to the login page.
    let got = rig.get(&rig.path(""), None).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert_eq!(got.headers[header::LOCATION], "/console/login");
}

#[tokio::test]
async fn the_cast_route_serves_the_recordings_asciicast_and_audits_the_read() {
    let rig = rig().await;
    let rita = rig.console_user("rita", &["reviewers"]).await;
    let cast = format!("{}/recordings/{RECORDING}/cast", rig.path(""));
    for query in ["", "?channel=0"] {
        let (got, events) = rig.audited(&format!("{cast}{query}"), &rita).await;
        assert_eq!(got.status, StatusCode::OK, "{query}: {}", got.body);
        assert_eq!(got.headers[header::CONTENT_TYPE], "application/x-asciicast");
        assert_eq!(got.headers["x-portcullis-recording-state"], "complete");
        let mut lines = got.body.lines();
        let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(
            (header["version"].as_u64(), header["width"].as_u64()),
            (Some(2), Some(100))
        );
        let output: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(
            output.iter().any(|e| e[1] == "o" && e[2] == OUTPUT),
            "{output:?}"
        );
        // The reads before the cast (a listing, to find the pty channel, when none is named).
        assert_eq!(events.last().map(String::as_str), Some("recording_read"));
    }
    let reads = events_of(&rig, "recording_read").await;
    assert!(
        reads.iter().any(|e| e["details"]["what"] == "cast"
            && e["details"]["recording_id"] == RECORDING
            && e["actor"]["user"] == "rita"),
        "{reads:?}"
    );
    // The exec channel has no terminal; a channel that is not a number is a 400.
    let got = rig.get(&format!("{cast}?channel=1"), Some(&rita)).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND, "{}", got.body);
    assert!(got.body.contains("not a pty channel"), "{}", got.body);
    let got = rig.get(&format!("{cast}?channel=x"), Some(&rita)).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST, "{}", got.body);
    let got = rig
        .get(
            &format!("{}/recordings/c_nope/cast?channel=0", rig.path("")),
            Some(&rita),
        )
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND, "{}", got.body);
}

#[tokio::test]
async fn the_player_page_has_its_own_csp_and_loads_only_the_consoles_files() {
    let rig = rig().await;
    let rita = rig.console_user("rita", &["reviewers"]).await;
    let base = format!("{}/recordings/{RECORDING}", rig.path(""));
    for (tail, attribute) in [("play", "data-cast"), ("watch", "data-live")] {
        let page = rig
            .get(&format!("{base}/{tail}?channel=0"), Some(&rita))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.headers[header::CONTENT_SECURITY_POLICY], PLAYER_CSP);
        let source = if tail == "play" { "cast" } else { "live" };
        assert!(
            page.body
                .contains(&format!("{attribute}=\"{base}/{source}?channel=0\"")),
            "{}",
            page.body
        );
        assert!(!page.body.contains("<script>"), "no inline script");
        // Every script and stylesheet is a hashed console file that is served.
        let mut files = 0;
        for marker in ["<script src=\"", "<link rel=\"stylesheet\" href=\""] {
            for (at, _) in page.body.match_indices(marker) {
                let rest = &page.body[at + marker.len()..];
                let path = &rest[..rest.find('"').unwrap()];
                let got = rig.get(path, None).await;
                assert_eq!(got.status, StatusCode::OK, "{path}");
                assert_eq!(
                    got.headers[header::CACHE_CONTROL],
                    "public, max-age=31536000, immutable"
                );
                files += 1;
            }
        }
        assert_eq!(
            files, 4,
            "the console's and the player's css, the player's and our js"
        );
    }
    // The console's other pages keep the strict policy.
    let page = rig.get(&rig.path(""), Some(&rita)).await;
    assert!(!page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("wasm"));
    let got = rig
        .get("/console/player/player.0000000000000000.js", None)
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_live_route_streams_the_terminal_without_its_input_and_ends_when_finished() {
    let rig = rig().await;
    let rita = rig.console_user("rita", &["reviewers"]).await;
    let path = format!("{}/recordings/{RECORDING}/live", rig.path(""));
    let (got, events) = rig.audited(&path, &rita).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(events.iter().all(|e| e == "recording_read") && !events.is_empty());
    let data: Vec<Value> = got
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert_eq!(data[0], json!({"cols": 100, "rows": 30}), "{}", got.body);
    assert!(
        data.iter().any(|d| d[1] == "o" && d[2] == OUTPUT),
        "{data:?}"
    );
    assert!(!got.body.contains("hunter2"), "never the typed input");
    assert!(got.body.contains("event: done"), "{}", got.body);
}

/// The stored audit events of type `kind`, newest first.
async fn events_of(rig: &Rig, kind: &str) -> Vec<Value> {
    let filter = crate::store::audit::Filter {
        kind: Some(kind.to_owned()),
        ..Default::default()
    };
    let mut conn = rig.client.f.api.state.store.conn().await.unwrap();
    crate::store::audit::list(&mut conn, &filter, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect()
}

#[tokio::test]
async fn a_live_stream_ends_when_the_console_session_does() {
    use futures_util::StreamExt as _;
    let rig = rig_with(false).await;
    let rita = rig.console_user("rita", &["reviewers"]).await;
    let path = format!("{}/recordings/{RECORDING}/live", rig.path(""));
    let mut request = Request::builder()
        .uri(&path)
        .header(header::HOST, harness::HOST)
        .header(
            header::COOKIE,
            format!("{}={rita}", crate::console::session::COOKIE),
        )
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let response = rig
        .client
        .f
        .api
        .router
        .clone()
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("alert(1)") {
        let frame = body.next().await.expect("the stored output").unwrap();
        seen.push_str(&String::from_utf8_lossy(&frame));
    }
    assert!(!seen.contains("event: done"), "not finished: {seen}");
    // The console session times out (absolute timeout): the stream says so and ends.
    rig.client.f.clock.advance(Duration::from_secs(13 * 3600));
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Some(frame) = body.next().await {
            rest.push_str(&String::from_utf8_lossy(&frame.unwrap()));
        }
        rest
    })
    .await
    .expect("the stream ends");
    assert!(
        rest.contains("event: done") && rest.contains("the console session ended"),
        "{rest}"
    );
}

fn stored(chunks: &[Encoded]) -> Vec<StoredChunk> {
    chunks
        .iter()
        .map(|c| StoredChunk {
            seq: c.seq,
            data: Some(c.bytes.clone()),
            unreadable: None,
        })
        .collect()
}

#[test]
fn a_follower_takes_chunks_as_they_come_and_stops_at_a_broken_link() {
    let chunks = stored(&recording(true));
    assert!(chunks.len() > 2, "several chunks");
    let mut follower = Follower::new("s_1", RECORDING, None);
    let mut messages = follower.take(&chunks[..1]);
    assert!(!follower.done());
    messages.extend(follower.take(&chunks[1..]));
    assert!(follower.done());
    assert_eq!(
        messages[0],
        LiveMessage::Reset {
            cols: 100,
            rows: 30
        }
    );
    assert!(messages.contains(&LiveMessage::Event {
        time: 0.02,
        code: "o".into(),
        data: OUTPUT.into()
    }));
    assert!(!format!("{messages:?}").contains("hunter2"));
    assert_eq!(messages.last(), Some(&LiveMessage::Done { why: None }));

    // A chunk altered in the store, or one skipped, ends the stream with why.
    let mut altered = chunks.clone();
    let data = altered[1].data.as_mut().unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 1;
    let mut follower = Follower::new("s_1", RECORDING, None);
    let messages = follower.take(&altered);
    assert!(follower.done());
    assert!(
        matches!(messages.last(), Some(LiveMessage::Done { why: Some(why) }) if why.contains("chunk")),
        "{messages:?}"
    );
    let mut follower = Follower::new("s_1", RECORDING, None);
    let skipped: Vec<StoredChunk> = [chunks[0].clone(), chunks[2].clone()].into();
    let messages = follower.take(&skipped);
    assert!(
        matches!(messages.last(), Some(LiveMessage::Done { why: Some(why) }) if why.contains("chunk 1")),
        "{messages:?}"
    );
}
