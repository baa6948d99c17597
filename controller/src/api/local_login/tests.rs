//! `POST /v1/auth/local/login` through the router, on a manual clock: every rule of a step
//! and what each commits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::super::tests::Api;
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::local_auth::password::{self, Argon2Params, NewPassword};
use crate::local_auth::totp::{code_at_step, step_at, TotpSecret};
use crate::local_users::LOCAL_USERS_ISSUER;
use crate::secret::SecretString;
use crate::store::local_users::{self as rows, LocalUserRecord};
use crate::store::users::{self, UserRecord};
use crate::{Clock as _, ManualClock};

const START: u64 = 1_900_000_005;
const PATH: &str = "/v1/auth/local/login";
pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const NEW_PASSWORD: &str = "staple in the lantern";

/// The weakest argon2 the config accepts (fast tests), and a back-off of one free failure
/// then 2 s.
pub(crate) const LOCAL: &str = "[auth.local]\n[auth.local.argon2]\nm_cost_kib = 7168\nt_cost = 5\n\
                     [auth.local.backoff]\nwindow = \"10s\"\nuser_free_failures = 2\n\
                     network_free_failures = 50\nbase_delay = \"2s\"\nmax_delay = \"4s\"\n";

pub(crate) struct Fixture {
    pub(crate) api: Api,
    pub(crate) clock: Arc<ManualClock>,
}

async fn start(extra: &str) -> Fixture {
    start_with(super::super::tests::POLICY, extra).await
}

/// A controller with `policy` and `extra` config on a manual clock.
pub(crate) async fn start_with(policy: &str, extra: &str) -> Fixture {
    let clock = Arc::new(ManualClock::at_unix(START));
    let api = Api::start_with(policy, extra, clock.clone()).await;
    Fixture { api, clock }
}

/// How a test user starts.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// A password an administrator gave (must change).
    OneTime,
    /// The bootstrap credential: must change, expires in an hour.
    Bootstrap,
    /// A password of its own, no TOTP yet.
    Settled,
}

impl Fixture {
    /// Creates `name` (in `admins`) as the offline command would, with `PASSWORD`.
    async fn user(&self, name: &str, kind: Kind) -> String {
        self.user_in(name, kind, &["admins"]).await
    }

    /// Creates `name` in `groups` as the offline command would, with `PASSWORD`.
    pub(crate) async fn user_in(&self, name: &str, kind: Kind, groups: &[&str]) -> String {
        let state = &self.api.state;
        let now = clock::to_i64(self.clock.unix_secs());
        let hash = password::hash(
            &NewPassword::new(SecretString::from(PASSWORD.to_owned()), 1).unwrap(),
            Argon2Params {
                m_cost_kib: 7168,
                t_cost: 5,
                p_cost: 1,
            },
        )
        .unwrap();
        let mut tx = state.begin_audited().await.unwrap();
        let user = users::upsert(
            tx.write(),
            &UserRecord {
                id: new_id(IdKind::User),
                issuer: LOCAL_USERS_ISSUER.into(),
                subject: name.into(),
                username: name.into(),
                email: None,
                name: None,
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                amr: vec![],
                acr: None,
                auth_time: None,
                updated_at: now,
            },
        )
        .await
        .unwrap();
        rows::insert(
            tx.write(),
            &LocalUserRecord {
                user_id: user.id.clone(),
                password_hash: hash.as_phc().to_owned(),
                must_change_password: !matches!(kind, Kind::Settled),
                password_expires_at: matches!(kind, Kind::Bootstrap).then_some(now + 3600),
                totp_secret: None,
                totp_last_step: None,
                disabled_at: None,
                created_at: now,
                updated_at: now,
            },
        )
        .await
        .unwrap();
        tx.commit(AuditEvent::new(
            Actor::local("uid=0"),
            Event::LocalUserCreated {
                details: event::LocalUserCreated {
                    user: name.into(),
                    user_id: user.id.clone(),
                    issuer: user.issuer.clone(),
                    groups: user.groups.clone(),
                    password_source: "file".into(),
                },
            },
        ))
        .await
        .unwrap();
        user.id
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        self.api.call(Method::POST, PATH, None, Some(body)).await
    }

    /// The code of `secret` at the clock's step plus `offset`.
    pub(crate) fn code(&self, secret: &TotpSecret, offset: i64) -> String {
        let step = step_at(self.clock.unix_secs()).saturating_add_signed(offset);
        code_at_step(secret, step).to_string()
    }

    /// A first login to the end: new password and TOTP enrolment. The secret and the answer.
    pub(crate) async fn enrol(&self, name: &str, password: &str) -> (TotpSecret, Value) {
        let (status, asked) = self
            .post(json!({"username": name, "password": password}))
            .await;
        assert_eq!(status, StatusCode::OK, "{asked}");
        let offer = &asked["totp_enrolment"];
        let secret = TotpSecret::from_base32(offer["secret_base32"].as_str().unwrap()).unwrap();
        let (status, done) = self
            .post(json!({
                "username": name,
                "password": password,
                "new_password": NEW_PASSWORD,
                "totp_enrolment": {"ticket": offer["ticket"], "code": self.code(&secret, 0)},
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{done}");
        (secret, done)
    }

    async fn whoami(&self, token: &str) -> Value {
        let (status, me) = self
            .api
            .call(Method::GET, "/v1/whoami", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{me}");
        me
    }
}

#[tokio::test]
async fn a_first_login_changes_the_password_and_enrols_totp_in_one_commit() {
    let f = start(LOCAL).await;
    f.user("ada", Kind::OneTime).await;
    let ((status, asked), events) = f
        .api
        .audited(f.post(json!({"username": "ada", "password": PASSWORD})))
        .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["status"], "continue");
    assert_eq!(asked["needs"], json!(["new_password", "totp_enrolment"]));
    let offer = &asked["totp_enrolment"];
    let uri = offer["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Portcullis:ada?secret=")
            && uri.ends_with("&issuer=Portcullis&algorithm=SHA1&digits=6&period=30"),
        "{uri}"
    );
    assert!(events.is_empty(), "asking commits nothing: {events:?}");
    let secret = TotpSecret::from_base32(offer["secret_base32"].as_str().unwrap()).unwrap();

    // A wrong enrolment code is a wrong credential.
    let (status, refused) = f
        .post(
            json!({"username": "ada", "password": PASSWORD, "new_password": NEW_PASSWORD,
                     "totp_enrolment": {"ticket": offer["ticket"], "code": f.code(&secret, 3)}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");

    let ((status, done), events) = f
        .api
        .audited(f.post(json!({
            "username": "ada", "password": PASSWORD, "new_password": NEW_PASSWORD,
            "totp_enrolment": {"ticket": offer["ticket"], "code": f.code(&secret, 0)},
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    assert_eq!(done["status"], "logged_in");
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(
        events,
        ["local_password_changed", "totp_enrolled", "login_succeeded"]
    );
    let me = f.whoami(done["token"].as_str().unwrap()).await;
    assert_eq!(me["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(me["issuer"], "local:");
    assert_eq!(me["subject"], "ada");

    // The old password is gone; the new one asks for a code (the enrolment's step is used).
    let (status, _) = f
        .post(json!({"username": "ada", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, asked) = f
        .post(json!({"username": "ada", "password": NEW_PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(asked["needs"], json!(["totp_code"]));
    let (status, _) = f
        .post(json!({"username": "ada", "password": NEW_PASSWORD, "totp_code": f.code(&secret, 0)}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the enrolment's code is used"
    );
}

#[tokio::test]
async fn codes_are_single_use_per_step_and_two_steps_off_is_refused() {
    let f = start(LOCAL).await;
    f.user("bob", Kind::OneTime).await;
    let (secret, _) = f.enrol("bob", PASSWORD).await;
    f.clock.advance(Duration::from_secs(30));
    let login =
        |code: String| json!({"username": "bob", "password": NEW_PASSWORD, "totp_code": code});
    for offset in [-2, 2] {
        let (status, body) = f.post(login(f.code(&secret, offset))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{offset}: {body}");
    }
    f.clock.advance(Duration::from_secs(30)); // past the back-off of the two failures
    f.clock.advance(Duration::from_secs(10));
    let ((status, body), events) = f.api.audited(f.post(login(f.code(&secret, 0)))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(events, ["login_succeeded"]);
    let (status, again) = f.post(login(f.code(&secret, 0))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a reused code: {again}");
    // The next step's code (one step of skew) is fresh.
    let (status, body) = f.post(login(f.code(&secret, 1))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn every_wrong_credential_gets_the_same_401_and_the_back_off_answers_429() {
    let f = start(LOCAL).await;
    f.user("cy", Kind::Settled).await;
    let disabled = f.user("dee", Kind::Settled).await;
    {
        let mut tx = f.api.state.begin_audited().await.unwrap();
        rows::set_disabled(tx.write(), &disabled, Some(1), 1)
            .await
            .unwrap();
        tx.commit(AuditEvent::new(
            Actor::local("uid=0"),
            Event::LocalUserDisabled {
                details: event::LocalUserDisabled {
                    user: event::LocalUserRef {
                        user: "dee".into(),
                        user_id: disabled.clone(),
                        issuer: LOCAL_USERS_ISSUER.into(),
                    },
                    token_ids: vec![],
                },
            },
        ))
        .await
        .unwrap();
    }
    let mut bodies = Vec::new();
    for (name, password) in [
        ("cy", "wrong password!!"),
        ("nobody", PASSWORD),
        ("dee", PASSWORD),
    ] {
        let (status, body) = f
            .post(json!({"username": name, "password": password}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        bodies.push(body);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(bodies[0]["error"], "invalid_credentials");
    assert_eq!(bodies[0]["message"], "wrong user name, password or code");

    // cy: two free failures, then 2 s after the last one.
    for _ in 0..2 {
        let (status, _) = f
            .post(json!({"username": "cy", "password": "wrong again!!!"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = f
        .api
        .raw(
            Method::POST,
            PATH,
            json!({"username": "cy", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "2");
    f.clock.advance(Duration::from_secs(2));
    let (status, body) = f
        .post(json!({"username": "cy", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::OK, "after the delay: {body}");
    assert_eq!(body["needs"], json!(["totp_enrolment"]));
}

#[tokio::test]
async fn a_recovery_code_logs_in_once() {
    let f = start(LOCAL).await;
    f.user("eve", Kind::OneTime).await;
    let (_, done) = f.enrol("eve", PASSWORD).await;
    let code = done["recovery_codes"][3].as_str().unwrap().to_owned();
    let body = json!({"username": "eve", "password": NEW_PASSWORD, "recovery_code": code});
    let ((status, first), events) = f.api.audited(f.post(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["recovery_codes_left"], 9);
    assert_eq!(events, ["recovery_code_used", "login_succeeded"]);
    let me = f.whoami(first["token"].as_str().unwrap()).await;
    assert_eq!(me["amr"], json!(["pwd", "otp", "mfa"]));
    let (status, _) = f.post(body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn password_only_when_allowed_but_the_bootstrap_user_always_enrols() {
    let f = start(&LOCAL.replace(
        "[auth.local]\n",
        "[auth.local]\nallow_password_only = true\n",
    ))
    .await;
    f.user("fay", Kind::Settled).await;
    f.user("root", Kind::Bootstrap).await;
    let (status, done) = f
        .post(json!({"username": "fay", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    let me = f.whoami(done["token"].as_str().unwrap()).await;
    assert_eq!(me["amr"], json!(["pwd"]));

    let (status, asked) = f
        .post(json!({"username": "root", "password": PASSWORD, "new_password": NEW_PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::OK, "{asked}");
    assert_eq!(asked["needs"], json!(["totp_enrolment"]));
    let ((_, done), events) = f.api.audited(f.enrol("root", PASSWORD)).await;
    assert_eq!(done["user"]["amr"], json!(["pwd", "otp", "mfa"]));
    assert!(
        events.contains(&"local_password_changed".to_owned()),
        "{events:?}"
    );
    // The bootstrap credential worked once.
    let (status, _) = f
        .post(json!({"username": "root", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_bootstrap_credential_says_how_to_get_a_new_one() {
    let f = start(LOCAL).await;
    f.user("root", Kind::Bootstrap).await;
    f.clock.advance(Duration::from_secs(3601));
    let (status, body) = f
        .post(json!({"username": "root", "password": PASSWORD}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("portcullis controller users reset root"),
        "{body}"
    );
    // A wrong password says nothing of it.
    let (_, body) = f
        .post(json!({"username": "root", "password": "not the credential"}))
        .await;
    assert_eq!(body["message"], "wrong user name, password or code");
}

#[tokio::test]
async fn bad_new_passwords_and_other_users_tickets_are_refused() {
    let f = start(LOCAL).await;
    f.user("gus", Kind::OneTime).await;
    f.user("hal", Kind::OneTime).await;
    for (new, why) in [(PASSWORD, "the current one"), ("short", "at least 12")] {
        let (status, body) = f
            .post(json!({"username": "gus", "password": PASSWORD, "new_password": new}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], "new_password");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    let (_, asked) = f
        .post(json!({"username": "hal", "password": PASSWORD}))
        .await;
    let offer = &asked["totp_enrolment"];
    let secret = TotpSecret::from_base32(offer["secret_base32"].as_str().unwrap()).unwrap();
    let (status, body) = f
        .post(
            json!({"username": "gus", "password": PASSWORD, "new_password": NEW_PASSWORD,
                     "totp_enrolment": {"ticket": offer["ticket"], "code": f.code(&secret, 0)}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "totp_enrolment.ticket");
    f.clock.advance(Duration::from_secs(601));
    let (status, _) = f
        .post(
            json!({"username": "hal", "password": PASSWORD, "new_password": NEW_PASSWORD,
                     "totp_enrolment": {"ticket": offer["ticket"], "code": f.code(&secret, 0)}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an expired ticket");
}

#[tokio::test]
async fn the_route_is_gone_when_local_logins_are_off() {
    let f = start("[auth.local]\nenabled = false\n").await;
    let (status, _) = f.post(json!({"username": "x", "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
