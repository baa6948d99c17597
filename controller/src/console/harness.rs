//! A console client through the router without a socket, for the page modules' tests
//! (policy, targets, workers, recordings): a controller on a manual clock, local users with TOTP logged
//! in through the console form, GETs and same-origin form POSTs with the session cookie, and
//! the audit events an action committed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use tower::ServiceExt as _;

use crate::api::extract::PeerAddr;
use crate::api::local_login::tests::{start_with, Fixture, Kind, LOCAL, NEW_PASSWORD, PASSWORD};

pub(crate) const HOST: &str = "ctl.test:8443";
pub(crate) const ORIGIN: &str = "https://ctl.test:8443";

pub(crate) struct Client {
    pub f: Fixture,
}

/// What a response held.
pub(crate) struct Got {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Got {
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    /// The CSRF token of the page's forms.
    pub(crate) fn csrf(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker).expect("a form with a CSRF token") + marker.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_owned()
    }
}

impl Client {
    /// A controller with `policy`, local users on.
    pub(crate) async fn start(policy: &str) -> Client {
        Client {
            f: start_with(policy, LOCAL).await,
        }
    }

    pub(crate) async fn send(&self, mut request: Request<Body>) -> Got {
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let response = self.f.api.router.clone().oneshot(request).await.unwrap();
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

    pub(crate) async fn get(&self, path: &str, cookie: &str) -> Got {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, HOST)
            .header(
                header::COOKIE,
                format!("{}={cookie}", super::session::COOKIE),
            );
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A GET without a console session (a stranger, or a browser that logged out).
    pub(crate) async fn get_anonymous(&self, path: &str) -> Got {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, HOST);
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// A browser's same-origin form POST of `fields`, with `cookie` if any.
    pub(crate) async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Got {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("origin", ORIGIN)
            .header("sec-fetch-site", "same-origin");
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

    /// Makes local user `name` in `groups`, enrols its TOTP and logs it in through the
    /// console form: the session cookie's value.
    pub(crate) async fn logged_in(&self, name: &str, groups: &[&str]) -> String {
        self.f.user_in(name, Kind::OneTime, groups).await;
        let (secret, _) = self.f.enrol(name, PASSWORD).await;
        // The enrolment used this step's code: the login takes the next step's.
        self.f.clock.advance(Duration::from_secs(30));
        let code = self.f.code(&secret, 0);
        let got = self
            .post(
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
        let cookie = got
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap();
        cookie
            .strip_prefix("__Host-portcullis-console=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// The audit event types `action` committed.
    pub(crate) async fn events(
        &self,
        action: impl std::future::Future<Output = Got>,
    ) -> (Got, Vec<String>) {
        self.f.api.audited(action).await
    }

    /// The body (JSON) of the newest audit event.
    pub(crate) async fn last_event(&self) -> serde_json::Value {
        let mut conn = self.f.api.state.store.conn().await.unwrap();
        let events =
            crate::store::audit::list(&mut conn, &crate::store::audit::Filter::default(), 1)
                .await
                .unwrap();
        serde_json::from_str(&events[0].body).unwrap()
    }
}

/// A live session of dev-login user `uma` (group `users`) to a new target `web` (made with
/// an admin's token), through a live worker: the worker's id and the session's.
pub(crate) async fn live_session(api: &crate::api::tests::Api) -> (String, String) {
    let admin = api.login("root", &["admins"]).await;
    let worker = api.live_worker().await;
    let (status, body) = api
        .create_target(
            &admin,
            serde_json::json!({"name": "web", "address": "127.0.0.1:7", "zone": "LOCAL", "service": "echo"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uma = api.login("uma", &["users"]).await;
    let (status, auth) = api
        .call(
            Method::POST,
            "/v1/targets/web/authorize-session",
            Some(&uma),
            Some(crate::api::tests::client_key()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{auth}");
    (worker, auth["session_id"].as_str().unwrap().to_owned())
}
