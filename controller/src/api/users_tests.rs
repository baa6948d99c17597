//! `/v1/users/local` through the router: who may administer local users (`users:admin` and a
//! login that met MFA), which groups they may grant (`[auth.local] allowed_groups`), and that
//! each change commits its event with the administrator as the actor.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::tests::Api;
use crate::local_users::LOCAL_USERS_ISSUER;
use crate::store::local_users as rows;

/// One zone; `admins` hold `users:admin`, `ops` do not.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["users:admin", "audit:read"]

[[role]]
name = "ops"
groups = ["ops"]
"#;

const ALLOWED: &str = "[auth.local]\nallowed_groups = [\"ops\", \"admins\"]\n";

async fn start(extra: &str) -> Api {
    Api::start_with(POLICY, extra, crate::clock::system()).await
}

/// A dev-login token for `user` in `groups` whose login asserted `amr`.
async fn login_with(api: &Api, user: &str, groups: &[&str], amr: &[&str]) -> String {
    let body = json!({"username": user, "groups": groups, "amr": amr});
    let (status, body) = api
        .call(Method::POST, "/v1/auth/dev-login", None, Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

/// The body of the newest stored audit event of `kind`.
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
async fn user_administration_needs_users_admin_and_a_login_that_met_mfa() {
    let api = start(ALLOWED).await;
    let ops = api.login("olga", &["ops"]).await;
    let admin_pwd = login_with(&api, "ada", &["admins"], &["pwd"]).await;
    let admin_otp = login_with(&api, "ada", &["admins"], &["pwd", "otp"]).await;
    let add = json!({"username": "bob", "groups": ["ops"]});

    // Without the permission: refused, naming it; nothing created.
    let ((status, body), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/users/local",
            Some(&ops),
            Some(add.clone()),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("`users:admin`"), "{body}");
    assert_eq!(events, ["permission_denied"]);

    // With the permission but a password-only login: refused, naming MFA, audited.
    for (method, path) in [
        (Method::POST, "/v1/users/local"),
        (Method::GET, "/v1/users/local"),
        (Method::GET, "/v1/users/local/bob"),
        (Method::POST, "/v1/users/local/bob/reset"),
        (Method::POST, "/v1/users/local/bob/disable"),
    ] {
        let body = (method == Method::POST).then(|| add.clone());
        let ((status, answer), events) = api
            .audited(api.call(method.clone(), path, Some(&admin_pwd), body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert!(message(&answer).contains("MFA"), "{answer}");
        assert_eq!(events, ["permission_denied"], "{method} {path}");
    }
    let denied = last_event(&api, "permission_denied").await;
    assert_eq!(denied["actor"]["user"], "ada");
    assert_eq!(denied["details"]["permission"], "users:admin with MFA");

    // With MFA: done.
    let (status, body) = api
        .call(Method::POST, "/v1/users/local", Some(&admin_otp), Some(add))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .call(Method::GET, "/v1/users/local", Some(&admin_otp), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["users"][0]["username"], "bob", "{body}");
}

#[tokio::test]
async fn add_show_reset_and_disable_each_commit_their_event_with_the_admin_as_actor() {
    let api = start(ALLOWED).await;
    let admin = api.login("ada", &["admins"]).await;

    let ((status, added), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/users/local",
            Some(&admin),
            Some(json!({"username": "bob", "groups": ["ops"]})),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(events, ["local_user_created"]);
    let first_password = added["one_time_password"].as_str().unwrap().to_owned();
    assert!(first_password.len() >= 16, "{added}");
    assert_eq!(added["user"]["must_change_password"], true);
    assert_eq!(added["user"]["totp_enrolled"], false);
    assert_eq!(added["user"]["groups"], json!(["ops"]));
    let created = last_event(&api, "local_user_created").await;
    assert_eq!(created["actor"]["user"], "ada");
    assert_eq!(created["details"]["password_source"], "generated");
    assert!(!created.to_string().contains(&first_password));

    // The same name again: 409, nothing recorded.
    let ((status, body), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/users/local",
            Some(&admin),
            Some(json!({"username": "bob", "groups": ["ops"]})),
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        message(&body).contains("portcullis users reset bob"),
        "{body}"
    );
    assert!(events.is_empty(), "{events:?}");

    let (status, shown) = api
        .call(Method::GET, "/v1/users/local/bob", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown, added["user"]);
    for (method, path) in [
        (Method::GET, "/v1/users/local/nobody"),
        (Method::POST, "/v1/users/local/nobody/reset"),
        (Method::POST, "/v1/users/local/nobody/disable"),
    ] {
        let (status, body) = api.call(method, path, Some(&admin), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(
            message(&body).contains("no local user \"nobody\""),
            "{body}"
        );
    }

    let ((status, reset), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/users/local/bob/reset",
            Some(&admin),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(events, ["local_user_reset"]);
    assert_ne!(reset["one_time_password"], first_password.as_str());
    assert_eq!(
        last_event(&api, "local_user_reset").await["actor"]["user"],
        "ada"
    );

    // A token of bob's (as its login will issue one), then disable: revoked, refused.
    let bob = {
        let mut conn = api.state.store.conn().await.unwrap();
        rows::by_name(&mut conn, LOCAL_USERS_ISSUER, "bob")
            .await
            .unwrap()
            .unwrap()
            .user
    };
    let token = crate::tokens::issue(
        &api.state.store,
        &api.state.keys,
        std::time::Duration::from_secs(600),
        &bob,
        |u, t| crate::tokens::login_succeeded(u, t, "test"),
    )
    .await
    .unwrap();
    let (status, _) = api
        .call(Method::GET, "/v1/whoami", Some(&token.secret), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ((status, disabled), events) = api
        .audited(api.call(
            Method::POST,
            "/v1/users/local/bob/disable",
            Some(&admin),
            None,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(events, ["local_user_disabled"]);
    assert_eq!(disabled["revoked_token_ids"], json!([token.token_id]));
    assert!(disabled["user"]["disabled_at"].is_u64(), "{disabled}");
    let event = last_event(&api, "local_user_disabled").await;
    assert_eq!(event["actor"]["user"], "ada");
    assert_eq!(event["details"]["user"], "bob");
    assert_eq!(event["details"]["token_ids"], json!([token.token_id]));
    let (status, _) = api
        .call(Method::GET, "/v1/whoami", Some(&token.secret), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn only_allowed_groups_are_granted_and_a_password_is_never_taken() {
    let api = start(ALLOWED).await;
    let admin = api.login("ada", &["admins"]).await;
    let cases = [
        (
            json!({"username": "bob", "groups": ["ops", "root"]}),
            "\"root\" is not among `[auth.local] allowed_groups` (admins, ops)",
        ),
        (
            json!({"username": "bob", "groups": []}),
            "at least one group",
        ),
        (
            json!({"username": "bob", "groups": ["ops"], "password": "chosen-by-the-admin"}),
            "password",
        ),
        (
            json!({"username": "b b", "groups": ["ops"]}),
            "not a user name",
        ),
    ];
    for (body, expected) in cases {
        let ((status, answer), events) = api
            .audited(api.call(
                Method::POST,
                "/v1/users/local",
                Some(&admin),
                Some(body.clone()),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(message(&answer).contains(expected), "{body}: {answer}");
        assert!(events.is_empty(), "{events:?}");
    }

    // No allowed_groups: every group refused, with the advice.
    let closed = start("").await;
    let admin = closed.login("ada", &["admins"]).await;
    let (status, answer) = closed
        .call(
            Method::POST,
            "/v1/users/local",
            Some(&admin),
            Some(json!({"username": "bob", "groups": ["ops"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        message(&answer).contains("`[auth.local] allowed_groups` is empty"),
        "{answer}"
    );
    assert_eq!(answer["field"], "groups", "{answer}");
}
