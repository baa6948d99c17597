//! A gateway session's forwards and refused channels, as its worker reports them over the
//! link, on a controller started on an in-memory store (the helpers are `gateway_tests`').

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use portcullis_proto::gateway::{ChannelRefusal, VetForward};
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind, EndReason, Request, Response};
use serde_json::json;

use super::gateway_tests::{authorize, events_of, link, ssh_key, start, POLICY};
use crate::store::sessions::{self as session_rows, SessionState};

#[tokio::test]
async fn a_vetted_forward_is_a_session_of_the_user_that_ends_with_the_gateway_session() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let parent = auth["session_id"].as_str().unwrap().to_owned();
    let vet = |host: &str, port: u16| {
        Request::VetForward(VetForward {
            session_id: parent.clone(),
            connection_id: "c_user".into(),
            host: host.into(),
            port,
        })
    };

    let (answer, events) = api
        .audited(link(&api, &worker, vet("192.0.2.10", 8080)))
        .await;
    assert_eq!(events, ["session_authorized"]);
    let Response::ForwardVetted(vetted) = answer else {
        panic!("not vetted: {answer:?}");
    };
    assert_eq!(vetted.endpoint, "192.0.2.10:8080");
    assert!(vetted.expires_at <= auth["expires_at"].as_u64().unwrap());
    let child = {
        let mut conn = api.state.store.conn().await.unwrap();
        session_rows::get(&mut conn, &vetted.session_id)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(child.parent_session_id.as_deref(), Some(parent.as_str()));
    assert_eq!(child.state, SessionState::Active);
    assert_eq!(
        (child.worker_id.as_str(), child.endpoint.as_str()),
        (worker.as_str(), "192.0.2.10:8080")
    );
    let authorized = events_of(&api, "session_authorized").await;
    let last = authorized.last().unwrap();
    assert_eq!(last["session"], vetted.session_id.as_str());
    assert_eq!(last["details"]["parent_session"], parent.as_str());
    assert_eq!(last["details"]["destination"], "192.0.2.10:8080");
    assert_eq!(last["actor"]["user"], "alice");

    // The worker reports the forward's connection under the new session.
    let opened = ConnectionEvent {
        event_id: "c_fwd:opened".into(),
        session_id: vetted.session_id.clone(),
        connection_id: "c_fwd".into(),
        at: api.state.clock.unix_secs(),
        kind: ConnectionEventKind::Opened {
            client_addr: "127.0.0.1".into(),
            endpoint: vetted.endpoint.clone(),
        },
    };
    let closed = ConnectionEvent {
        event_id: "c_fwd:closed".into(),
        kind: ConnectionEventKind::Closed {
            bytes_up: 3,
            bytes_down: 4,
            reason: EndReason::Closed,
        },
        ..opened.clone()
    };
    let (answer, events) = api
        .audited(link(
            &api,
            &worker,
            Request::Events {
                events: vec![opened, closed],
            },
        ))
        .await;
    assert!(
        matches!(&answer, Response::EventsAck { event_ids } if event_ids.len() == 2),
        "{answer:?}"
    );
    assert_eq!(events, ["connection_opened", "connection_closed"]);

    // The matrix refuses FAR: refused naming the cell, and audited on the gateway session.
    let (answer, events) = api
        .audited(link(&api, &worker, vet("198.51.100.7", 5432)))
        .await;
    let Response::Refused { reason } = answer else {
        panic!("not refused: {answer:?}");
    };
    assert!(
        reason.contains("198.51.100.7:5432") && reason.contains("LOCAL -> FAR"),
        "{reason}"
    );
    assert_eq!(events, ["session_denied"]);
    let denied = events_of(&api, "session_denied").await;
    assert_eq!(denied[0]["session"], parent.as_str());
    assert_eq!(denied[0]["details"]["destination"], "198.51.100.7:5432");
    assert_eq!(denied[0]["details"]["target_zone"], "FAR");

    // The worker's own loopback, by name or address, is never vetted.
    for host in ["localhost", "127.0.0.1", "::1"] {
        let answer = link(&api, &worker, vet(host, 22)).await;
        assert!(
            matches!(&answer, Response::Refused { reason } if reason.contains("never dials")),
            "{host}: {answer:?}"
        );
    }
    // Only the gateway session's own worker may ask.
    let answer = link(&api, "w_other", vet("192.0.2.10", 8080)).await;
    assert!(matches!(answer, Response::Refused { .. }), "{answer:?}");

    // A second forward, still open when the gateway session ends: it ends with it.
    let Response::ForwardVetted(open) = link(&api, &worker, vet("192.0.2.11", 80)).await else {
        panic!("second forward not vetted");
    };
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{parent}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conn = api.state.store.conn().await.unwrap();
    let child = session_rows::get(&mut conn, &open.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.state, SessionState::Terminated);
    assert_eq!(child.termination_reason, Some(EndReason::Canceled));
    drop(conn);
    let ended: Vec<String> = events_of(&api, "session_terminated")
        .await
        .iter()
        .map(|e| e["session"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ended.contains(&parent) && ended.contains(&open.session_id),
        "{ended:?}"
    );
    let answer = link(&api, &worker, vet("192.0.2.10", 8080)).await;
    assert!(
        matches!(&answer, Response::Refused { reason } if reason.contains("has ended")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_refused_channel_is_audited_with_its_session_channel_destination_login_and_rule() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let session = auth["session_id"].as_str().unwrap().to_owned();
    let refused = ConnectionEvent {
        event_id: "c_1:refused:1".into(),
        session_id: session.clone(),
        connection_id: "c_1".into(),
        at: api.state.clock.unix_secs(),
        kind: ConnectionEventKind::ChannelRefused(ChannelRefusal {
            channel: "tcpip-forward".into(),
            destination: Some("0.0.0.0:8080".into()),
            login: "alice".into(),
            rule: portcullis_proto::gateway::rule_for_right("forward_remote"),
        }),
    };
    let (answer, events) = api
        .audited(link(
            &api,
            &worker,
            Request::Events {
                events: vec![refused.clone()],
            },
        ))
        .await;
    assert!(matches!(answer, Response::EventsAck { .. }), "{answer:?}");
    assert_eq!(events, ["ssh_channel_refused"]);
    let recorded = &events_of(&api, "ssh_channel_refused").await[0];
    assert_eq!(recorded["session"], session.as_str());
    assert_eq!(recorded["decision"], "deny");
    assert_eq!(
        recorded["reason"],
        "ssh.forward_remote is not granted to the session's roles"
    );
    assert_eq!(
        recorded["details"],
        json!({"connection_id": "c_1", "channel": "tcpip-forward",
               "destination": "0.0.0.0:8080", "login": "alice"})
    );
    // Reported by another worker than the session's: dropped, as its other events are.
    let (_, events) = api
        .audited(link(
            &api,
            "w_other",
            Request::Events {
                events: vec![refused],
            },
        ))
        .await;
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_policy_reload_checks_a_forward_by_its_address_and_ends_it_alone_when_refused() {
    let (api, worker) = start().await;
    let alice = api.login("alice", &["gateway"]).await;
    let auth = authorize(&api, &alice, &ssh_key("alice")).await;
    let parent = auth["session_id"].as_str().unwrap().to_owned();
    let vet = Request::VetForward(VetForward {
        session_id: parent.clone(),
        connection_id: "c_user".into(),
        host: "192.0.2.10".into(),
        port: 8080,
    });
    let Response::ForwardVetted(vetted) = link(&api, &worker, vet).await else {
        panic!("not vetted");
    };
    let state_of = |id: String| {
        let api = &api;
        async move {
            let mut conn = api.state.store.conn().await.unwrap();
            session_rows::get(&mut conn, &id).await.unwrap().unwrap()
        }
    };
    let path = api.state.config.policy_file.clone().unwrap();

    // The same policy again: the forward (a destination, not a target) is still allowed.
    let outcome = crate::policy_file::reload(&api.state, crate::audit::Actor::system())
        .await
        .unwrap();
    assert_eq!(outcome.sessions_ended, 0);
    assert!(state_of(vetted.session_id.clone()).await.state.is_live());

    // The role no longer grants LAB: the forward ends, its gateway session stays.
    let narrower = POLICY.replace(r#"zones = ["LOCAL", "LAB"]"#, r#"zones = ["LOCAL"]"#);
    assert_ne!(narrower, POLICY);
    std::fs::write(&path, narrower).unwrap();
    let outcome = crate::policy_file::reload(&api.state, crate::audit::Actor::system())
        .await
        .unwrap();
    assert_eq!(outcome.sessions_ended, 1);
    let child = state_of(vetted.session_id.clone()).await;
    assert_eq!(child.termination_reason, Some(EndReason::PolicyChanged));
    assert!(state_of(parent).await.state.is_live());
}
