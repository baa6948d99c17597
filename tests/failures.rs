//! Failure behaviour: all controllers unreachable, a worker that dies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::client::{refused, Listener};
use common::cluster::{Controller, PausableProxy};
use common::wait::poll;

fn listen(c: &Controller) -> Listener {
    common::client::listen(c.cli(), "echo")
}

fn connected(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    s
}

fn session(c: &Controller, id: &str) -> serde_json::Value {
    let (code, text) = c.curl("GET", &format!("/v1/sessions/{id}"), None);
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn without_any_controller_live_connections_last_the_grace_then_end_with_the_reason_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller"));
    let proxy = PausableProxy::start(&c.cluster);
    let _w = c.join_worker_with_echo(
        dir.path(),
        std::slice::from_ref(&proxy.addr),
        "admit_grace_secs = 1\nlive_grace_secs = 3",
    );
    let l = listen(&c);
    let mut live = connected(l.port);
    proxy.pause();
    let cut = Instant::now();
    // Past the admit grace the worker refuses new connections...
    poll(
        "the end of the admit grace",
        Duration::from_secs(10),
        || {
            if refused(l.port) {
                Ok(())
            } else {
                Err("a new connection was admitted")
            }
        },
    );
    // ...while, within the live grace, the live connection still carries data.
    live.write_all(b"still").unwrap();
    let mut buf = [0u8; 5];
    live.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still");
    // After it, the worker ends it.
    live.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = live.read_to_end(&mut rest);
    let lived = cut.elapsed();
    assert!(
        lived >= Duration::from_secs(2) && lived < Duration::from_secs(8),
        "ended after {lived:?}"
    );
    proxy.resume();
    poll("the reason recorded", Duration::from_secs(15), || {
        let s = session(&c, &l.session_id);
        if s["connections"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["close_reason"] == "controller_unreachable")
        }) {
            Ok(())
        } else {
            Err(s)
        }
    });
}

#[test]
fn a_dead_worker_ends_its_sessions_with_reason_worker_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(&dir.path().join("controller")); // workers.lost_after = 3 s
    let mut w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let l = listen(&c);
    drop(connected(l.port));
    let _ = w.child.kill(); // kill -9
    let _ = w.child.wait();
    let started = Instant::now();
    let s = poll("the session's end", Duration::from_secs(15), || {
        let s = session(&c, &l.session_id);
        if s["state"] == "terminated" {
            Ok(s)
        } else {
            Err(s)
        }
    });
    assert_eq!(s["termination_reason"], "worker_lost", "{s}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended before the worker could be lost"
    );
}

#[test]
fn without_postgresql_authorize_fails_closed_and_recovers_by_itself() {
    let pg = common::pg::PrivateCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_on(&dir.path().join("controller"), &pg.url, "");
    let _w = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let request = serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    let authorize = || c.curl("POST", "/v1/targets/echo/authorize-session", Some(&request));
    assert_eq!(authorize().0, 201);
    pg.down();
    let (code, text) = authorize();
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("database"), "{text}");
    pg.up();
    poll(
        "the controller to recover",
        Duration::from_secs(20),
        || match authorize() {
            (201, _) => Ok(()),
            (code, text) => Err(format!("{code} {text}")),
        },
    );
}

/// Issue 8 with the Vault backend: a worker killed with -9 has its sessions ended with reason
/// worker lost, and each session's Vault token (and so its leases) is revoked.
#[test]
fn a_dead_workers_sessions_have_their_vault_tokens_revoked() {
    let bao = common::vault::Bao::start();
    let dir = tempfile::tempdir().unwrap();
    // Database credentials from Vault make every session of this target get its own token.
    let (c, mut w) = bao.cluster_with_db_secrets(dir.path());
    let sessions: Vec<Listener> = (0..2)
        .map(|_| common::client::listen(c.cli(), "echo"))
        .collect();
    let mut accessors = Vec::new();
    for l in &sessions {
        drop(connected(l.port));
        let found = bao.tokens_of_session(&l.session_id);
        let (_, minted) = c.curl("GET", "/v1/audit?type=credential_minted", None);
        assert_eq!(
            found.len(),
            1,
            "session {} has no Vault token: {minted}",
            l.session_id
        );
        assert!(bao.accessor_alive(&found[0]));
        accessors.push(found[0].clone());
    }
    let _ = w.child.kill(); // kill -9
    let _ = w.child.wait();
    for (l, accessor) in sessions.iter().zip(&accessors) {
        let s = poll(
            "the session's end and its token's revocation",
            Duration::from_secs(20),
            || {
                let s = session(&c, &l.session_id);
                if s["state"] == "terminated" && !bao.accessor_alive(accessor) {
                    Ok(s)
                } else {
                    Err(s)
                }
            },
        );
        assert_eq!(s["termination_reason"], "worker_lost", "{s}");
    }
    // The revocations are in the audit log, by accessor only.
    let (code, text) = c.curl("GET", "/v1/audit?type=credential_revoked", None);
    assert_eq!(code, 200, "{text}");
    for accessor in &accessors {
        assert!(text.contains(accessor.as_str()), "{text}");
    }
}
