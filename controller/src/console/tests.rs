//! The console through the router without a socket (as `api::tests`), on a manual clock:
//! login and its cookie, timeouts, logout and `users revoke`, the cookie refused on `/v1`,
//! CSRF and origin checks, permissions (a reviewer sees but cannot cancel), security headers
//! and escaping.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use serde_json::json;
use tower::ServiceExt as _;

use crate::api::extract::PeerAddr;
use crate::api::local_login::tests::{start_with, Fixture, Kind, LOCAL, NEW_PASSWORD};
use crate::audit::denials::FailureKind;
use crate::Clock as _;

mod sessions_page;

const HOST: &str = "ctl.test:8443";
const ORIGIN: &str = "https://ctl.test:8443";

/// Roles as the issue's: an admin cancels, a reviewer only reads.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[service]]
name = "echo"
ports = "any"

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "audit:read", "users:revoke"]

[[role.grant]]
zones = ["*"]
services = ["*"]

[[role]]
name = "reviewer"
groups = ["reviewers"]
permissions = ["sessions:read-all", "audit:read"]

[[role]]
name = "user"
groups = ["users"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
"#;

/// Console timeouts short enough to step over: 30 min idle, 1 h absolute.
const CONSOLE: &str = "[console]\nidle_timeout = \"30m\"\nabsolute_timeout = \"1h\"\n";

struct Console {
    f: Fixture,
}

/// Header or form fields, name and value.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

/// What a response held.
struct Got {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Got {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_owned()
    }
}

async fn start() -> Console {
    Console {
        f: start_with(POLICY, &format!("{LOCAL}{CONSOLE}")).await,
    }
}

impl Console {
    async fn send(&self, request: Request<Body>) -> Got {
        let mut request = request;
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let response: Response = self.f.api.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Got {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Got {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, HOST);
        if let Some(cookie) = cookie {
            request = request.header(
                header::COOKIE,
                format!("{}={cookie}", super::session::COOKIE),
            );
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A form POST with `headers` (the origin headers a browser adds) and `cookie`.
    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> Got {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(cookie) = cookie {
            request = request.header(
                header::COOKIE,
                format!("{}={cookie}", super::session::COOKIE),
            );
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// A browser's same-origin form POST.
    async fn same_origin(&self, path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Got {
        self.post(
            path,
            cookie,
            &[("origin", ORIGIN), ("sec-fetch-site", "same-origin")],
            fields,
        )
        .await
    }

    /// Makes local user `name` in `groups`, enrolled in TOTP; its current TOTP code.
    async fn user(&self, name: &str, groups: &[&str]) -> crate::local_auth::totp::TotpSecret {
        self.f.user_in(name, Kind::OneTime, groups).await;
        let (secret, _) = self
            .f
            .enrol(name, crate::api::local_login::tests::PASSWORD)
            .await;
        // The enrolment used this step's code: the next login takes the next step's.
        self.f.clock.advance(Duration::from_secs(30));
        secret
    }

    /// Logs `name` in through the console form; the cookie's value.
    async fn login(&self, name: &str, secret: &crate::local_auth::totp::TotpSecret) -> String {
        let code = self.f.code(secret, 0);
        let got = self
            .same_origin(
                "/console/login",
                None,
                &[
                    ("username", name),
                    ("password", NEW_PASSWORD),
                    ("totp_code", &code),
                ],
            )
            .await;
        assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
        assert_eq!(got.location(), "/console/sessions");
        let cookie = got
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap();
        let value = cookie
            .strip_prefix("__Host-portcullis-console=")
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        // Each login needs a fresh TOTP step.
        self.f.clock.advance(Duration::from_secs(30));
        value.to_owned()
    }

    async fn events(&self, action: impl std::future::Future<Output = Got>) -> (Got, Vec<String>) {
        self.f.api.audited(action).await
    }

    /// A live session of dev-login user `uma` to target `web` (created by an admin token).
    async fn live_session(&self) -> String {
        let api = &self.f.api;
        crate::console::harness::live_session(api).await.1
    }

    async fn session_state(&self, id: &str) -> String {
        let mut conn = self.f.api.state.store.conn().await.unwrap();
        crate::store::sessions::get(&mut conn, id)
            .await
            .unwrap()
            .unwrap()
            .state
            .to_string()
    }
}

fn assert_security_headers(got: &Got) {
    assert_eq!(
        got.headers.get(header::CONTENT_SECURITY_POLICY).unwrap(),
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(
        got.headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
        "nosniff"
    );
    assert_eq!(
        got.headers.get(header::REFERRER_POLICY).unwrap(),
        "same-origin"
    );
}

#[tokio::test]
async fn a_login_sets_the_session_cookie_with_exactly_its_attributes_and_stores_its_hash() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    let code = c.f.code(&secret, 0);
    let (got, events) = c
        .events(c.same_origin(
            "/console/login",
            None,
            &[
                ("username", "ada"),
                ("password", NEW_PASSWORD),
                ("totp_code", &code),
            ],
        ))
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert_eq!(events, ["login_succeeded"]);
    let cookie = got
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    let (value, attributes) = cookie
        .strip_prefix("__Host-portcullis-console=")
        .unwrap()
        .split_once(';')
        .unwrap();
    assert_eq!(attributes, " Path=/; Secure; HttpOnly; SameSite=Strict");
    assert_eq!(value.len(), 43, "32 bytes, base64url: {value}");
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    // Only the SHA-256 is stored.
    let mut conn = c.f.api.state.store.conn().await.unwrap();
    let hash = crate::ids::secret_hash(value);
    let found = crate::store::console_sessions::authenticate(
        &mut conn,
        &hash,
        crate::clock::to_i64(c.f.clock.unix_secs()),
    )
    .await
    .unwrap();
    assert_eq!(found.unwrap().user.username, "ada");
    let raw: Option<(i64,)> =
        sqlx::query_as("SELECT COUNT(*) FROM console_sessions WHERE id_hash = $1")
            .bind(value.as_bytes().to_vec())
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
    assert_eq!(raw, Some((0,)));
    drop(conn);

    let page = c.get("/console/sessions", Some(value)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Sessions") && page.body.contains(">ada<"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_wrong_password_or_code_is_refused_and_counted_as_login_failed() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    c.f.api.state.denials.drain();
    let good = c.f.code(&secret, 0);
    let bad = c.f.code(&secret, 5);
    for (password, code) in [
        ("wrong password", good.as_str()),
        (NEW_PASSWORD, bad.as_str()),
    ] {
        let (got, events) = c
            .events(c.same_origin(
                "/console/login",
                None,
                &[
                    ("username", "ada"),
                    ("password", password),
                    ("totp_code", code),
                ],
            ))
            .await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{}", got.body);
        assert!(got.headers.get(header::SET_COOKIE).is_none());
        assert!(
            got.body.contains("wrong user name, password or code"),
            "{}",
            got.body
        );
        assert!(events.is_empty(), "{events:?}");
        assert_security_headers(&got);
    }
    let summaries = c.f.api.state.denials.drain();
    let failed: u64 = summaries
        .iter()
        .filter(|s| s.kind == FailureKind::LoginFailed)
        .map(|s| s.count)
        .sum();
    assert_eq!(failed, 2, "{summaries:?}");
}

#[tokio::test]
async fn a_session_ends_after_its_idle_and_its_absolute_timeout() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    let cookie = c.login("ada", &secret).await;
    // Each request resets the idle clock...
    for _ in 0..2 {
        c.f.clock.advance(Duration::from_secs(25 * 60));
        let got = c.get("/console/sessions", Some(&cookie)).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    }
    // ...but not the absolute one (1 h after the login).
    c.f.clock.advance(Duration::from_secs(11 * 60));
    let got = c.get("/console/sessions", Some(&cookie)).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert_eq!(got.location(), "/console/login");

    // Idle: 31 minutes without a request.
    let cookie = c.login("ada", &secret).await;
    let got = c.get("/console/sessions", Some(&cookie)).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    c.f.clock.advance(Duration::from_secs(31 * 60));
    let got = c.get("/console/sessions", Some(&cookie)).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert_eq!(got.location(), "/console/login");

    // The next login deletes the rows of sessions that are over.
    c.login("ada", &secret).await;
    let mut conn = c.f.api.state.store.conn().await.unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn logout_and_users_revoke_end_the_console_session() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    let cookie = c.login("ada", &secret).await;
    let csrf = c.get("/console/sessions", Some(&cookie)).await.csrf();
    let (got, events) = c
        .events(c.same_origin("/console/logout", Some(&cookie), &[("csrf_token", &csrf)]))
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert_eq!(events, ["logged_out"]);
    assert!(got
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let got = c.get("/console/sessions", Some(&cookie)).await;
    assert_eq!(got.location(), "/console/login");

    let cookie = c.login("ada", &secret).await;
    assert_eq!(
        c.get("/console/sessions", Some(&cookie)).await.status,
        StatusCode::OK
    );
    let admin = c.f.api.login("root", &["admins"]).await;
    let (status, body) =
        c.f.api
            .call(
                Method::POST,
                "/v1/users/revoke",
                Some(&admin),
                Some(json!({"subject": "ada"})),
            )
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = c.get("/console/sessions", Some(&cookie)).await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert_eq!(got.location(), "/console/login");
    let mut conn = c.f.api.state.store.conn().await.unwrap();
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "users revoke deletes the user's console sessions");
}

#[tokio::test]
async fn the_api_refuses_the_console_cookie() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    let cookie = c.login("ada", &secret).await;
    for path in ["/v1/sessions", "/v1/whoami"] {
        let got = c.get(path, Some(&cookie)).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{path}: {}", got.body);
    }
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_another_origin_are_403_and_audited() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    let cookie = c.login("ada", &secret).await;
    let csrf = c.get("/console/sessions", Some(&cookie)).await.csrf();
    let cases: Vec<(Pairs<'_>, Pairs<'_>)> = vec![
        // CSRF missing, then wrong.
        (
            vec![("origin", ORIGIN), ("sec-fetch-site", "same-origin")],
            vec![],
        ),
        (
            vec![("origin", ORIGIN), ("sec-fetch-site", "same-origin")],
            vec![("csrf_token", "not-the-token")],
        ),
        // The right token, from elsewhere.
        (
            vec![
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            vec![("csrf_token", &csrf)],
        ),
        (
            vec![("origin", "https://evil.example")],
            vec![("csrf_token", &csrf)],
        ),
        (
            vec![("sec-fetch-site", "same-site")],
            vec![("csrf_token", &csrf)],
        ),
        // Neither header: fail closed.
        (vec![], vec![("csrf_token", &csrf)]),
    ];
    for (headers, fields) in cases {
        let (got, events) = c
            .events(c.post("/console/logout", Some(&cookie), &headers, &fields))
            .await;
        assert_eq!(
            got.status,
            StatusCode::FORBIDDEN,
            "{headers:?}: {}",
            got.body
        );
        assert_eq!(events, ["permission_denied"], "{headers:?}");
        assert_security_headers(&got);
    }
    // Still logged in: nothing was done.
    assert_eq!(
        c.get("/console/sessions", Some(&cookie)).await.status,
        StatusCode::OK
    );

    // A cross-site login is refused before any password is checked.
    let got = c
        .post(
            "/console/login",
            None,
            &[("origin", "https://evil.example")],
            &[("username", "ada"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_reviewer_sees_sessions_but_cannot_cancel_and_an_admin_can() {
    let c = start().await;
    let session = c.live_session().await;
    let reviewer = c.user("rita", &["reviewers"]).await;
    let admin = c.user("ada", &["admins"]).await;

    let rita = c.login("rita", &reviewer).await;
    let page = c.get("/console/sessions", Some(&rita)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(">uma<") && page.body.contains(">web<"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("/cancel"),
        "no Cancel button: {}",
        page.body
    );
    let csrf = page.csrf();
    let path = format!("/console/sessions/{session}/cancel");
    let (got, events) = c
        .events(c.same_origin(&path, Some(&rita), &[("csrf_token", &csrf)]))
        .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
    assert!(got.body.contains("sessions:cancel-any"), "{}", got.body);
    assert_eq!(events, ["permission_denied"]);
    assert_eq!(c.session_state(&session).await, "pending");

    let ada = c.login("ada", &admin).await;
    let page = c.get("/console/sessions?state=live", Some(&ada)).await;
    assert!(page.body.contains(&path), "a Cancel button: {}", page.body);
    let (got, events) = c
        .events(c.same_origin(&path, Some(&ada), &[("csrf_token", &page.csrf())]))
        .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER, "{}", got.body);
    assert!(
        events.contains(&"session_terminated".to_owned()),
        "{events:?}"
    );
    assert_eq!(c.session_state(&session).await, "terminated");

    // The filters: by target, user and state.
    for (query, shown) in [
        ("?target=web", true),
        ("?target=other", false),
        ("?user=uma&state=terminated", true),
        ("?user=rita", false),
        ("?state=live", false),
    ] {
        let page = c
            .get(&format!("/console/sessions{query}"), Some(&ada))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        assert_eq!(page.body.contains(">uma<"), shown, "{query}: {}", page.body);
    }
}

#[tokio::test]
async fn every_console_response_carries_the_security_headers() {
    let c = start().await;
    let secret = c.user("ada", &["admins"]).await;
    let cookie = c.login("ada", &secret).await;
    let login = c.get("/console/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("name=\"viewport\""));
    let sessions = c.get("/console/sessions", Some(&cookie)).await;
    let bad = c
        .get("/console/sessions?state=nonsense", Some(&cookie))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let redirect = c.get("/console/sessions", None).await;
    assert_eq!(redirect.location(), "/console/login");
    for got in [&login, &sessions, &bad, &redirect] {
        assert_security_headers(got);
        assert_eq!(got.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
        assert!(
            !got.body.contains("<script") && !got.body.contains("style="),
            "{}",
            got.body
        );
    }
    let css = super::assets::css_path();
    assert!(login.body.contains(&css));
    let asset = c.get(&css, None).await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_security_headers(&asset);
    assert_eq!(
        asset.headers.get(header::CACHE_CONTROL).unwrap(),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        c.get("/console/assets/other.css", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn labels_and_user_names_are_rendered_escaped() {
    let evil = "<script>alert(1)</script>";
    let session = portcullis_proto::api::Session {
        id: "s_1\"><script>".into(),
        user_id: "u_1".into(),
        username: evil.into(),
        target_id: "t_1".into(),
        target_name: evil.into(),
        worker_id: "w_1".into(),
        state: "active".into(),
        termination_reason: Some(evil.into()),
        client_addr: "127.0.0.1".into(),
        endpoint: "127.0.0.1:7".into(),
        connection_limit: 1,
        created_at: 1_900_000_000,
        expires_at: 1_900_003_600,
        activated_at: None,
        terminated_at: None,
        connection_count: 0,
        connections: vec![],
    };
    let filters = super::pages::Filters {
        user: evil.into(),
        target: evil.into(),
        zone: evil.into(),
        state: String::new(),
        since: evil.into(),
        until: evil.into(),
    };
    let view = super::pages::SessionsView {
        nav: super::pages::Nav {
            username: evil,
            csrf_token: "\"><script>",
        },
        filters: &filters,
        rows: vec![super::pages::SessionRow {
            session,
            bytes: 0,
            cancel: true,
            decided: crate::store::session_list::Decided {
                source_zone: Some(evil.into()),
                target_zone: Some(evil.into()),
                roles: vec![evil.into()],
            },
        }],
        next: Some(format!("/console/sessions?user={evil}")),
        all_users: true,
        zones: vec![evil.into()],
    };
    let html = super::pages::sessions(&view).into_string();
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let login = super::pages::login(Some(evil), evil, true).into_string();
    assert!(!login.contains("<script"), "{login}");
}
