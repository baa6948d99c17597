//! Several controllers on one PostgreSQL database, with a worker that knows them all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::client::Listener;
use common::cluster::{echo, Controller, Worker};
use common::wait::{poll, wait_for};

fn pg_url() -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::pg::fresh_database())
}

fn listen(c: &Controller, target: &str) -> Listener {
    common::client::listen(c.cli(), target)
}

fn two_controllers(dir: &std::path::Path) -> (Controller, Controller) {
    let url = pg_url();
    let a = Controller::start_on(&dir.join("a"), &url, "");
    let b = Controller::start_on(&dir.join("b"), &url, "");
    (a, b)
}

#[test]
fn authorise_on_one_controller_cancel_on_the_other_closes_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_controllers(dir.path());
    let _w = a.join_worker_with_echo(dir.path(), &[a.cluster.clone(), b.cluster.clone()], "");
    let l = listen(&a, "echo");
    let mut s = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    // The worker is linked to the first controller; the cancel goes to the second.
    let started = Instant::now();
    let (code, text) = b.curl(
        "POST",
        &format!("/v1/sessions/{}/cancel", l.session_id),
        Some("{}"),
    );
    assert_eq!(code, 200, "{text}");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // Both controllers see the same terminated session.
    let (_, text) = a.curl("GET", &format!("/v1/sessions/{}", l.session_id), None);
    assert!(text.contains("\"canceled\""), "{text}");
}

#[test]
fn killing_the_linked_controller_mid_transfer_loses_nothing_and_the_other_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b) = two_controllers(dir.path());
    let _w = a.join_worker_with_echo(dir.path(), &[a.cluster.clone(), b.cluster.clone()], "");
    let l = listen(&a, "echo");
    let mut s = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = chunk.clone();
    let chunks_sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = std::thread::spawn({
        let chunks_sent = chunks_sent.clone();
        move || {
            for _ in 0..32 {
                writer.write_all(&sent).unwrap();
                chunks_sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The transfer's pace (a MiB every 50 ms, 1.6 s in all), so that the kill
                // below lands in its middle: not a wait.
                std::thread::sleep(Duration::from_millis(50));
            }
            writer.shutdown(Shutdown::Write).unwrap();
        }
    });
    wait_for(
        "the transfer to be under way",
        Duration::from_secs(10),
        || chunks_sent.load(std::sync::atomic::Ordering::SeqCst) >= 2,
    );
    let _ = a.child.kill(); // kill -9
    let _ = a.child.wait();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    assert_eq!(back.len(), 32 * chunk.len(), "transfer cut short");
    assert!(
        back.chunks(chunk.len()).all(|c| c == chunk.as_slice()),
        "transfer corrupted"
    );
    // The other controller serves new sessions through the same worker.
    wait_for(
        "a new session through the surviving controller",
        Duration::from_secs(20),
        || {
            let l2 = listen(&b, "echo");
            let Ok(mut s2) = TcpStream::connect(("127.0.0.1", l2.port)) else {
                return false;
            };
            s2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s2.write_all(b"ping");
            let _ = s2.shutdown(Shutdown::Write);
            let mut got = Vec::new();
            let _ = s2.read_to_end(&mut got);
            got == b"ping"
        },
    );
    // The transfer's byte counts reached the store through the surviving controller.
    poll(
        "the transfer's byte counts",
        Duration::from_secs(10),
        || {
            let (_, text) = b.curl("GET", &format!("/v1/sessions/{}", l.session_id), None);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["connections"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["bytes_up"] == 32 * 1024 * 1024))
            {
                Ok(())
            } else {
                Err(v)
            }
        },
    );
}

#[test]
fn outbound_only_a_controller_dials_a_worker_that_names_no_controller() {
    let dir = tempfile::tempdir().unwrap();
    // The controller's config names the worker's link address, so the worker cannot take
    // port 0: a free port, and another (with a new controller) when it was taken meanwhile.
    let mut attempt = 0;
    let (c, w) = common::ports::start_on_free_port("a worker dialled by its controller", |port| {
        attempt += 1;
        let worker_link = format!("127.0.0.1:{port}");
        let cdir = dir.path().join(format!("controller-{attempt}"));
        let c = Controller::start_full(
            &cdir,
            &format!("sqlite://{}", cdir.join("portcullis.db").display()),
            &format!("dial_workers = [\"{worker_link}\"]"),
            "",
        );
        let token = c.join_token();
        let config = format!("cluster_listen = \"{worker_link}\"");
        let wdir = dir.path().join(format!("w{attempt}"));
        match Worker::start(&wdir, &[], Some(&token), &config) {
            Ok(w) => common::ports::Start::Up((c, w)),
            Err(said) => common::ports::collided_or_panic("the worker did not start", said),
        }
    });
    let text = std::fs::read_to_string(dir.path().join(format!("w{attempt}/worker.toml"))).unwrap();
    assert!(text.contains("controllers = []"), "{text}");
    let body =
        serde_json::json!({"name": "echo", "address": echo(), "zone": "LOCAL", "service": "echo"})
            .to_string();
    assert_eq!(c.curl("POST", "/v1/targets", Some(&body)).0, 201);
    let l = listen(&c, "echo");
    let mut s = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"outbound").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"outbound");
    let (_, text) = c.curl("GET", &format!("/v1/workers/{}", w.id), None);
    assert!(text.contains("\"active\""), "{text}");
    // A cancel reaches the worker over the link the controller dialled.
    let mut live = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    live.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    live.read_exact(&mut one).unwrap();
    let started = Instant::now();
    assert_eq!(
        c.curl(
            "POST",
            &format!("/v1/sessions/{}/cancel", l.session_id),
            Some("{}")
        )
        .0,
        200
    );
    live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = live.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
}
