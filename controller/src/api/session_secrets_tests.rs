//! `GET /v1/sessions/{id}/secrets` through the router: the owner reads while the session
//! lives (one `session_secrets_read` each time), anyone else gets the unknown session's 404
//! (audited as `permission_denied`), an ended session's secrets are gone (410).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use portcullis_proto::api::LeasedSecret;
use serde_json::json;

use super::tests::{client_key, Api, POLICY};
use crate::audit::{Actor, AuditEvent, Event};
use crate::store::session_secrets;

const PASSWORD: &str = "A1a-leased-password";

/// A session of `token`'s user to `web`, whose mint left these secrets sealed in the store
/// (as `sessions::mint` does, without a Vault).
async fn session_with_secrets(api: &Api, token: &str) -> String {
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(token),
            Some(client_key()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sid = body["session_id"].as_str().unwrap().to_owned();
    let secrets = [LeasedSecret {
        path: "database/creds/readonly".into(),
        lease_id: "database/creds/readonly/l1".into(),
        lease_duration_secs: 3600,
        data: json!({"username": "v-tok-ro-1", "password": PASSWORD}),
    }];
    let row = crate::sessions::secrets::seal(&api.state.keys, &sid, &secrets, 1).unwrap();
    let mut tx = api.state.begin_audited().await.unwrap();
    session_secrets::insert(tx.write(), &row).await.unwrap();
    tx.commit(AuditEvent::new(Actor::system(), Event::SessionActivated).session(&sid))
        .await
        .unwrap();
    sid
}

#[tokio::test]
async fn only_the_owner_reads_a_live_sessions_secrets_and_every_read_is_audited() {
    let api = Api::start_with_policy(POLICY).await;
    api.live_worker().await;
    let admin = api.login("ada", &["admins"]).await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:5432", "zone": "LOCAL", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let alice = api.login("alice", &["users"]).await;
    let bob = api.login("bob", &["users"]).await;
    let sid = session_with_secrets(&api, &alice).await;
    let path = format!("/v1/sessions/{sid}/secrets");

    // The owner: the data, one event naming the path, never the data.
    let ((status, body), events) = api
        .audited(api.call(Method::GET, &path, Some(&alice), None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(events, ["session_secrets_read"]);
    assert_eq!(body["session_id"], sid.as_str());
    assert_eq!(body["secrets"][0]["data"]["password"], PASSWORD);
    let ((status, _), events) = api
        .audited(api.call(Method::GET, &path, Some(&alice), None))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events, ["session_secrets_read"], "every read");

    // Anyone else, an admin with sessions:read-all too: as if there were no such session.
    for token in [&admin, &bob] {
        let ((status, body), events) = api
            .audited(api.call(Method::GET, &path, Some(token), None))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], "not_found");
        assert!(!body.to_string().contains(PASSWORD));
        assert_eq!(events, ["permission_denied"]);
    }
    // An unknown session: the same answer, nothing to audit.
    let ((status, body), events) = api
        .audited(api.call(
            Method::GET,
            "/v1/sessions/s_nope/secrets",
            Some(&alice),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(events.is_empty(), "{events:?}");

    // No event holds the data.
    let (_, audit) = api
        .call(Method::GET, "/v1/audit?limit=1000", Some(&admin), None)
        .await;
    assert!(!audit.to_string().contains(PASSWORD));
    assert!(audit.to_string().contains("database/creds/readonly/l1"));

    // A session whose target leases nothing.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(&alice),
            Some(client_key()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let plain = body["session_id"].as_str().unwrap();
    let (status, body) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/{plain}/secrets"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "no_secrets");

    // Ended: the sealed row went with the end, and the read is refused.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{sid}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conn = api.state.store.conn().await.unwrap();
    assert!(session_secrets::get(&mut conn, &sid)
        .await
        .unwrap()
        .is_none());
    drop(conn);
    let ((status, body), events) = api
        .audited(api.call(Method::GET, &path, Some(&alice), None))
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["error"], "session_ended");
    assert!(
        body["message"].as_str().unwrap().contains("new session"),
        "{body}"
    );
    assert!(events.is_empty(), "{events:?}");
}
