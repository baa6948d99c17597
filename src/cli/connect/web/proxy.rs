//! One local connection of `connect http`: HTTP/1.1 served to the browser (hyper), each
//! request rewritten ([`super::rewrite`]) and sent over a brokered connection of the session
//! to the target, kept open for the local connection's next requests. An `Upgrade` (a
//! WebSocket: the Proxmox console) that the target accepts is spliced both ways.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, Mutex};

use super::rewrite::Origins;
use super::upstream::{Io, Upstream};
use crate::cli::connect::tunnel::{Refused, SessionTicket};

type Body = BoxBody<Bytes, hyper::Error>;

/// What every local connection shares.
#[derive(Debug)]
pub(super) struct Proxy {
    pub(super) ticket: Arc<SessionTicket>,
    pub(super) upstream: Upstream,
    pub(super) origins: Origins,
    /// Told when the worker refuses in a way that ends the session.
    pub(super) ended: mpsc::Sender<String>,
}

/// The target connection of one local connection, opened at its first request.
type Slot = Arc<Mutex<Option<SendRequest<Incoming>>>>;

impl Proxy {
    /// Serves one local connection (after its TLS, if any) until either side closes it.
    pub(super) async fn serve(self: Arc<Self>, stream: Box<dyn Io>, peer: String) {
        let slot: Slot = Arc::default();
        let service = hyper::service::service_fn(move |request| {
            let (proxy, slot) = (self.clone(), slot.clone());
            async move { Ok::<_, Infallible>(proxy.forward(request, &slot).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
        if let Err(err) = served {
            tracing::debug!(client.addr = %peer, error = %err, "local HTTP connection ended");
        }
    }

    async fn forward(&self, mut request: Request<Incoming>, slot: &Slot) -> Response<Body> {
        self.origins.rewrite_request(request.headers_mut());
        // The target gets the origin form (`/path?query`) whatever the browser sent.
        if let Some(path) = request.uri().path_and_query().cloned() {
            *request.uri_mut() = http::Uri::from(path);
        }
        let upgrade = request.headers().contains_key(http::header::UPGRADE);
        let local_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let mut held = slot.lock().await;
        let reusable = match held.take() {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let mut sender = match reusable {
            Some(sender) => sender,
            None => match self.connect().await {
                Ok(sender) => sender,
                Err(err) => return bad_gateway(&format!("{err:#}")),
            },
        };
        let answered = sender.send_request(request).await;
        if !upgrade {
            *held = Some(sender); // An upgraded connection is the WebSocket's alone.
        }
        drop(held);
        let mut response = match answered {
            Ok(response) => response,
            Err(err) => return bad_gateway(&format!("the target's answer failed: {err}")),
        };
        self.origins.rewrite_response(response.headers_mut());
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(local) = local_upgrade {
                let target = hyper::upgrade::on(&mut response);
                tokio::spawn(splice_upgraded(local, target));
            }
        }
        response.map(|body| body.boxed())
    }

    /// A new brokered connection to the target, HTTP/1.1 on it.
    async fn connect(&self) -> anyhow::Result<SendRequest<Incoming>> {
        let stream = match self.upstream.open(&self.ticket).await {
            Ok(stream) => stream,
            Err(err) => {
                if let Some(refused) = err.downcast_ref::<Refused>() {
                    if refused.ends_session() {
                        let _ = self.ended.try_send(refused.to_string());
                    }
                }
                eprintln!("connection to {}: {err:#}", self.ticket.target);
                return Err(err);
            }
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| anyhow::anyhow!("HTTP with the target failed: {err}"))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "the connection to the target ended");
            }
        });
        Ok(sender)
    }
}

/// Carries an upgraded connection (a WebSocket) both ways once both sides have switched.
async fn splice_upgraded(local: hyper::upgrade::OnUpgrade, target: hyper::upgrade::OnUpgrade) {
    let (local, target) = match tokio::try_join!(local, target) {
        Ok(both) => both,
        Err(err) => {
            tracing::debug!(error = %err, "an upgrade did not complete");
            return;
        }
    };
    let (mut local, mut target) = (TokioIo::new(local), TokioIo::new(target));
    if let Err(err) = tokio::io::copy_bidirectional(&mut local, &mut target).await {
        tracing::debug!(error = %err, "an upgraded connection ended");
    }
}

/// 502 with the reason, for the browser (it holds no secret: the worker's or target's
/// refusal in words).
fn bad_gateway(reason: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!(
        "portcullis connect http: cannot reach the target: {reason}\n"
    )))
    .map_err(|never: Infallible| match never {})
    .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
