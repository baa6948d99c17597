//! The daemons' ops listener: `/metrics` (Prometheus), `/health` (the process answers) and
//! `/ready` (the controller's store answers and its keys load; the worker is linked to a
//! controller), over plain HTTP/1.1, on loopback unless `[ops] listen` says otherwise
//! (docs/deploy.md "Monitoring"). Nothing here takes a request body or a query: the
//! listener reveals counts and states, never an identity or a secret.

mod exposition;
pub(crate) mod notify;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use portcullis_net::accept::Acceptor;
use portcullis_net::ops::OpsListen;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the ops listener asks its daemon.
#[derive(Clone)]
pub(crate) enum Probe {
    Controller(Box<portcullis_controller::metrics::Probe>),
    Worker(portcullis_worker::metrics::Probe),
}

impl Probe {
    async fn metrics(&self) -> String {
        match self {
            Probe::Controller(p) => p.metrics().await,
            Probe::Worker(p) => p.metrics(),
        }
    }

    async fn ready(&self) -> Result<(), String> {
        match self {
            Probe::Controller(p) => p.ready().await.map_err(|e| e.to_string()),
            Probe::Worker(p) => p.ready().map_err(|e| e.to_string()),
        }
    }
}

/// Binds the ops listener as configured: `None` when it is off, or when the default port is
/// taken (logged; the daemon runs on without it). A configured address that cannot be bound
/// is an error naming the key.
pub(crate) async fn bind(listen: OpsListen) -> anyhow::Result<Option<TcpListener>> {
    match listen {
        OpsListen::Off => Ok(None),
        OpsListen::Configured(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .with_context(|| format!("cannot listen on ops.listen {addr}; choose another port in [ops] listen or set listen = \"\"")),
        OpsListen::Default(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Ok(Some(listener)),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "the ops listener's default address is taken: running without /metrics, /health and /ready; set [ops] listen to another address");
                Ok(None)
            }
        },
    }
}

/// Connections the ops listener serves at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
/// A request head must arrive within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the ops listener until `shutdown`.
pub(crate) async fn serve(listener: TcpListener, probe: Probe, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut accepting = Acceptor::new("ops");
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = shutdown.cancelled() => return,
        };
        let Ok(slot) = slot else {
            return;
        };
        let Some((stream, _peer)) = accepting.next_until(|| listener.accept(), &shutdown).await
        else {
            return;
        };
        let probe = probe.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let probe = probe.clone();
                async move { Ok::<_, Infallible>(answer(&probe, &request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// The answer to one request.
async fn answer<B>(probe: &Probe, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" => match probe.ready().await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            let openmetrics = probe.metrics().await;
            let accept = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let (body, content_type) = exposition::negotiate(&openmetrics, accept);
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the ops listener serves /metrics, /health and /ready\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The bound address for the readiness line, or JSON null when there is no listener.
pub(crate) fn address(listener: &Option<TcpListener>) -> serde_json::Value {
    listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or(serde_json::Value::Null, |a: SocketAddr| {
            serde_json::Value::String(a.to_string())
        })
}
