//! The fake's HTTPS server: TLS, HTTP/1.1, and one answer per request from the shared state.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request as HttpRequest, Response};
use serde_json::Value;

use super::{Answer, Request, State};

/// Where pveproxy serves the JSON API.
const PREFIX: &str = "/api2/json";

/// Accepts connections until the task is aborted; the connections are the task's too, so an
/// abort closes them as well. During an outage each connection is closed at once.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    state: Arc<Mutex<State>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                if state.lock().map(|s| s.outage).unwrap_or(true) {
                    drop(tcp);
                    continue;
                }
                let (tls, state) = (tls.clone(), state.clone());
                connections.spawn(async move {
                    let Ok(stream) = tls.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reaps finished connections (the set would otherwise keep them all).
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Checks the method and the token, records the request, and answers it.
async fn answer<B>(state: &Mutex<State>, req: HttpRequest<B>) -> Response<Full<Bytes>> {
    let full = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = full.strip_prefix(PREFIX).unwrap_or(&full).to_owned();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (authorized, delay, found) = {
        let Ok(mut s) = state.lock() else {
            return respond(&Answer::reason_only(500, "fake state poisoned"));
        };
        let authorized = auth.as_deref().is_some_and(|a| token_matches(a, &s.token));
        s.requests.push(Request {
            method: req.method().to_string(),
            path: path.clone(),
            authorized,
        });
        let found = lookup(&s, &path);
        (authorized, s.unauthorized_delay, found)
    };
    if req.method() != hyper::Method::GET {
        // The fake stands for a read-only discovery user's view: nothing but GET is served.
        return respond(&Answer::reason_only(405, "Method not allowed"));
    }
    if !authorized {
        // pveproxy holds a refused authentication back for 3 s.
        tokio::time::sleep(delay).await;
        let reason = if auth.is_none() {
            "No ticket"
        } else {
            "authentication failure"
        };
        return respond(&Answer::reason_only(401, reason));
    }
    if !full.starts_with(PREFIX) {
        return respond(&Answer::reason_only(501, "Unsupported format"));
    }
    respond(&found.unwrap_or_else(|| {
        Answer::reason_only(
            501,
            &format!(
                "Method 'GET {PREFIX}{}' not implemented",
                strip_query(&path)
            ),
        )
    }))
}

/// `PVEAPIToken=USER@REALM!ID=SECRET`; pve-http-server also takes a space for the first `=`.
fn token_matches(header: &str, token: &str) -> bool {
    let given = header
        .strip_prefix("PVEAPIToken=")
        .or_else(|| header.strip_prefix("PVEAPIToken "));
    given.is_some_and(|g| g.as_bytes() == token.as_bytes())
}

fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The answer for `path`: a route for the exact path, else `/cluster/resources` made from
/// the resources, else a route for the path without its query.
fn lookup(s: &State, path: &str) -> Option<Answer> {
    if let Some(a) = s.routes.get(path) {
        return Some(a.clone());
    }
    let bare = strip_query(path);
    if bare == "/cluster/resources" {
        let wanted = path
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("type=")));
        let entries: Vec<Value> = s
            .resources
            .iter()
            .filter(|e| match (wanted, e["type"].as_str()) {
                (None, _) => true,
                // `type=vm` is qemu and lxc both.
                (Some("vm"), Some(t)) => t == "qemu" || t == "lxc",
                (Some(w), Some(t)) => w == t,
                (Some(_), None) => false,
            })
            .cloned()
            .collect();
        return Some(Answer::data(Value::Array(entries)));
    }
    s.routes.get(bare).cloned()
}

fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body.clone())));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Some(reason) = &answer.reason {
        if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes()) {
            response.extensions_mut().insert(phrase);
        }
    }
    response
}
