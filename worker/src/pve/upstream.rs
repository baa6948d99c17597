//! The HTTPS side of a session's Proxmox API proxy: TLS to the grant's vetted endpoint (an
//! IP and port, never a name) with the credential's server name as SNI, the certificate
//! checked against the cluster's CA or its pinned SHA-256; and a small keep-alive pool of
//! HTTP/1.1 connections per session, so that a tool polling a task's status reuses one
//! connection rather than paying a TCP and TLS handshake per request.
//!
//! A connection goes back to the pool only once its response body has been read to the end
//! (the caller hands back its [`Checkout`]); one whose response was cut short is dropped.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use portcullis_crypto::tls::verify::PinnedCertificate;
use portcullis_proto::pve::Credential;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tracing::Instrument as _;

/// Idle connections kept per session: more than a tool opens in parallel.
const MAX_IDLE: usize = 32;

/// How long an idle connection is kept: less than servers usually keep an idle keep-alive
/// connection open, so that a request rarely meets a connection the server is closing.
const IDLE_FOR: Duration = Duration::from_secs(3);

/// How long the TLS handshake with Proxmox may take (the TCP connect has its own 10 s).
const TLS_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body type sent upstream: bodies are read whole first (at most 512 KiB).
pub(crate) type Body = Full<Bytes>;

/// Why the worker cannot set up the session's upstream from the controller's credential.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("the credential names neither a CA nor a certificate fingerprint for Proxmox (or both): check the cluster's ca_file or fingerprint in the controller's config")]
    NoTrust,
    #[error("the cluster's CA is not usable PEM certificates: {0}")]
    Ca(String),
    #[error("the pinned certificate fingerprint {0:?} is not a SHA-256 (64 hex characters, colons allowed)")]
    Fingerprint(String),
    #[error("the Proxmox server name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("cannot set up TLS to Proxmox: {0}")]
    Tls(String),
}

/// A request that found no answer upstream: the sentence the client gets with its 502.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreachable(pub(crate) String);

/// Where a session's requests go and how: TLS settings, the endpoint, the idle connections.
pub(crate) struct Connector {
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    endpoint: SocketAddr,
    egress: Option<IpAddr>,
    /// Idle connections and since when, the most recent last.
    idle: Mutex<Vec<(Instant, SendRequest<Body>)>>,
}

/// A connection lent to one exchange: handed back by [`Checkout::give_back`] once the
/// response has been read whole.
pub(crate) struct Checkout {
    sender: SendRequest<Body>,
    connector: Arc<Connector>,
}

impl Checkout {
    pub(crate) fn give_back(self) {
        self.connector.keep(self.sender);
    }
}

impl Connector {
    /// The upstream of a session: `endpoint` is the grant's vetted `IP:PORT`, dialled from
    /// `egress` when set.
    pub(crate) fn new(
        credential: &Credential,
        endpoint: SocketAddr,
        egress: Option<IpAddr>,
    ) -> Result<Connector, TrustError> {
        let config = tls_config(credential)?;
        let server_name = ServerName::try_from(credential.server_name.clone())
            .map_err(|_| TrustError::ServerName(credential.server_name.clone()))?;
        Ok(Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
            endpoint,
            egress,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request()` on an idle connection, or on a new one (from `spare`, a TCP
    /// connection to the endpoint dialled already, when there is one). A pooled connection
    /// that turns out closed before the request went out is dropped and the request sent
    /// on another; a request that went out is sent again on a new connection only if it is
    /// a GET or HEAD that the closing connection left unanswered.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: impl Fn() -> http::Request<Body>,
        spare: &mut Option<TcpStream>,
    ) -> Result<(http::Response<Incoming>, Checkout), Unreachable> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            let request = request();
            let again = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
            match sender.send_request(request).await {
                Ok(response) => return Ok((response, self.checkout(sender))),
                // Not sent: the connection closed under it. Try another.
                Err(e) if e.is_canceled() => continue,
                Err(e) if again && closed_under(&e) => break,
                Err(e) => return Err(self.failed(&e)),
            }
        }
        let mut sender = self.connect(spare.take()).await?;
        match sender.send_request(request()).await {
            Ok(response) => Ok((response, self.checkout(sender))),
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn checkout(self: &Arc<Self>, sender: SendRequest<Body>) -> Checkout {
        Checkout {
            sender,
            connector: self.clone(),
        }
    }

    fn failed(&self, e: &hyper::Error) -> Unreachable {
        Unreachable(format!(
            "the Proxmox API at {} did not answer the request: {e}",
            self.endpoint
        ))
    }

    fn take_idle(&self) -> Option<SendRequest<Body>> {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        idle.retain(|(since, s)| !s.is_closed() && now.duration_since(*since) < IDLE_FOR);
        idle.pop().map(|(_, sender)| sender)
    }

    fn keep(&self, sender: SendRequest<Body>) {
        let mut idle = match self.idle.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push((Instant::now(), sender));
        }
    }

    /// A new HTTP/1.1 connection: TCP (or `spare`), TLS, handshake; its driver runs in a
    /// task of its own until the connection closes.
    async fn connect(&self, spare: Option<TcpStream>) -> Result<SendRequest<Body>, Unreachable> {
        let endpoint = self.endpoint;
        let tcp = match spare {
            Some(tcp) => tcp,
            None => crate::proxy::dial(endpoint, self.egress)
                .await
                .map_err(|e| {
                    Unreachable(format!("cannot reach the Proxmox API at {endpoint}: {e}"))
                })?,
        };
        let name = self.server_name.to_str();
        let tls = tokio::time::timeout(TLS_TIMEOUT, self.tls.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| Unreachable(format!("the TLS handshake with the Proxmox API at {endpoint} ({name}) timed out")))?
            .map_err(|e| Unreachable(format!("the TLS handshake with the Proxmox API at {endpoint} ({name}) failed: {e}: check the cluster's ca_file or fingerprint")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| {
                Unreachable(format!(
                    "cannot speak HTTP/1.1 to the Proxmox API at {endpoint}: {e}"
                ))
            })?;
        tokio::spawn(
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "a Proxmox API connection ended with an error");
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(sender)
    }
}

/// Whether a request failed because the server closed the connection under it (with or
/// without TLS's close_notify, or by a reset) rather than for what the request was.
fn closed_under(e: &hyper::Error) -> bool {
    use std::error::Error as _;
    use std::io::ErrorKind;
    if e.is_incomplete_message() {
        return true;
    }
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            )
        })
}

/// The rustls client configuration for the credential's trust: the cluster's CA as the only
/// root (the certificate must name the server name: a DNS name, or an IP in an IP SAN), or
/// exactly one certificate by the SHA-256 of its DER encoding.
fn tls_config(credential: &Credential) -> Result<rustls::ClientConfig, TrustError> {
    let tls = |e: portcullis_crypto::tls::TlsError| TrustError::Tls(e.to_string());
    match (&credential.ca_pem, &credential.fingerprint) {
        (Some(pem), None) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| TrustError::Ca(e.to_string()))?;
                roots.add(cert).map_err(|e| TrustError::Ca(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TrustError::Ca("no certificate in it".into()));
            }
            portcullis_crypto::tls::https_client_config(
                roots,
                portcullis_crypto::tls::ClientAuth::None,
            )
            .map_err(tls)
        }
        (None, Some(fingerprint)) => {
            let pin = parse_fingerprint(fingerprint)?;
            portcullis_crypto::tls::https_client_config_verified_by(Arc::new(
                PinnedCertificate::new(pin),
            ))
            .map_err(tls)
        }
        _ => Err(TrustError::NoTrust),
    }
}

/// `80:D4:...:F5` or `80d4...f5`: 32 bytes.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], TrustError> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out)
        .map_err(|_| TrustError::Fingerprint(text.to_owned()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
