//! `POST /v1/policy/reload?dry_run=true` and `POST /v1/policy/simulate`: a dry run reports
//! and changes nothing; the reload then ends exactly the sessions it listed, and its audit
//! event carries the diff's summary; both need `policy:reload`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api::tests::{client_key, Api, POLICY};

/// [`POLICY`] without the `user` role: its members lose their sessions.
fn without_user_role() -> String {
    let cut = POLICY.find("[[role]]\nname = \"user\"").unwrap();
    POLICY[..cut].to_owned()
}

/// An admin, a user `uma` with a pending session to `web`, and the session's id.
async fn setup(api: &Api) -> (String, String, String) {
    let admin = api.login("ada", &["admins"]).await;
    let uma = api.login("uma", &["users"]).await;
    api.live_worker().await;
    let (status, body) = api
        .create_target(
            &admin,
            json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, auth) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(&uma),
            Some(client_key()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    let session = auth["session_id"].as_str().unwrap().to_owned();
    (admin, uma, session)
}

async fn session_state(api: &Api, token: &str, id: &str) -> String {
    let (status, body) = api
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["state"].as_str().unwrap().to_owned()
}

async fn last_event(api: &Api, kind: &str) -> Value {
    let mut conn = api.state.store.conn().await.unwrap();
    crate::store::audit::after_stored(&mut conn, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
        .rfind(|body| body["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
}

#[tokio::test]
async fn a_dry_run_reports_and_changes_nothing_and_the_reload_ends_what_it_listed() {
    let api = Api::start_with_policy(POLICY).await;
    let (admin, _uma, session) = setup(&api).await;
    let loaded = api.state.policy().unwrap().hash().to_owned();
    let new = without_user_role();

    let ((status, report), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/policy/reload?dry_run=true",
            Some(&admin),
            Some(json!({ "policy": new })),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(events.is_empty(), "a dry run writes nothing: {events:?}");
    assert_eq!(api.state.policy().unwrap().hash(), loaded);
    assert_ne!(session_state(&api, &admin, &session).await, "terminated");

    assert_eq!(report["old_hash"], loaded.as_str());
    assert_eq!(report["roles"]["removed"], json!(["user"]));
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{report:#}");
    assert_eq!(changes[0]["role"], "user");
    assert_eq!(changes[0]["kind"], "denied");
    assert_eq!(
        (
            &changes[0]["source_zone"],
            &changes[0]["target_zone"],
            &changes[0]["service"]
        ),
        (&json!("LOCAL"), &json!("LOCAL"), &json!("echo"))
    );
    let live = &report["live"];
    assert_eq!(live["users"].as_array().unwrap().len(), 1, "{live:#}");
    assert_eq!(live["users"][0]["user"], "uma");
    assert_eq!(live["users"][0]["groups"], json!(["users"]));
    assert_eq!(live["users"][0]["changes"][0]["new"], "deny");
    assert_eq!(live["targets"][0]["target"], "web", "{live:#}");
    assert_eq!(live["targets"][0]["changes"][0]["role"], "user");
    let sessions = live["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{live:#}");
    assert_eq!(sessions[0]["session"], session.as_str());
    assert_eq!(sessions[0]["user"], "uma");
    assert_eq!(sessions[0]["target"], "web");

    // The same text, reloaded for real: it ends exactly that session, and its event
    // carries the diff's summary with both hashes.
    std::fs::write(api.state.config.policy_file.as_ref().unwrap(), &new).unwrap();
    let ((status, body), events) = api
        .audited(api.call(Method::POST, "/v1/policy/reload", Some(&admin), None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessions_ended"], 1, "{body}");
    assert_eq!(events, ["policy_reloaded", "session_terminated"]);
    assert_eq!(session_state(&api, &admin, &session).await, "terminated");
    let event = last_event(&api, "policy_reloaded").await;
    assert_eq!(event["policy_hash"], report["new_hash"], "{event}");
    let details = &event["details"];
    assert_eq!(details["previous_policy_hash"], loaded.as_str(), "{event}");
    assert_eq!(
        (
            &details["denied"],
            &details["allowed"],
            &details["names_removed"]
        ),
        (&json!(1), &json!(0), &json!(1))
    );
    assert_eq!(
        details["first_changes"],
        json!(["role user: LOCAL -> LOCAL echo: allow -> deny"])
    );
}

#[tokio::test]
async fn a_dry_run_of_the_loaded_file_is_empty_and_bad_input_is_refused() {
    let api = Api::start_with_policy(POLICY).await;
    let (admin, _uma, _session) = setup(&api).await;
    // No body: the configured file, which is the loaded policy.
    let (status, report) = api
        .call(
            Method::POST,
            "/v1/policy/reload?dry_run=true",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["changes"], json!([]));
    assert_eq!(report["live"]["sessions"], json!([]));
    assert_eq!(report["old_hash"], report["new_hash"]);

    let ((status, body), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/policy/reload?dry_run=true",
            Some(&admin),
            Some(json!({"policy": "[settings]\nbroker_zone = \"NOPE\"\n"})),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("NOPE"), "{body}");
    assert!(events.is_empty(), "{events:?}");
    let (status, body) = api
        .send(
            Method::POST,
            "/v1/policy/reload?dry_run=true",
            Some(&admin),
            Some("[settings]"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"policy\""),
        "{body}"
    );
}

#[tokio::test]
async fn without_policy_reload_the_dry_run_and_simulate_are_refused_and_audited() {
    let api = Api::start_with_policy(POLICY).await;
    let (_admin, uma, _session) = setup(&api).await;
    for path in [
        "/v1/policy/reload?dry_run=true",
        "/v1/policy/simulate?user=uma",
    ] {
        let ((status, body), events) = api
            .audited(api.call(
                Method::POST,
                path,
                Some(&uma),
                Some(json!({ "policy": without_user_role() })),
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("policy:reload"),
            "{body}"
        );
        assert_eq!(events, ["permission_denied"], "{path}");
    }
}

#[tokio::test]
async fn simulate_shows_what_a_user_reaches_under_the_loaded_or_a_new_policy() {
    let api = Api::start_with_policy(POLICY).await;
    let (admin, _uma, _session) = setup(&api).await;
    let reach = |body: &Value| -> Vec<(String, String)> {
        body["reach"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["target_zone"] == "LOCAL" && r["source_zone"] == "LOCAL")
            .map(|r| {
                (
                    r["outcome"].as_str().unwrap().to_owned(),
                    r["roles"].to_string(),
                )
            })
            .collect()
    };
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/policy/simulate?user=uma",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["groups"], json!(["users"]));
    assert_eq!(
        reach(&body),
        [("allow".to_owned(), "[\"user\"]".to_owned())]
    );

    let (status, body) = api
        .call(
            Method::POST,
            "/v1/policy/simulate?user=uma",
            Some(&admin),
            Some(json!({ "policy": without_user_role() })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(reach(&body), [("deny".to_owned(), "[]".to_owned())]);

    let (status, body) = api
        .call(
            Method::POST,
            "/v1/policy/simulate?user=nobody",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("--groups"),
        "{body}"
    );
}
