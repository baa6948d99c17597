//! The worker's side of an injecting Proxmox API session's connection: an HTTP/1.1 server
//! (keep-alive, `Expect: 100-continue` answered by hyper) on the client's stream, where every
//! request is checked ([`super::vet`]), its body read whole (at most [`super::MAX_BODY`],
//! 413 past it, chunked or not) and sent upstream with a `Content-Length`, and the answer
//! streamed back as it comes. Each exchange leaves an [`ApiRequest`] connection event in the
//! spool, `<connection id>:req:<n>`, written in turn with others (group commit) rather than
//! waited for one by one; the connection's opened and closed events are the proxy's.
//!
//! What the client gets when the proxy answers itself: the refusal's status and sentence
//! (and the connection closes, since the body may not have been read); 502 with a sentence
//! when the controller does not hand over the session's credential or Proxmox cannot be
//! reached.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind, EndReason};
use portcullis_proto::pve::{ApiRequest, PveClaims};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::credential::{Asking, Slot};
use super::frames::{Scanned, Verdicts};
use super::upstream::Checkout;
use super::{
    check_local_secret, record_line, vet, Framing, LocalSecret, Refusal, RefusalCode, Rules,
    MAX_BODY,
};
use crate::Shared;

/// An admitted connection of an injecting session.
pub(crate) struct Connection {
    pub(crate) session_id: String,
    pub(crate) connection_id: String,
    /// The grant as the client sent it: the controller verifies it again when asked for
    /// the credential.
    pub(crate) grant: String,
    pub(crate) claims: PveClaims,
    /// The grant's vetted endpoint.
    pub(crate) endpoint: SocketAddr,
}

/// What a served connection carried (body bytes), and why it closed.
pub(crate) struct Served {
    pub(crate) up: u64,
    pub(crate) down: u64,
    pub(crate) why: EndReason,
}

/// Serves HTTP on `client` until it closes, or the session ends (its reason), the drain
/// times out (`shutdown`) or no controller was heard for the live grace
/// (`controller_unreachable`). `spare` is a TCP connection to the endpoint the proxy dialled
/// while admitting: the first request that needs a new upstream connection uses it.
pub(crate) async fn serve<S>(
    shared: &Arc<Shared>,
    client: S,
    spare: Option<TcpStream>,
    connection: Connection,
) -> Served
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ending = shared.table.ending(&connection.session_id);
    let isolated = shared.table.isolation_token();
    let verdicts = Arc::new(Verdicts::default());
    let client = Scanned::new(client, verdicts.clone());
    let exchanges = Arc::new(Exchanges {
        verdicts,
        slot: shared.pve.slot(shared, &connection.session_id),
        shared: shared.clone(),
        local: connection
            .claims
            .lsh
            .as_deref()
            .map(|lsh| LocalSecret::from_sha256_hex(lsh).map_err(|e| e.to_string())),
        connection,
        spare: std::sync::Mutex::new(spare),
        requests: AtomicU64::new(0),
        totals: Arc::default(),
    });
    let service = {
        let exchanges = exchanges.clone();
        hyper::service::service_fn(move |request| {
            let exchanges = exchanges.clone();
            async move { Ok::<_, Infallible>(exchanges.exchange(request).await) }
        })
    };
    let http = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(client), service);
    let why = tokio::select! {
        served = http => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "the client's HTTP connection ended with an error");
            }
            EndReason::Closed
        }
        _ = ending.ended() => ending.reason(),
        _ = shared.hard_stop.cancelled() => EndReason::Shutdown,
        _ = isolated.cancelled() => EndReason::ControllerUnreachable,
    };
    Served {
        up: exchanges.totals.up.load(Ordering::Relaxed),
        down: exchanges.totals.down.load(Ordering::Relaxed),
        why,
    }
}

/// Body bytes each way, summed over a connection's exchanges.
#[derive(Default)]
struct Totals {
    up: AtomicU64,
    down: AtomicU64,
}

/// One connection's state, shared by its requests (served one after the other).
struct Exchanges {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    /// The framing verdict on each raw request head, in order.
    verdicts: Arc<Verdicts>,
    connection: Connection,
    /// The local listener's secret, when the grant names one (an error: a malformed one).
    local: Option<Result<LocalSecret, String>>,
    spare: std::sync::Mutex<Option<TcpStream>>,
    requests: AtomicU64,
    totals: Arc<Totals>,
}

impl Exchanges {
    async fn exchange(&self, request: Request<Incoming>) -> Response<Tracked> {
        let (head, body) = request.into_parts();
        let mut record = self.pending(&head);
        // Taken for every request, to stay in step with the heads.
        let framing = self.verdicts.next();
        // The local secret first: a local stranger costs no credential fetch.
        match &self.local {
            Some(Ok(secret)) => {
                if let Err(refusal) = check_local_secret(&head.headers, secret) {
                    return refuse(record, refusal);
                }
            }
            Some(Err(sentence)) => {
                return answer(record, StatusCode::BAD_GATEWAY, sentence.clone(), None)
            }
            None => {}
        }
        if let Err(refusal) = framing {
            return refuse(record, refusal);
        }
        let asking = Asking {
            grant: &self.connection.grant,
            endpoint: self.connection.endpoint,
        };
        let ready = match self.slot.ready(&self.shared, &asking).await {
            Ok(ready) => ready,
            Err(sentence) => {
                tracing::warn!(reason = %sentence, "no Proxmox credential for the session");
                return answer(record, StatusCode::BAD_GATEWAY, sentence, None);
            }
        };
        let claims = &self.connection.claims;
        if ready.token_id != claims.tok {
            let sentence = format!(
                "the controller handed over the Proxmox token {:?} for a grant naming {:?}: end the session and start another",
                ready.token_id, claims.tok
            );
            return answer(record, StatusCode::BAD_GATEWAY, sentence, None);
        }
        let rules = Rules {
            allow_access_writes: claims.aw,
            max_body: MAX_BODY,
            local_secret: self.local.as_ref().and_then(|l| l.as_ref().ok()).cloned(),
            upstream: ready.upstream.clone(),
        };
        let vetted = match vet(&head, &rules) {
            Ok(vetted) => vetted,
            Err(refusal) => return refuse(record, refusal),
        };
        let body = match vetted.framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(_) | Framing::Chunked => {
                let max = usize::try_from(rules.max_body).unwrap_or(usize::MAX);
                match Limited::new(body, max).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                        let refusal = Refusal::new(
                            RefusalCode::BodyTooLarge,
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the request body is over this proxy's limit of {max} bytes: the Proxmox API takes up to 512 KiB"),
                        );
                        return refuse(record, refusal);
                    }
                    Err(e) => {
                        let sentence = format!("the request body could not be read: {e}");
                        return answer(record, StatusCode::BAD_REQUEST, sentence, None);
                    }
                }
            }
        };
        record.bytes_up = body.len() as u64;
        // Upstream the body always goes with its length: read whole, it has one.
        let mut headers = vetted.headers;
        headers.remove(header::TRANSFER_ENCODING);
        if vetted.framing != Framing::Empty {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let (method, path) = (vetted.method, vetted.path_and_query);
        let make = || {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = http::Uri::from(path.clone());
            *request.headers_mut() = headers.clone();
            request
        };
        // The spare serves the connection's first request, if it needs a new connection.
        let mut spare = self.take_spare();
        let sent = ready.connector.send(make, &mut spare).await;
        match sent {
            Ok((response, checkout)) => {
                let (mut parts, body) = response.into_parts();
                for name in HOP_BY_HOP {
                    parts.headers.remove(name);
                }
                record.status = parts.status;
                Response::from_parts(parts, Tracked::upstream(body, record, checkout))
            }
            Err(unreachable) => {
                tracing::warn!(reason = %unreachable, "the Proxmox API did not answer");
                answer(record, StatusCode::BAD_GATEWAY, unreachable.0, None)
            }
        }
    }

    fn pending(&self, head: &http::request::Parts) -> Pending {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        Pending {
            shared: self.shared.clone(),
            totals: self.totals.clone(),
            session_id: self.connection.session_id.clone(),
            event_id: format!("{}:req:{n}", self.connection.connection_id),
            connection_id: self.connection.connection_id.clone(),
            method: head.method.clone(),
            target: head.uri.to_string(),
            started: Instant::now(),
            status: StatusCode::BAD_GATEWAY,
            bytes_up: 0,
            bytes_down: 0,
            refused: None,
        }
    }

    fn take_spare(&self) -> Option<TcpStream> {
        match self.spare.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

/// Response headers that belong to the upstream connection, not to the client's (hyper
/// frames the body for the client itself).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
];

/// The proxy's refusal of a request: its status and sentence, recorded with its rule.
fn refuse(record: Pending, refusal: Refusal) -> Response<Tracked> {
    tracing::info!(
        code = refusal.code.as_str(),
        status = refusal.status.as_u16(),
        "request refused"
    );
    answer(record, refusal.status, refusal.message, Some(refusal.code))
}

/// An answer of the proxy's own, with `Connection: close` (the request's body may be unread).
fn answer(
    mut record: Pending,
    status: StatusCode,
    sentence: String,
    refused: Option<RefusalCode>,
) -> Response<Tracked> {
    record.status = status;
    record.refused = refused;
    let body = Bytes::from(format!("{sentence}\n"));
    let mut response = Response::new(Tracked {
        inner: Inner::Local(Some(body)),
        record: Some(record),
        checkout: None,
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// An exchange whose record is not written yet: it is once the response body ends (or is
/// dropped, cut short).
struct Pending {
    shared: Arc<Shared>,
    totals: Arc<Totals>,
    session_id: String,
    connection_id: String,
    event_id: String,
    method: Method,
    /// The request target as the client sent it (query values are redacted in the record).
    target: String,
    started: Instant,
    status: StatusCode,
    bytes_up: u64,
    bytes_down: u64,
    refused: Option<RefusalCode>,
}

impl Pending {
    fn write(self) {
        let line = record_line(
            &self.method,
            &self.target,
            self.status,
            self.bytes_up,
            self.bytes_down,
        );
        self.totals.up.fetch_add(self.bytes_up, Ordering::Relaxed);
        self.totals
            .down
            .fetch_add(self.bytes_down, Ordering::Relaxed);
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(method = %line.method, path = %line.path, status = line.status, millis, "request");
        let event = ConnectionEvent {
            event_id: self.event_id,
            session_id: self.session_id,
            connection_id: self.connection_id,
            at: self.shared.clock.unix_secs(),
            kind: ConnectionEventKind::ApiRequest(ApiRequest {
                method: line.method,
                path: line.path,
                status: line.status,
                bytes_up: line.bytes_in,
                bytes_down: line.bytes_out,
                millis,
                refused: self.refused.map(|code| code.as_str().to_owned()),
            }),
        };
        self.shared.spool.add_without_waiting(event);
    }
}

/// A response body on its way to the client, counted; at its end the exchange is recorded
/// and the upstream connection goes back to the pool.
pub(crate) struct Tracked {
    inner: Inner,
    record: Option<Pending>,
    checkout: Option<Checkout>,
}

enum Inner {
    Local(Option<Bytes>),
    Upstream(Incoming),
}

impl Tracked {
    fn upstream(body: Incoming, record: Pending, checkout: Checkout) -> Tracked {
        Tracked {
            inner: Inner::Upstream(body),
            record: Some(record),
            checkout: Some(checkout),
        }
    }

    /// Records the exchange; the upstream connection is kept if its response was read
    /// whole (`whole`).
    fn finish(&mut self, whole: bool) {
        if let Some(record) = self.record.take() {
            record.write();
        }
        if let Some(checkout) = self.checkout.take() {
            if whole {
                checkout.give_back();
            }
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    record.bytes_down += data.len() as u64;
                }
                if this.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Local(bytes) => bytes.is_none(),
            Inner::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Local(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
            Inner::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A body hyper did not poll to its end (a HEAD, a 204) may still be whole.
        let whole = self.is_end_stream();
        self.finish(whole);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
