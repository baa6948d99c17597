//! Failure drills: the control plane and the workers fail the way they do in production
//! (kill -9, a full outage, a hung controller, a drain, PostgreSQL going away) and each drill
//! asserts what must survive it. The bounds are generous: these tests assert events (a
//! connection still carries bytes, a session ends with the right reason), never latencies
//! (docs/ha.md gives the measured failover and dead-link detection times).
//!
//! The test controllers run with `workers.heartbeat_interval = 0.2`, `lost_after = 3` and
//! `sessions.sweep_interval = 0.5` (tests/common/cluster.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{listen, open_echo, outcome, Outcome};
use common::cluster::{echo, sigterm, wait_exit, Controller, Worker};
use common::wait::{poll, wait_for};

/// The test controllers' `workers.lost_after`.
const LOST_AFTER: Duration = Duration::from_secs(3);

fn pg_url() -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::pg::fresh_database())
}

fn session(c: &Controller, id: &str) -> serde_json::Value {
    let (code, text) = c.curl("GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn worker_state(c: &Controller, id: &str) -> String {
    let (code, text) = c.curl("GET", &format!("/v1/workers/{id}"), None);
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["state"].as_str().unwrap().to_owned()
}

/// Sends `what` on a live connection and checks it comes back.
fn still_echoes(s: &mut TcpStream, what: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(what).unwrap();
    let mut back = vec![0u8; what.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, what);
}

/// Every session that ended as `worker_lost`, from the audit log.
fn lost_sessions(c: &Controller) -> Vec<String> {
    let (code, text) = c.curl("GET", "/v1/audit?type=session_terminated", None);
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "worker_lost")
        .map(|e| e["session"].to_string())
        .collect()
}

/// Starts `c`'s controller again from its config, on the ports it had (the workers know its
/// cluster address), after it was killed; the store is the one it had.
fn restart(c: &mut Controller) {
    let api_port = c.api.rsplit(':').next().unwrap().to_owned();
    let cluster_port = c.cluster.rsplit(':').next().unwrap().to_owned();
    let text = std::fs::read_to_string(&c.config).unwrap();
    let ip = &c.place.ip;
    let fixed = text
        .replacen(
            &format!("listen = \"{ip}:0\""),
            &format!("listen = \"{ip}:{api_port}\""),
            1,
        )
        .replacen(
            &format!("listen = \"{ip}:0\""),
            &format!("listen = \"{ip}:{cluster_port}\""),
            1,
        );
    std::fs::write(&c.config, fixed).unwrap();
    let mut child = Command::new(common::dev::bin())
        .args(["controller", "run", "--config"])
        .arg(&c.config)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    std::thread::spawn(move || for _ in stdout.lines() {});
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the restarted controller is not ready ({e}): {line:?}"));
    assert_eq!(ready["cluster"].as_str(), Some(c.cluster.as_str()));
    c.child = child;
}

fn kill_9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A controller killed with -9 in the middle of a transfer: the bytes arrive intact, and the
/// other controller serves new sessions through the same worker.
#[test]
fn controller_kill_9_mid_transfer_loses_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b, _w) = two_controllers_one_worker(dir.path());
    let l = listen(b.cli(), "echo");
    let s = open_echo(l.port);
    let mut writer = s.try_clone().unwrap();
    let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = chunk.clone();
    let sender = std::thread::spawn(move || {
        for _ in 0..32 {
            writer.write_all(&sent).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = s;
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut back = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut killed = false;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
        if !killed && back.len() >= chunk.len() {
            kill_9(&mut a.child); // the worker's linked controller, mid-transfer
            killed = true;
        }
    }
    sender.join().unwrap();
    assert!(killed, "the transfer ended before the kill");
    assert_eq!(back.len(), 32 * chunk.len(), "transfer cut short");
    assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    // The survivor serves a new session through the same worker.
    wait_for(
        "a new session through the surviving controller",
        Duration::from_secs(30),
        || {
            let l2 = listen(b.cli(), "echo");
            outcome(l2.port) == Outcome::Echoed
        },
    );
    assert!(lost_sessions(&b).is_empty());
}

/// Issue 16 item 1: every controller down for longer than `lost_after`, then one starts
/// again. The workers were fine all along: a live brokered connection survives the recovery
/// and no session ends as `worker_lost`.
#[test]
fn a_full_control_plane_outage_longer_than_lost_after_ends_no_healthy_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Controller::start(&dir.path().join("controller"));
    let w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let l = listen(c.cli(), "echo");
    let mut live = open_echo(l.port);
    kill_9(&mut c.child);
    // The drill itself: the outage lasts longer than lost_after (the workers' live grace,
    // 60 s, keeps their connections meanwhile). A length of time is what is tested here, not
    // a condition to wait for: nothing changes while every controller is down.
    std::thread::sleep(LOST_AFTER + Duration::from_secs(2));
    still_echoes(&mut live, b"during the outage");
    let restarted = Instant::now();
    restart(&mut c);
    // The worker links again and the controller has been up for lost_after: the sweeper
    // has had every chance to call it lost.
    poll(
        "the worker to link again",
        Duration::from_secs(30),
        || match worker_state(&c, &w.id).as_str() {
            "active" => Ok(()),
            other => Err(other.to_owned()),
        },
    );
    // The restarted controller gives a worker lost_after, and at least two of its longest
    // redial waits (10 s), to link again.
    wait_for(
        "the restarted controller to be up for its relink grace and two sweeps",
        Duration::from_secs(30),
        || restarted.elapsed() > LOST_AFTER.max(Duration::from_secs(10)) + Duration::from_secs(1),
    );
    still_echoes(&mut live, b"after the recovery");
    let s = session(&c, &l.session_id);
    assert_eq!(s["state"], "active", "{s}");
    assert!(lost_sessions(&c).is_empty(), "{:?}", lost_sessions(&c));
    // New sessions work too.
    let l2 = listen(c.cli(), "echo");
    assert_eq!(outcome(l2.port), Outcome::Echoed);
}

/// Two controllers on the test PostgreSQL, `a` and `b`, and a worker that knows both (it
/// dials `a` first), with the target `echo`.
fn two_controllers_one_worker(dir: &std::path::Path) -> (Controller, Controller, Worker) {
    let url = pg_url();
    let a = Controller::start_on(&dir.join("a"), &url, "");
    let b = Controller::start_on(&dir.join("b"), &url, "");
    let w = Worker::start(
        &dir.join("w1"),
        &[a.cluster.clone(), b.cluster.clone()],
        Some(&a.join_token()),
        "",
    )
    .unwrap();
    b.create_target("echo", &echo());
    (a, b, w)
}

/// Issue 16 item 3: the linked controller hangs (SIGSTOP) while another is healthy. The
/// worker notices the dead link within its 5 s admission grace and fails over: every new
/// connection through it is admitted, all along.
#[test]
fn a_hung_controller_does_not_stop_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _w) = two_controllers_one_worker(dir.path());
    let l = listen(b.cli(), "echo");
    drop(open_echo(l.port));
    // The worker dials the first controller it knows: a.
    signal(a.child.id(), "STOP");
    let stopped = Instant::now();
    // For longer than the old 10 s silence, every new connection is admitted.
    let mut tried = 0;
    while stopped.elapsed() < Duration::from_secs(12) {
        let got = outcome(l.port);
        tried += 1;
        assert_eq!(
            got,
            Outcome::Echoed,
            "connection {tried}, {:?} after the SIGSTOP",
            stopped.elapsed()
        );
    }
    // And a new session, authorised by the healthy controller, is admitted online.
    let l2 = listen(b.cli(), "echo");
    assert_eq!(outcome(l2.port), Outcome::Echoed);
    signal(a.child.id(), "CONT");
}

/// Issue 16 item 3, a new session: its first connection arrives while the worker has not yet
/// noticed that its controller hung, so the admission it asks for is lost with the link. The
/// worker holds the connection and asks again on the next link (the other controller, well
/// within the admission's 5 s): the client is admitted at its first try.
#[test]
fn a_first_connection_while_the_linked_controller_hangs_is_admitted_through_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _w) = two_controllers_one_worker(dir.path());
    // A new session, authorised by the healthy controller; no connection yet.
    let l = listen(b.cli(), "echo");
    // The worker dials the first controller it knows: a. Its first connection comes at once.
    signal(a.child.id(), "STOP");
    let got = outcome(l.port);
    signal(a.child.id(), "CONT");
    assert_eq!(got, Outcome::Echoed);
    assert_eq!(session(&b, &l.session_id)["state"], "active");
}

/// Issue 16 item 4: a worker's SIGTERM drain is visible to the controllers: no new session
/// goes to it, its sessions end as `shutdown` when it exits, and it is never listed `active`
/// again.
#[test]
fn a_draining_worker_gets_no_new_session_and_its_sessions_end_as_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let token = c.join_token();
    let mut w1 = Worker::start(
        &dir.path().join("w1"),
        std::slice::from_ref(&c.cluster),
        Some(&token),
        "drain_timeout_secs = 60",
    )
    .unwrap();
    c.create_target("echo", &echo());
    let l = listen(c.cli(), "echo");
    let live = open_echo(l.port);
    sigterm(&w1.child);
    poll(
        "the worker to be draining",
        Duration::from_secs(10),
        || match worker_state(&c, &w1.id).as_str() {
            "draining" => Ok(()),
            other => Err(other.to_owned()),
        },
    );
    // The only worker drains: a new session is refused (no worker), not sent to it.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let request = serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    // (The controller reads its list of live workers at most every 250 ms.)
    poll(
        "new sessions refused",
        Duration::from_secs(10),
        || match c.curl("POST", "/v1/targets/echo/authorize-session", Some(&request)) {
            (503, _) => Ok(()),
            (code, text) => Err(format!("{code} {text}")),
        },
    );
    // Another worker takes the new sessions.
    let w2 = Worker::start(
        &dir.path().join("w2"),
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        "",
    )
    .unwrap();
    let l2 = poll(
        "a session on the second worker",
        Duration::from_secs(15),
        || {
            let (code, text) = c.curl("POST", "/v1/targets/echo/authorize-session", Some(&request));
            if code != 201 {
                return Err(format!("{code} {text}"));
            }
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            Ok(v["session_id"].as_str().unwrap().to_owned())
        },
    );
    assert_eq!(session(&c, &l2)["worker_id"], w2.id.as_str());
    // The live connection closes: the worker's drain ends and it exits.
    drop(live);
    drop(l);
    let status = wait_exit(&mut w1.child, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    let ended_at = Instant::now();
    let s = poll("the session's end", Duration::from_secs(20), || {
        let s = session(&c, &session_id_of(&c, &w1.id));
        if s["state"] == "terminated" {
            Ok(s)
        } else {
            Err(s)
        }
    });
    assert_eq!(s["termination_reason"], "shutdown", "{s}");
    assert_eq!(worker_state(&c, &w1.id), "stopped");
    wait_for("lost_after to pass", Duration::from_secs(30), || {
        ended_at.elapsed() > LOST_AFTER + Duration::from_secs(1)
    });
    assert_ne!(worker_state(&c, &w1.id), "active");
    assert!(lost_sessions(&c).is_empty());
}

/// The one session of worker `worker_id` (the drill gave it exactly one).
fn session_id_of(c: &Controller, worker_id: &str) -> String {
    let (code, text) = c.curl("GET", "/v1/sessions", None);
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["worker_id"] == worker_id)
        .unwrap_or_else(|| panic!("no session on {worker_id}: {text}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The connections of a session that are not closed normally: (state, close reason).
fn connection_states(c: &Controller, id: &str) -> Vec<(String, String)> {
    session(c, id)["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["state"].as_str().unwrap_or_default().to_owned(),
                c["close_reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Issue 16 item 5 with Vault: a worker killed with -9 mid-connection. Its session ends as
/// `worker_lost`, its Vault token is revoked, and its connection row is closed as lost (the
/// last byte counts known) instead of staying open forever.
#[test]
fn a_killed_worker_leaves_no_open_connection_and_no_live_token() {
    let bao = common::vault::Bao::start();
    let dir = tempfile::tempdir().unwrap();
    let (c, mut w) = bao.cluster_with_db_secrets(dir.path());
    let l = listen(c.cli(), "echo");
    let _live = open_echo(l.port);
    let accessors = bao.tokens_of_session(&l.session_id);
    assert_eq!(accessors.len(), 1, "the session has no Vault token");
    kill_9(&mut w.child);
    let s = poll(
        "the session's end and its token's revocation",
        Duration::from_secs(30),
        || {
            let s = session(&c, &l.session_id);
            if s["state"] == "terminated" && !bao.accessor_alive(&accessors[0]) {
                Ok(s)
            } else {
                Err(s)
            }
        },
    );
    assert_eq!(s["termination_reason"], "worker_lost", "{s}");
    assert_eq!(
        connection_states(&c, &l.session_id),
        vec![("lost".to_owned(), "worker_lost".to_owned())],
        "{s}"
    );
    assert_eq!(worker_state(&c, &w.id), "lost");
}

/// Issue 16 item 5: a worker killed with -9 and restarted links again without its old
/// connections: their rows close as lost (no ghost connection stays open), whether the
/// hello of the restarted worker or the sweeper gets there first.
#[test]
fn a_worker_restarted_after_kill_9_leaves_no_ghost_connection() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let wdir = dir.path().join("w1");
    let mut w = Worker::start(
        &wdir,
        std::slice::from_ref(&c.cluster),
        Some(&c.join_token()),
        "",
    )
    .unwrap();
    c.create_target("echo", &echo());
    let l = listen(c.cli(), "echo");
    let _live = open_echo(l.port);
    kill_9(&mut w.child);
    let proxy = w.proxy.clone();
    let port = proxy.rsplit(':').next().unwrap().parse().unwrap();
    let _w = Worker::start_in(
        &common::netns::Place::host(),
        port,
        &wdir,
        std::slice::from_ref(&c.cluster),
        None,
        "",
    )
    .unwrap();
    poll(
        "the ghost connection closed",
        Duration::from_secs(20),
        || match connection_states(&c, &l.session_id).as_slice() {
            [(state, reason)] if state == "lost" && reason == "worker_lost" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// Issue 16 item 9 and the PostgreSQL restart: with the database away longer than the
/// admission grace, the worker says why it refuses (the controller cannot reach its
/// database), the live connection survives, and once the database is back new connections
/// are admitted again and no session ended as `worker_lost` (the outage was longer than
/// `lost_after`, which counts only while the store is reachable).
#[test]
fn a_postgresql_restart_is_named_in_refusals_and_ends_nothing() {
    let pg = common::pg::PrivateCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_on(&dir.path().join("controller"), &pg.url, "");
    let w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let l = listen(c.cli(), "echo");
    let mut live = open_echo(l.port);
    pg.down();
    poll(
        "a refusal naming the database",
        Duration::from_secs(30),
        || match outcome(l.port) {
            Outcome::Refused(_) if w.log().contains("cannot reach its database") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(
        !w.log().contains("no controller has been heard recently"),
        "{}",
        w.log()
    );
    still_echoes(&mut live, b"during the database outage");
    pg.up();
    poll(
        "new connections admitted again",
        Duration::from_secs(30),
        || match outcome(l.port) {
            Outcome::Echoed => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let back = Instant::now();
    wait_for(
        "lost_after to pass with the database back",
        Duration::from_secs(30),
        || back.elapsed() > LOST_AFTER + Duration::from_secs(1),
    );
    still_echoes(&mut live, b"after the database outage");
    assert_eq!(session(&c, &l.session_id)["state"], "active");
    assert!(lost_sessions(&c).is_empty());
}
