//! The console's recordings in a real browser: an SSH session through the worker's gateway
//! into a real sshd, recorded (tests/common/recording.rs), is played in Debian's chromium by
//! a local reviewer (`recordings:read`, `sessions:read-all`) logged in with password and
//! TOTP: the session page lists the recording's pty channel, the player page (its own CSP:
//! `'wasm-unsafe-eval'`, `connect-src 'self'`) shows the text the session printed, with the
//! speed and seek controls; a live session is followed read-only and its output appears while
//! it runs. Each page: no console errors, no serious or critical axe violation, a screenshot.
//!
//! Chromium trusts the controller's own certificate, issued by its internal (P-256) CA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use portcullis_proto::recording::{ChannelKind, RecordingState};
use serde_json::{json, Value};

use common::browser::{check_page_with as check_page, Browser};
use common::cluster::Controller;
use common::dev::bin;
use common::recording::{Recorded, Setup, HOST};
use common::totp::{oathtool, unix_now};
use common::wait::poll;

/// The console's policy for its pages, and the player pages' (controller/src/console).
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const PLAYER_CSP: &str = "default-src 'none'; style-src 'self'; \
                          script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; \
                          img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                          base-uri 'none'";

const PASSWORD: &str = "correct horse battery staple";
const REVIEWER: &str = "rev";

/// Makes local user `rev` (group `reviewers`) with the controller's offline command and
/// enrols its TOTP through the API; the secret and the step the enrolment used.
fn reviewer(c: &Controller, dir: &std::path::Path) -> (String, u64) {
    let password = dir.join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(bin())
        .args([
            "controller",
            "users",
            "add",
            REVIEWER,
            "--groups",
            "reviewers",
        ])
        .arg("--config")
        .arg(&c.config)
        .arg("--password-file")
        .arg(&password)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = |body: Value| {
        let (status, text) = c.curl_as("", "POST", "/v1/auth/local/login", Some(&body.to_string()));
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    let (status, asked) = login(json!({"username": REVIEWER, "password": PASSWORD}));
    assert_eq!(status, 200, "{asked}");
    let offer = &asked["totp_enrolment"];
    let secret = offer["secret_base32"].as_str().unwrap().to_owned();
    let now = unix_now();
    let (status, done) = login(json!({
        "username": REVIEWER,
        "password": PASSWORD,
        "totp_enrolment": {"ticket": offer["ticket"], "code": oathtool(&secret, now)},
    }));
    assert_eq!(status, 201, "{done}");
    (secret, now / 30)
}

/// Waits until the player's terminal shows `text`; what it shows.
fn wait_for_terminal(browser: &mut Browser, text: &str) -> String {
    poll(
        &format!("the player to show {text:?}"),
        Duration::from_secs(30),
        || {
            let shown = browser.eval(
                "(() => { const t = document.querySelector('#player .ap-term'); \
                 return t ? t.innerText : ''; })()",
            );
            let shown = shown.as_str().unwrap_or_default().to_owned();
            if shown.contains(text) {
                Ok(shown)
            } else {
                Err(shown)
            }
        },
    )
}

#[test]
fn a_reviewer_plays_a_gateway_recording_and_follows_a_live_one_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorded::start_with(&Setup {
        api_extra: "[auth.local]\n[auth.local.argon2]\nm_cost_kib = 7168\nt_cost = 5\n",
        ..Setup::default()
    });
    let controller = &rec.controllers[0];
    let (secret, enrolled_step) = reviewer(controller, dir.path());

    // A recorded pty session: its output holds the marker, its command line does not.
    let out = rec
        .ssh()
        .args(["-tt", HOST, "echo console-marker-$((6*7))"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("console-marker-42"),
        "{out:?}"
    );
    let session = rec.cached_session_id();
    let recordings = rec.wait_recordings(&session, 1, RecordingState::Complete);
    let recording = recordings[0].recording_id.clone();
    assert!(
        recordings[0]
            .channels
            .iter()
            .any(|c| c.kind == ChannelKind::Pty),
        "{recordings:?}"
    );

    let mut browser = Browser::start(dir.path(), &[(&controller.api, &controller.ca)]);
    let base = controller.api.clone();
    browser.goto(&format!("{base}/console/login"));
    let step = (enrolled_step + 1).max(unix_now() / 30);
    browser.fill("#username", REVIEWER);
    browser.fill("#password", PASSWORD);
    browser.fill("#totp_code", &oathtool(&secret, step * 30));
    browser.click("form.login button[type=submit]");
    browser.wait_for_url("/console/sessions");
    assert_eq!(browser.last_response().status, 200);

    // The sessions table links the session page, which lists the recording's pty channel.
    let link = format!("a[href='/console/sessions/{session}']");
    assert_eq!(browser.count(&link), 1, "a link to the session page");
    browser.click(&link);
    browser.wait_for_url(&format!("/console/sessions/{session}"));
    let page = browser.last_response();
    assert_eq!(page.status, 200, "{page:?}");
    let text = browser.text("main");
    assert!(text.contains(&recording), "{text}");
    assert!(text.contains("verified"), "{text}");
    check_page(&mut browser, &page, CSP, "console-session");

    // Play: the player shows what the session printed; speed and seek controls are there.
    browser.click("a:text('Play')");
    browser.wait_for_url("/play");
    let player = browser.last_response();
    assert_eq!(player.status, 200, "{player:?}");
    let shown = wait_for_terminal(&mut browser, "console-marker-42");
    assert!(!shown.contains("$((6*7))"), "{shown}");
    assert_eq!(browser.count("#speed option"), 5);
    assert_eq!(browser.count("#player .ap-progressbar"), 1, "the seek bar");
    // Twice as fast: the player starts again where it was and shows the text again.
    browser.eval(
        "(() => { const s = document.querySelector('#speed'); s.value = '2'; \
         s.dispatchEvent(new Event('change')); return s.value; })()",
    );
    wait_for_terminal(&mut browser, "console-marker-42");
    check_page(&mut browser, &player, PLAYER_CSP, "console-recording");
    let reads = rec.audit(&format!("session={session}&type=recording_read"));
    assert!(
        reads.iter().any(|e| e["details"]["what"] == "cast"
            && e["actor"]["user"] == REVIEWER
            && e["details"]["recording_id"] == recording.as_str()),
        "the cast read is audited: {reads:#?}"
    );

    // Follow live: a second connection still running; its output appears while it runs.
    let mut live = rec
        .ssh()
        .args([
            "-tt",
            HOST,
            "echo live-start; sleep 1; echo live-marker-$((7*6)); exec sleep 600",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let live_recording = poll(
        "a second, live recording with a pty channel",
        Duration::from_secs(30),
        || {
            let list = rec.try_recordings_on(0, &session)?;
            list.recordings
                .iter()
                .find(|r| {
                    r.recording_id != recording
                        && r.state == RecordingState::Incomplete
                        && r.channels.iter().any(|c| c.kind == ChannelKind::Pty)
                })
                .map(|r| r.recording_id.clone())
                .ok_or_else(|| format!("{list:?}"))
        },
    );
    browser.goto(&format!("{base}/console/sessions/{session}"));
    let follow = format!("a[href*='/recordings/{live_recording}/watch']");
    assert_eq!(browser.count(&follow), 1, "a Follow live link");
    browser.click(&follow);
    browser.wait_for_url("/watch");
    let watching = browser.last_response();
    assert_eq!(watching.status, 200, "{watching:?}");
    wait_for_terminal(&mut browser, "live-marker-42");
    assert!(
        live.try_wait().unwrap().is_none(),
        "the session still runs while its output shows"
    );
    check_page(
        &mut browser,
        &watching,
        PLAYER_CSP,
        "console-recording-live",
    );
    live.kill().unwrap();
    live.wait().unwrap();
}
