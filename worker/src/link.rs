//! The worker's end of the cluster link: dial a controller (trying each configured address),
//! say hello, heartbeat, send spooled events and admission requests, and obey session ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::link::{self, Frame, Hello, Request, Response};
use rustls::pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::Shared;

struct Outgoing {
    body: Request,
    reply: oneshot::Sender<Response>,
}

/// The live links to controllers, and requests sent on them: on the newest link, or an
/// older one when the newest is closing; fails fast when none is up.
///
/// Several controllers may hold links at once (each dials an outbound-only worker). A link
/// is registered only after its controller authenticated and answered the hello; only a newer
/// link from the same controller replaces it (the older one is told to close), and a link that
/// ends removes itself and nothing else.
#[derive(Default)]
pub struct LinkClient {
    links: Mutex<Vec<LiveLink>>,
    next_id: AtomicU64,
}

struct LiveLink {
    id: u64,
    controller: String,
    sender: mpsc::Sender<Outgoing>,
    replaced: CancellationToken,
}

/// A link's place in the [`LinkClient`]; dropping it removes the link.
pub struct Registration<'a> {
    client: &'a LinkClient,
    id: u64,
    /// Fires when a newer link from the same controller took this one's place.
    pub replaced: CancellationToken,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.client.with(|links| links.retain(|l| l.id != self.id));
    }
}

impl LinkClient {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<LiveLink>) -> T) -> T {
        let mut guard = match self.links.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    pub async fn request(&self, body: Request, timeout: Duration) -> Result<Response, String> {
        let senders: Vec<_> =
            self.with(|links| links.iter().rev().map(|l| l.sender.clone()).collect());
        let mut body = Some(body);
        for sender in senders {
            let (reply, answer) = oneshot::channel();
            let Some(next) = body.take() else { break };
            match sender.send(Outgoing { body: next, reply }).await {
                Ok(()) => {
                    return tokio::time::timeout(timeout, answer)
                        .await
                        .map_err(|_| "the controller did not answer in time".to_string())?
                        .map_err(|_| "the controller link closed".to_string());
                }
                // That link is closing: try the next one.
                Err(mpsc::error::SendError(outgoing)) => body = Some(outgoing.body),
            }
        }
        Err("no controller link".to_string())
    }

    /// Registers an authenticated link to `controller`, replacing an older link to the same
    /// controller.
    fn register(&self, controller: &str, sender: mpsc::Sender<Outgoing>) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        self.with(|links| {
            links.retain(|l| {
                let same = l.controller == controller;
                if same {
                    l.replaced.cancel();
                }
                !same
            });
            links.push(LiveLink {
                id,
                controller: controller.to_owned(),
                sender,
                replaced: replaced.clone(),
            });
        });
        Registration {
            client: self,
            id,
            replaced,
        }
    }
}

enum Pending {
    External(oneshot::Sender<Response>),
    Heartbeat,
    Events,
    Renewal,
}

fn client_config(shared: &Shared) -> Result<Arc<rustls::ClientConfig>, String> {
    let identity = shared.identity.clone();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(identity.ca_der().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut config =
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![rustls::pki_types::CertificateDer::from_pem_slice(
                    shared.certs.pem().as_bytes(),
                )
                .map_err(|e| e.to_string())?],
                identity.key_der(),
            )
            .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![link::ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Keeps a link up until `shutdown`, failing over between controllers.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    if shared.config.controllers.is_empty() {
        // Outbound-only control plane: controllers dial this worker (see `inbound`).
        return;
    }
    let mut backoff = Duration::from_millis(200);
    let mut index = 0usize;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let addr = shared.config.controllers[index % shared.config.controllers.len()].clone();
        index += 1;
        match session(&shared, &addr, &shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(controller.addr = %addr, error = %portcullis_proto::text::escaped(&err), "controller link down; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Any byte stream a link runs over: TLS the worker dialled, or TLS a controller dialled.
pub trait LinkIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> LinkIo for T {}

type Stream<S> = Framed<S, tokio_util::codec::LengthDelimitedCodec>;

async fn send<S: LinkIo>(stream: &mut Stream<S>, frame: &Frame) -> Result<(), String> {
    stream
        .send(link::encode(frame).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())
}

async fn session(
    shared: &Arc<Shared>,
    addr: &str,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(shared)?);
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(link::CONTROLLER_SERVER_NAME).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    // One link at a time in this direction: the address names the controller.
    drive(shared, tls, addr, addr, shutdown).await
}

/// Runs the link protocol (hello, heartbeats, events, requests both ways) over a stream,
/// whichever side dialled. The caller has authenticated the controller; `controller` names
/// it (a newer link with the same name replaces this one), `addr` is for the log.
pub async fn drive<S: LinkIo>(
    shared: &Arc<Shared>,
    io: S,
    controller: &str,
    addr: &str,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut stream = Framed::new(io, link::codec());
    let hello = Hello {
        protocol_version: portcullis_proto::PROTOCOL_VERSION,
        worker_id: shared.identity.worker_id.clone(),
        proxy_addr: shared.proxy_addr.clone(),
        live_sessions: shared.table.live(),
    };
    send(
        &mut stream,
        &Frame::Request {
            id: 1,
            body: Request::Hello(hello),
        },
    )
    .await?;
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .map_err(|_| "no answer to hello".to_string())?
        .ok_or("closed after hello")?
        .map_err(|e| e.to_string())?;
    let mut heartbeat = match link::decode(&first).map_err(|e| e.to_string())? {
        Frame::Response {
            body: Response::Sync(sync),
            ..
        } => {
            let every = Duration::from_millis(sync.heartbeat_ms.clamp(100, 60_000));
            apply_sync(shared, sync);
            tokio::time::interval(every)
        }
        Frame::Response {
            body: Response::Error { message },
            ..
        } => return Err(format!("hello refused: {message}")),
        _ => return Err("unexpected answer to hello".into()),
    };
    tracing::info!(controller.addr = %addr, "linked to controller");
    let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
    let registration = shared.link.register(controller, tx);
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_id: u64 = 3;
    let mut events_in_flight = false;
    let mut renewal_in_flight = false;
    let mut flush = tokio::time::interval(Duration::from_millis(100));
    let silence = Duration::from_secs(10);
    let mut last_frame = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                flush_events(shared, &mut stream).await;
                return Ok(());
            }
            _ = registration.replaced.cancelled() => {
                return Err("a newer link from the same controller replaced this one".into());
            }
            _ = heartbeat.tick() => {
                if last_frame.elapsed() > silence {
                    return Err("the controller went silent".into());
                }
                if !renewal_in_flight && shared.certs.renewal_due(shared.clock.unix_secs()) {
                    let id = next_id; next_id += 2;
                    pending.insert(id, Pending::Renewal);
                    renewal_in_flight = true;
                    send(&mut stream, &Frame::Request { id, body: Request::RenewCertificate }).await?;
                }
                let id = next_id; next_id += 2;
                pending.insert(id, Pending::Heartbeat);
                send(&mut stream, &Frame::Request { id, body: Request::Heartbeat { live_sessions: shared.table.live() } }).await?;
            }
            _ = flush.tick(), if !events_in_flight && !shared.spool.is_empty() => {
                let id = next_id; next_id += 2;
                pending.insert(id, Pending::Events);
                events_in_flight = true;
                send(&mut stream, &Frame::Request { id, body: Request::Events { events: shared.spool.pending(500) } }).await?;
            }
            outgoing = rx.recv() => {
                let Some(Outgoing { body, reply }) = outgoing else { return Err("link sender dropped".into()) };
                let id = next_id; next_id += 2;
                pending.insert(id, Pending::External(reply));
                send(&mut stream, &Frame::Request { id, body }).await?;
            }
            frame = stream.next() => {
                let bytes = frame.ok_or("the controller closed the link")?.map_err(|e| e.to_string())?;
                last_frame = tokio::time::Instant::now();
                match link::decode(&bytes).map_err(|e| format!("malformed frame: {e}"))? {
                    Frame::Response { id, body } => match (pending.remove(&id), body) {
                        (Some(Pending::Heartbeat), Response::Sync(sync)) => apply_sync(shared, sync),
                        (Some(Pending::Heartbeat), other) => tracing::warn!(?other, "heartbeat refused"),
                        (Some(Pending::Events), Response::EventsAck { event_ids }) => {
                            shared.spool.ack(&event_ids);
                            events_in_flight = false;
                        }
                        (Some(Pending::Events), _) => events_in_flight = false,
                        (Some(Pending::Renewal), Response::Certificate { cert_pem, expires_at }) => {
                            match shared.certs.replace(cert_pem, expires_at, shared.clock.unix_secs()) {
                                Ok(()) => tracing::info!(expires_at, "certificate renewed"),
                                Err(err) => tracing::warn!(error = %err, "could not install the renewed certificate"),
                            }
                            renewal_in_flight = false;
                        }
                        (Some(Pending::Renewal), other) => {
                            tracing::warn!(?other, "certificate renewal refused; retrying at the next heartbeat");
                            renewal_in_flight = false;
                        }
                        (Some(Pending::External(reply)), body) => { let _ = reply.send(body); }
                        (None, _) => {}
                    },
                    Frame::Request { id, body } => {
                        let answer = match body {
                            Request::EndSession(end) => {
                                shared.table.end(&end.session_id, end.reason);
                                Response::Ok
                            }
                            Request::Ping => Response::Ok,
                            _ => Response::Error { message: "workers do not serve this request".into() },
                        };
                        send(&mut stream, &Frame::Response { id, body: answer }).await?;
                    }
                }
            }
        }
    }
}

fn apply_sync(shared: &Shared, sync: link::Sync) {
    shared.table.heard(sync.grant_keys);
    for end in sync.ended {
        shared.table.end(&end.session_id, end.reason);
    }
}

/// Best effort on shutdown: send what is spooled (it stays on disk if unacknowledged).
async fn flush_events<S: LinkIo>(shared: &Shared, stream: &mut Stream<S>) {
    if shared.spool.is_empty() {
        return;
    }
    let events = shared.spool.pending(500);
    if send(
        stream,
        &Frame::Request {
            id: u64::MAX,
            body: Request::Events { events },
        },
    )
    .await
    .is_err()
    {
        return;
    }
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            frame = stream.next() => {
                let Some(Ok(bytes)) = frame else { return };
                if let Ok(Frame::Response { id: u64::MAX, body: Response::EventsAck { event_ids } }) = link::decode(&bytes) {
                    shared.spool.ack(&event_ids);
                    return;
                }
            }
        }
    }
}
