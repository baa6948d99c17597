//! The fake's HTTPS server: TLS, HTTP/1.1, and one answer per request from the shared state.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Request as HttpRequest, Response};
use serde_json::Value;

use super::access::{token_of_header, Caller};
use super::guests::{acl_path_of, Reply};
use super::{Answer, Hold, Request, State};

/// Where pveproxy serves the JSON API.
const PREFIX: &str = "/api2/json";

/// The largest request body the fake reads (pve-http-server takes 512 KiB; a little more,
/// so that a test can see what a client sent past that).
const BODY_LIMIT: usize = 1024 * 1024;

/// A response body: whole (`Content-Length`) or in chunks (`Transfer-Encoding: chunked`).
type Body = Either<Full<Bytes>, Chunks>;

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

/// Seconds since the epoch (token expiry, task start times).
pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the token, records the request, and answers it.
async fn answer(state: &Mutex<State>, req: HttpRequest<Incoming>) -> Response<Body> {
    let (head, body) = req.into_parts();
    let full = head
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = full.strip_prefix(PREFIX).unwrap_or(&full).to_owned();
    let method = head.method.to_string();
    let auth = head
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return respond(&Answer::reason_only(413, "request entity too large")),
    };
    let form = form_of(&head.headers, &body);
    let now = now();
    let (caller, delay, reply) = {
        let Ok(mut s) = state.lock() else {
            return respond(&Answer::reason_only(500, "fake state poisoned"));
        };
        let caller = auth
            .as_deref()
            .and_then(token_of_header)
            .and_then(|t| s.access.authenticate(t, &s.token, now));
        let token_id = caller.as_ref().map(|c| c.token_id(&s.token));
        s.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            authorized: caller.is_some(),
            token_id: token_id.clone(),
            authorization: auth.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let reply = match &caller {
            Some(caller) if full.starts_with(PREFIX) => {
                Some(dispatch(&mut s, caller, &method, &path, &form, now))
            }
            _ => None,
        };
        (caller, s.unauthorized_delay, reply)
    };
    if caller.is_none() {
        // pveproxy holds a refused authentication back for 3 s.
        tokio::time::sleep(delay).await;
        let reason = if auth.is_none() {
            "No ticket"
        } else {
            "authentication failure"
        };
        return respond(&Answer::reason_only(401, reason));
    }
    match reply {
        None => respond(&Answer::reason_only(501, "Unsupported format")),
        Some(Dispatched::Reply(Reply::Answer(a))) => respond(&a),
        Some(Dispatched::Reply(Reply::Chunked(chunks))) => respond_chunked(chunks),
        Some(Dispatched::Held(answer)) => respond(&held(state, answer).await),
    }
}

/// What [`dispatch`] decided: a reply now, or a token creation held back by
/// [`State::hold_token_create`] (with the answer it gives once released, if it created
/// the token before the hold).
enum Dispatched {
    Reply(Reply),
    Held(Option<Answer>),
}

/// Waits until the test releases the held token creation, then answers it: the token's
/// answer when it was created before the hold, else 503 (nothing was created).
async fn held(state: &Mutex<State>, answer: Option<Answer>) -> Answer {
    loop {
        let released = state
            .lock()
            .map(|s| s.hold_token_create == Hold::No)
            .unwrap_or(true);
        if released {
            break;
        }
        // The server's own wait for the test's release (not a test waiting on a condition).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answer.unwrap_or_else(|| Answer::reason_only(503, "service unavailable"))
}

/// The answer of an authenticated request under `/api2/json`.
fn dispatch(
    s: &mut State,
    caller: &Caller,
    method: &str,
    path: &str,
    form: &BTreeMap<String, String>,
    now: u64,
) -> Dispatched {
    let reply = |a: Answer| Dispatched::Reply(Reply::Answer(a));
    let bare = strip_query(path);
    let segments: Vec<String> = bare
        .split('/')
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is_get = method == "GET";
    if *caller == Caller::Discovery && !is_get {
        // The discovery token stands for a read-only user's view: nothing but GET is served.
        return reply(Answer::reason_only(405, "Method not allowed"));
    }
    if let ["access", ..] = segments.as_slice() {
        return access(s, caller, method, &segments, form);
    }
    if let Caller::Minted(id) = caller {
        if let Some(acl_path) = acl_path_of(bare, form) {
            if !s.access.may(id, &acl_path) {
                let privilege = if is_get { "VM.Audit" } else { "VM.Allocate" };
                return reply(Answer::with_message(
                    403,
                    &format!("Permission check failed ({acl_path}, {privilege})"),
                ));
            }
        }
    }
    if let ("GET", ["nodes", node, "qemu"]) = (method, segments.as_slice()) {
        if !s.routes.contains_key(bare) {
            return reply(Answer::data(Value::Array(node_qemu(s, node))));
        }
    }
    let user = caller.token_id(&s.token);
    if let Some(r) = s.guests.route(method, bare, form, &user, now) {
        return Dispatched::Reply(r);
    }
    if !is_get {
        return reply(Answer::reason_only(
            501,
            &format!("Method '{method} {PREFIX}{bare}' not implemented"),
        ));
    }
    reply(lookup(s, path).unwrap_or_else(|| {
        Answer::reason_only(501, &format!("Method 'GET {PREFIX}{bare}' not implemented"))
    }))
}

/// `GET /nodes/{node}/qemu`: the node's QEMU guests (the `/cluster/resources` entries and
/// the VMs made through the API) in the list's shape (`vmid`, `name`, `status`, ...).
fn node_qemu(s: &State, node: &str) -> Vec<Value> {
    let made = s
        .guests
        .vms
        .iter()
        .filter(|(_, vm)| vm.node == node)
        .map(|(vmid, vm)| {
            serde_json::json!({
                "vmid": vmid,
                "name": vm.config.get("name").cloned().unwrap_or_else(|| format!("VM {vmid}")),
                "status": if vm.running { "running" } else { "stopped" },
                "qmpstatus": if vm.running { "running" } else { "stopped" },
                "cpus": 1, "maxmem": 2147483648u64, "maxdisk": 0, "uptime": 0,
            })
        });
    s.resources
        .iter()
        .filter(|e| e["type"] == "qemu" && e["node"] == node)
        .map(|e| {
            serde_json::json!({
                "vmid": e["vmid"], "name": e["name"], "status": e["status"],
                "qmpstatus": e["status"], "cpus": e["maxcpu"], "maxmem": e["maxmem"],
                "maxdisk": e["maxdisk"], "uptime": e["uptime"],
                "template": e["template"], "tags": e.get("tags").cloned().unwrap_or(Value::Null),
            })
        })
        .chain(made)
        .collect()
}

/// `/access/...`: tokens and the ACL. Writes need the management credential; a minted token
/// holds no `User.Modify` or `Permissions.Modify` (refused 403 as Proxmox does).
fn access(
    s: &mut State,
    caller: &Caller,
    method: &str,
    segments: &[&str],
    form: &BTreeMap<String, String>,
) -> Dispatched {
    let reply = |a: Answer| Dispatched::Reply(Reply::Answer(a));
    let manager = matches!(caller, Caller::Manager(_));
    if method != "GET" && !manager {
        let path = format!("/{}", segments.join("/"));
        return reply(Answer::with_message(
            403,
            &format!("Permission check failed ({path}, User.Modify)"),
        ));
    }
    match (method, segments) {
        ("POST", ["access", "users", userid, "token", name]) => match s.hold_token_create {
            Hold::No => reply(s.access.create_token(userid, name, form, new_secret())),
            Hold::Stall => {
                s.held += 1;
                Dispatched::Held(None)
            }
            Hold::AfterCreating => {
                let created = s.access.create_token(userid, name, form, new_secret());
                s.held += 1;
                Dispatched::Held(Some(created))
            }
        },
        ("GET", ["access", "users", userid, "token", name]) => {
            reply(s.access.read_token(userid, name))
        }
        ("GET", ["access", "users", userid, "token"]) => reply(s.access.list_tokens(userid)),
        ("DELETE", ["access", "users", userid, "token", name]) => {
            reply(s.access.delete_token(userid, name))
        }
        ("GET", ["access", "acl"]) => reply(s.access.list_acl()),
        ("PUT", ["access", "acl"]) => reply(s.access.put_acl(form)),
        _ => reply(Answer::reason_only(
            501,
            &format!(
                "Method '{method} {PREFIX}/{}' not implemented",
                segments.join("/")
            ),
        )),
    }
}

/// A new token secret: a random UUID (version 4), as Proxmox makes them.
fn new_secret() -> String {
    let mut b = portcullis_crypto::random::bytes::<16>().unwrap_or([7; 16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The request's parameters: the form body (`application/x-www-form-urlencoded`, what
/// proxmoxer, Go's and reqwest's form clients send), a JSON object body, and the query.
fn form_of(headers: &hyper::HeaderMap, body: &[u8]) -> BTreeMap<String, String> {
    let content_type = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut form: BTreeMap<String, String> = BTreeMap::new();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                form.insert(k, text);
            }
        }
    } else {
        form.extend(url::form_urlencoded::parse(body).into_owned());
    }
    form
}

/// Decodes `%XX` in a path segment (`svc%40pve` is `svc@pve`); anything malformed stays.
pub(crate) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
        // The VMs made through the API are guests too.
        let made: Vec<Value> = s
            .guests
            .vms
            .iter()
            .map(|(vmid, vm)| {
                let name = vm
                    .config
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| format!("VM {vmid}"));
                let status = if vm.running { "running" } else { "stopped" };
                super::cluster::guest_entry("qemu", *vmid, &name, &vm.node, status, None, None)
            })
            .collect();
        let entries: Vec<Value> = s
            .resources
            .iter()
            .chain(made.iter())
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

fn respond(answer: &Answer) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(answer.body.clone()))));
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

/// 200 with `chunks` as the body: no length is known ahead, so hyper sends it chunked.
fn respond_chunked(chunks: Vec<String>) -> Response<Body> {
    let mut response = Response::new(Either::Right(Chunks(
        chunks.into_iter().map(Bytes::from).collect(),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

/// A body of several frames whose size is not told ahead.
pub(crate) struct Chunks(VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}
