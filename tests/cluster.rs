//! A controller and workers as separate processes: enrolment, partitions, a stopped
//! controller, draining, key rotation and worker deletion.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use common::client::{closes_within, open_echo, outcome, wait_for_refusal, Listener, Outcome};
use common::cluster::{echo, sigterm, wait_exit, Controller, PausableProxy, Worker};
use common::wait::wait_for;
use portcullis_proto::clock::{Clock as _, SystemClock};
use portcullis_proto::proxy::RefusalCode;

fn session(c: &Controller, id: &str) -> serde_json::Value {
    let (code, text) = c.curl("GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn listen(c: &Controller, target: &str) -> Listener {
    common::client::listen(c.cli(), target)
}

#[test]
fn a_join_token_works_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let token = c.join_token();
    let first = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&token),
        "",
    );
    assert!(first.is_ok(), "{:?}", first.err());
    let second = Worker::start(
        &dir.path().join("w2"),
        std::slice::from_ref(&c.cluster),
        Some(&token),
        "",
    );
    let err = second
        .err()
        .expect("second enrolment with the same token must fail");
    assert!(err.contains("already used"), "{err}");
    // A worker restarts without a token: its identity is on disk.
    drop(first);
    let again = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        None,
        "",
    );
    assert!(again.is_ok(), "{:?}", again.err());
}

#[test]
fn a_stopped_controller_makes_the_worker_refuse_a_new_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Controller::start(&dir.path().join("controller"));
    let _w = c.join_worker_with_echo(
        dir.path(),
        std::slice::from_ref(&c.cluster),
        "admit_grace_secs = 1",
    );
    let live = listen(&c, "echo");
    let mut established = open_echo(live.port);
    let fresh = listen(&c, "echo"); // authorised, never connected
    let _ = c.child.kill();
    let _ = c.child.wait();
    // At once, within the admit grace too: a session's first connection needs the
    // controller's online answer.
    assert_eq!(
        outcome(fresh.port),
        Outcome::Refused(RefusalCode::ControllerUnreachable),
        "a new session without a controller"
    );
    // The established connection keeps working.
    established.write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    established.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

#[test]
fn a_cancel_during_a_partition_takes_effect_when_the_link_returns() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let proxy = PausableProxy::start(&c.cluster);
    let _w = c.join_worker_with_echo(
        dir.path(),
        std::slice::from_ref(&proxy.addr),
        "admit_grace_secs = 1",
    );
    // A session whose first connection was admitted online, to probe admission with later.
    let probe = listen(&c, "echo");
    drop(open_echo(probe.port));
    // The live connection: `connect --stdio`, which (unlike a listener, that watches its
    // session and exits when it ends) only ends when the worker closes the connection.
    let mut live = StdioConnection::open(&c, "echo");
    assert_eq!(live.round_trip(b"ping"), *b"ping");
    let live_session = only_other_session(&c, &probe.session_id);
    let live_id = session(&c, &live_session)["connections"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    proxy.pause();
    let (code, text) = c.curl(
        "POST",
        &format!("/v1/sessions/{live_session}/cancel"),
        Some("{}"),
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(session(&c, &live_session)["state"], "terminated");
    // Within the admit grace the partitioned worker still admits later connections; after it,
    // none.
    wait_for_refusal(
        "the worker to refuse new connections after the admit grace",
        probe.port,
        RefusalCode::ControllerUnreachable,
        Duration::from_secs(10),
    );
    // The worker has not heard of the cancel: the live connection still carries data.
    assert_eq!(
        live.round_trip(b"open"),
        *b"open",
        "the live connection during the partition"
    );
    proxy.resume();
    let took = live.closes_within(Duration::from_secs(10));
    eprintln!("live connection closed {took:?} after the link could return");
    // It closed because of the cancel, which the worker learnt when the link returned: the
    // worker reports the close with the session's reason (not `controller_unreachable`, its
    // live grace being a minute, nor `closed`, by the client).
    let reason = common::wait::poll(
        "the worker's report of the live connection's close",
        Duration::from_secs(5),
        || {
            let s = session(&c, &live_session);
            let conn = s["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|conn| conn["id"] == live_id.as_str())
                .cloned()
                .unwrap();
            match conn["close_reason"].as_str() {
                Some(reason) => Ok(reason.to_owned()),
                None => Err(conn.to_string()),
            }
        },
    );
    assert_eq!(reason, "canceled", "the live connection's close reason");
}

/// The one session besides `known`.
fn only_other_session(c: &Controller, known: &str) -> String {
    let out = c
        .cli()
        .args(["sessions", "list", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let others: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| *id != known)
        .map(str::to_owned)
        .collect();
    assert_eq!(others.len(), 1, "{list}");
    others[0].clone()
}

/// A `portcullis connect TARGET --stdio` process: one brokered connection on its stdin and
/// stdout.
struct StdioConnection {
    child: std::process::Child,
}

impl StdioConnection {
    fn open(c: &Controller, target: &str) -> StdioConnection {
        let child = c
            .cli()
            .args(["connect", target, "--stdio"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        StdioConnection { child }
    }

    fn round_trip(&mut self, bytes: &[u8; 4]) -> [u8; 4] {
        let mut buf = [0u8; 4];
        self.child.stdin.as_mut().unwrap().write_all(bytes).unwrap();
        self.child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("the stdio connection ended: {e}"));
        buf
    }

    /// How long until the connection's output ends (the worker closed it).
    fn closes_within(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        let mut out = self.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = out.read_to_end(&mut rest);
            let _ = tx.send(());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("the stdio connection still open after {limit:?}"));
        start.elapsed()
    }
}

impl Drop for StdioConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_drains_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let mut w = c.join_worker_with_echo(
        dir.path(),
        std::slice::from_ref(&c.cluster),
        "drain_timeout_secs = 2",
    );
    let l = listen(&c, "echo");
    let mut live = open_echo(l.port);
    let started = Instant::now();
    sigterm(&w.child);
    wait_for(
        "the drain to start (the proxy port closed)",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(&w.proxy).is_err(),
    );
    // Live connections are kept during the drain...
    live.write_all(b"more").unwrap();
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more");
    // ...then ended at the drain timeout, and the worker exits.
    let took = closes_within(&mut live, Duration::from_secs(10));
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "closed too early: {took:?}"
    );
    let status = wait_exit(&mut w.child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    wait_for(
        "the connection's close with reason shutdown",
        Duration::from_secs(5),
        || {
            session(&c, &l.session_id)["connections"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["close_reason"] == "shutdown"))
        },
    );
}

#[test]
fn rotated_grant_keys_stay_valid_until_retired() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let _w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let l = listen(&c, "echo");
    drop(open_echo(l.port));
    // `portcullis controller keys ARGS --config CONFIG`, which must succeed; its stdout.
    let keys = |c: &Controller, args: &[&str]| {
        let out = c
            .cli()
            .args(["controller", "keys"])
            .args(args)
            .arg("--config")
            .arg(&c.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let list = |c: &Controller| {
        serde_json::from_slice::<serde_json::Value>(&keys(c, &["list", "--json"])).unwrap()
    };
    let old = list(&c)
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["purpose"] == "grant" && k["state"] == "active")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    keys(&c, &["rotate", "grant"]);
    // An observation window, not a wait for something visible: the controller's key cache
    // (2 s) sees the rotation and a heartbeat (1 s) hands the worker the new key list.
    std::thread::sleep(Duration::from_secs(3));
    // The session's grant was signed by the old key: still accepted.
    drop(open_echo(l.port));
    keys(&c, &["retire", &old]);
    wait_for_refusal(
        "the worker to stop accepting the retired key",
        l.port,
        RefusalCode::InvalidGrant,
        Duration::from_secs(10),
    );
    // A new session is signed by the new key and works.
    let fresh = listen(&c, "echo");
    drop(open_echo(fresh.port));
}

#[test]
fn a_grant_signed_by_a_key_rotated_in_since_the_last_heartbeat_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // Heartbeats far apart: the worker hears of the new key only by asking when a grant
    // names it (the hello's sync gave it the old key only).
    let c = Controller::start_with(
        &dir.path().join("controller"),
        "heartbeat_interval = 60\nlost_after = 300\n\
         [sessions.per_user]\nmax_live = 10000\nauthorize_per_minute = 10000\n",
    );
    let _w = c.join_worker_with_echo(
        dir.path(),
        std::slice::from_ref(&c.cluster),
        "admit_grace = \"300s\"",
    );
    drop(open_echo(listen(&c, "echo").port));
    let rotated = c
        .cli()
        .args(["controller", "keys", "rotate", "grant", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    // Every session opened from now on works: those signed by the old key while the
    // controller's key cache (2 s) still holds it, and those signed by the new one after.
    let started = Instant::now();
    let mut sessions = 0;
    while started.elapsed() < Duration::from_secs(3) {
        drop(open_echo(listen(&c, "echo").port));
        sessions += 1;
    }
    // The old key retired, only the new one signs and verifies: a new session still works,
    // long before the next heartbeat could have brought the key.
    let keys = c
        .cli()
        .args(["controller", "keys", "list", "--json", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let old = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["purpose"] == "grant" && k["state"] == "previous")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retired = c
        .cli()
        .args(["controller", "keys", "retire", &old, "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    assert!(retired.status.success(), "{retired:?}");
    drop(open_echo(listen(&c, "echo").port));
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the test ran into the heartbeat"
    );
    assert!(sessions > 1, "only {sessions} sessions in the window");
}

#[test]
fn deleting_a_worker_ends_its_sessions_and_refuses_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let l = listen(&c, "echo");
    let mut live = open_echo(l.port);
    let (code, text) = c.curl("DELETE", &format!("/v1/workers/{}", w.id), None);
    assert_eq!(code, 204, "{text}");
    closes_within(&mut live, Duration::from_secs(5));
    let s = session(&c, &l.session_id);
    assert_eq!(s["termination_reason"], "worker_deleted", "{s}");
    // The deleted worker dials again with its certificate, and the controller refuses the
    // link: its answer to the hello is in the worker's log.
    common::wait::poll(
        "the controller to refuse the deleted worker's certificate",
        Duration::from_secs(10),
        || {
            let log = w.log();
            if log.contains("this worker has been deleted") {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    let (_, text) = c.curl("GET", &format!("/v1/workers/{}", w.id), None);
    let worker: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(worker["state"], "deleted");
    // With no live worker, a new session cannot be authorised.
    let out = c
        .cli()
        .args(["connect", "echo", "--listen-port", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}"); // unreachable: no worker (HTTP 503)
    assert!(
        stderr.contains("no worker is available to carry the session"),
        "{stderr}"
    );
}

#[test]
fn the_worker_renews_its_certificate_at_half_life() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that half-life stands apart from three quarters of it in whole seconds,
    // short enough for a test.
    const LIFETIME: u64 = 12;
    let c = Controller::start_with(
        &dir.path().join("controller"),
        &format!("cert_lifetime = {LIFETIME}"),
    );
    let proxy = PausableProxy::start(&c.cluster);
    let w = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&proxy.addr),
        Some(&c.join_token()),
        "",
    )
    .unwrap();
    let expiry = |c: &Controller| {
        let (_, text) = c.curl("GET", &format!("/v1/workers/{}", w.id), None);
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["cert_expires_at"]
            .as_u64()
            .unwrap()
    };
    let first = expiry(&c);
    let renewed = common::wait::poll("a renewed certificate", Duration::from_secs(15), || {
        let now = expiry(&c);
        if now > first {
            Ok(now)
        } else {
            Err(now)
        }
    });
    // Each certificate expires LIFETIME after the controller issued it, so the expiries lie
    // as far apart as the issues: the renewal came at half of the first one's lifetime. The
    // worker counts whole seconds from its enrolment (its second may be the controller's
    // next) and asks at a heartbeat, 200 ms apart: up to 2 s late, never early.
    let renewed_after = renewed - first;
    assert!(
        (LIFETIME / 2..=LIFETIME / 2 + 2).contains(&renewed_after),
        "renewed {renewed_after} s into a {LIFETIME} s certificate, not at half-life"
    );
    // Past the first certificate's expiry, a fresh link (the old certificate would be refused)
    // still works: cut the link, let it return, and broker a new session.
    wait_for(
        "the first certificate's expiry",
        Duration::from_secs(10),
        || SystemClock.unix_secs() > first,
    );
    proxy.pause();
    // The cut lasts 300 ms (a pace, not a wait): the worker's dials meanwhile are refused.
    std::thread::sleep(Duration::from_millis(300));
    proxy.resume();
    c.create_target("echo", &echo());
    wait_for(
        "a new session through the relinked worker",
        Duration::from_secs(15),
        || outcome(listen(&c, "echo").port) == Outcome::Echoed,
    );
    let (code, text) = c.curl("GET", "/v1/audit?type=worker_certificate_renewed", None);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(&w.id), "{text}");
}

/// A controller that stops on SIGTERM ends its links with TLS's close_notify: the worker
/// reads a clean end and notes it at info level (the worker here logs warnings only), instead
/// of warning about a truncated stream; its redials to the stopped controller do warn.
#[test]
fn a_graceful_controller_shutdown_closes_links_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Controller::start(&dir.path().join("controller"));
    let w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let before = w.log().len();
    sigterm(&c.child);
    assert!(wait_exit(&mut c.child, Duration::from_secs(20)).success());
    common::wait::poll(
        "the worker to redial the stopped controller",
        Duration::from_secs(10),
        || {
            let log = w.log()[before..].to_owned();
            if log.contains("cannot connect") {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    let log = w.log()[before..].to_owned();
    assert!(!log.contains("close_notify"), "{log}");
    assert!(!log.contains("the link's connection failed"), "{log}");
}

#[test]
fn new_sessions_are_spread_over_the_live_workers() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let workers: Vec<Worker> = ["w1", "w2"]
        .iter()
        .map(|name| {
            Worker::start(
                &dir.path().join(name),
                std::slice::from_ref(&c.cluster),
                Some(&c.join_token()),
                "",
            )
            .unwrap()
        })
        .collect();
    c.create_target("echo", &echo());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let request =
        serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&spki)}).to_string();
    let mut per_worker = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..8 {
        let (code, text) = c.curl("POST", "/v1/targets/echo/authorize-session", Some(&request));
        assert_eq!(code, 201, "{text}");
        let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let worker = session(&c, &id)["worker_id"].as_str().unwrap().to_owned();
        *per_worker.entry(worker).or_default() += 1;
    }
    // Each new session goes to the worker with the fewest live sessions: four each.
    let expected: std::collections::BTreeMap<String, usize> =
        workers.iter().map(|w| (w.id.clone(), 4)).collect();
    assert_eq!(per_worker, expected);
}

/// Restarts `c` on its own store with `lines` added to its `[sessions]` section.
fn restart_with_sessions(c: &mut Controller, lines: &str) {
    let _ = c.child.kill();
    let _ = c.child.wait();
    let text = std::fs::read_to_string(&c.config).unwrap();
    let text = text.replacen("[sessions]\n", &format!("[sessions]\n{lines}\n"), 1);
    std::fs::write(&c.config, text).unwrap();
    let config = c.config.to_str().unwrap().to_owned();
    let (child, ready) =
        common::cluster::spawn_ready(&c.place, &["controller", "run", "--config", &config], &[]);
    c.child = child;
    c.api = format!("https://{}", ready["api"].as_str().unwrap());
    c.cluster = ready["cluster"].as_str().unwrap().to_owned();
}

#[test]
fn a_session_without_connection_or_client_for_the_idle_timeout_ends_as_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Controller::start(&dir.path().join("controller"));
    restart_with_sessions(&mut c, "idle_timeout = 3");
    let _w = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        "",
    )
    .unwrap();
    c.create_target("echo", &echo());
    // A session whose CLI went away after its connection closed: nobody is left to cancel it.
    let gone = listen(&c, "echo");
    drop(open_echo(gone.port));
    let gone_id = gone.session_id.clone();
    drop(gone);
    // A session with a connection open the whole time, and one whose client keeps asking
    // about it without connecting.
    let busy = listen(&c, "echo");
    let mut open = open_echo(busy.port);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let request =
        serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&spki)}).to_string();
    let (code, text) = c.curl("POST", "/v1/targets/echo/authorize-session", Some(&request));
    assert_eq!(code, 201, "{text}");
    let asking = serde_json::from_str::<serde_json::Value>(&text).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another admin watches: reading someone else's session is no sign of its client.
    let auditor = c.issue_token("auditor", &["admins"]);
    let watched = |id: &str| {
        let (code, text) = c.curl_as(&auditor, "GET", &format!("/v1/sessions/{id}"), None);
        assert_eq!(code, 200, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    wait_for(
        "the abandoned session to end as idle",
        Duration::from_secs(30),
        || {
            // The asking client asks as it waits (its user's own GET).
            let asked = session(&c, &asking);
            assert_eq!(asked["state"], "pending", "{asked}");
            watched(&gone_id)["state"] == "terminated"
        },
    );
    assert_eq!(watched(&gone_id)["termination_reason"], "idle");
    assert_eq!(watched(&busy.session_id)["state"], "active");
    assert_eq!(session(&c, &asking)["state"], "pending");
    open.write_all(b"live").unwrap();
    let mut buf = [0u8; 4];
    open.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"live");
    let (code, text) = c.curl(
        "GET",
        &format!("/v1/audit?session={gone_id}&type=session_terminated"),
        None,
    );
    assert_eq!(code, 200, "{text}");
    assert!(text.contains(r#""reason":"idle""#), "{text}");
}

/// The `connection_refused` events with `reason` (and `session`, null for none), and the sum of
/// their counts.
fn refused_events(
    c: &Controller,
    reason: &str,
    session: Option<&str>,
) -> (Vec<serde_json::Value>, u64) {
    let (code, text) = c.curl("GET", "/v1/audit?type=connection_refused&limit=1000", None);
    assert_eq!(code, 200, "{text}");
    let listing: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events: Vec<serde_json::Value> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason && e["session"].as_str() == session)
        .cloned()
        .collect();
    let count = events
        .iter()
        .map(|e| e["details"]["count"].as_u64().unwrap())
        .sum();
    (events, count)
}

#[test]
fn refusals_the_worker_decides_are_audited_summed_per_session_and_reason() {
    use common::raw::{present, Auth, ClientKey};
    use portcullis_proto::proxy::WorkerReply;

    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let _w = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        "refusal_window = 1",
    )
    .unwrap();
    c.create_target("echo", &echo());
    let client = ClientKey::generate();
    let request =
        serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&client.spki())})
            .to_string();
    let (code, text) = c.curl("POST", "/v1/targets/echo/authorize-session", Some(&request));
    assert_eq!(code, 201, "{text}");
    let authorized: serde_json::Value = serde_json::from_str(&text).unwrap();
    let field = |name: &str| authorized[name].as_str().unwrap().to_owned();
    let (session_id, grant) = (field("session_id"), field("grant"));
    let (worker_addr, fingerprint) = (field("worker_addr"), field("worker_key_fingerprint"));
    let reply = |grant: &str| {
        present(&worker_addr, &fingerprint, Auth::Key(&client), grant)
            .map(|(reply, _)| reply)
            .unwrap_or_else(|e| panic!("no reply from the worker: {e}"))
    };
    assert!(matches!(reply(&grant), WorkerReply::Accepted { .. }));
    let (code, text) = c.curl(
        "POST",
        &format!("/v1/sessions/{session_id}/cancel"),
        Some("{}"),
    );
    assert_eq!(code, 200, "{text}");
    // The worker hears of the cancel and refuses by itself from then on.
    let mut ended = 0;
    wait_for(
        "the worker to refuse the cancelled session",
        Duration::from_secs(10),
        || match reply(&grant) {
            WorkerReply::Refused {
                code: RefusalCode::SessionEnded,
                ..
            } => {
                ended += 1;
                true
            }
            _ => false,
        },
    );
    for _ in 0..4 {
        assert!(matches!(
            reply(&grant),
            WorkerReply::Refused {
                code: RefusalCode::SessionEnded,
                ..
            }
        ));
        ended += 1;
    }
    for _ in 0..3 {
        assert!(matches!(
            reply("not.a.grant"),
            WorkerReply::Refused {
                code: RefusalCode::InvalidGrant,
                ..
            }
        ));
    }
    wait_for(
        "the worker's refusals in the audit log",
        Duration::from_secs(20),
        || {
            refused_events(&c, "session_ended", Some(&session_id)).1 == ended
                && refused_events(&c, "invalid_grant", None).1 == 3
        },
    );
    // A burst is a summary, not one event per refusal.
    let (events, _) = refused_events(&c, "session_ended", Some(&session_id));
    assert!(events.len() < ended as usize, "{events:?}");
    let first = &events[0];
    assert_eq!(first["actor"]["source"], format!("worker:{}", _w.id));
    assert_eq!(first["details"]["client_addr"], "127.0.0.1");
    assert!(
        first["details"]["message"]
            .as_str()
            .unwrap()
            .contains("the session has ended (canceled)"),
        "{first}"
    );
    let (bad, _) = refused_events(&c, "invalid_grant", None);
    assert!(
        bad.iter().all(|e| e["details"].get("message").is_none()),
        "{bad:?}"
    );
    // No event carries the grant.
    let (_, text) = c.curl("GET", "/v1/audit?limit=1000", None);
    assert!(!text.contains(&grant), "a grant reached the audit log");
}
