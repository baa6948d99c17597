//! Enrolment: a worker without an identity joins the cluster with a join token, over a link
//! it dials (`identity::enrol`) or one a controller dials in (`inbound::enrol`). Only the
//! TLS roles differ, so one [`Enrolment`] serves both: a fresh Ed25519 key, the `join`
//! request, and a TLS set-up that accepts only a controller whose CA has the key hash the
//! token pins (`PinnedCa` with `CaTrust::KeyHash`: the CA the controller sends must hash to
//! the token's value, its link certificate must chain to it and name
//! `portcullis-controller`). The token goes out only after that check.
//!
//! [`Enrolment::attempt`] runs one attempt over any stream (a TCP connection in the daemon,
//! an in-memory pipe in the tests): TLS, `join`, the controller's answer.

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_crypto::tls::verify::{CaTrust, PinnedCa};
use portcullis_crypto::tls::{self, ClientAuth, ServerCert};
use portcullis_proto::api::{JoinRequest, JoinResponse};
use portcullis_proto::link::{self, Frame, Request, Response};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::identity::Identity;
use crate::WorkerError;

/// How long the controller has to answer the join request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Which end of the TLS connection the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The worker dialled the controller: it is the TLS client.
    Dial,
    /// The controller dialled the worker (outbound-only control plane): the worker is the
    /// TLS server and presents a throw-away self-signed certificate for its new key.
    Accept,
}

enum Handshake {
    Dial(tokio_rustls::TlsConnector),
    Accept(tokio_rustls::TlsAcceptor),
}

/// One enrolment: the key the worker will be known by, the encoded `join` request, and the
/// TLS that finds the real controller.
pub(crate) struct Enrolment {
    key: rcgen::KeyPair,
    join: bytes::Bytes,
    handshake: Handshake,
}

impl Enrolment {
    /// Prepares an enrolment with `token` for the worker `name`, whose proxy listens on
    /// `proxy_addr`; fails on a token that is not one.
    pub(crate) fn new(
        token: &str,
        name: &str,
        proxy_addr: &str,
        side: Side,
    ) -> Result<Enrolment, WorkerError> {
        let (ca_hash, _) = portcullis_proto::api::join_token::parse(token)
            .map_err(|m| WorkerError::Enrol(m.to_owned()))?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| WorkerError::Identity(e.to_string()))?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let join = Frame::Request {
            id: 1,
            body: Request::Join(JoinRequest {
                token: token.to_owned(),
                name: name.to_owned(),
                public_key: portcullis_proto::keys::b64(&spki),
                proxy_addr: proxy_addr.to_owned(),
            }),
        };
        let join = link::encode(&join).map_err(|e| WorkerError::Enrol(e.to_string()))?;
        let controller = Arc::new(
            PinnedCa::controller(
                CaTrust::KeyHash(ca_hash.to_owned()),
                link::CONTROLLER_SERVER_NAME,
            )
            .map_err(|e| WorkerError::Tls(e.to_string()))?,
        );
        let handshake = match side {
            Side::Dial => {
                let config = tls::client_config(controller, ClientAuth::None, link::ALPN)
                    .map_err(|e| WorkerError::Tls(e.to_string()))?;
                Handshake::Dial(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            Side::Accept => {
                let throwaway = rcgen::CertificateParams::new(vec!["portcullis-worker".to_owned()])
                    .and_then(|p| p.self_signed(&key))
                    .map_err(|e| WorkerError::Identity(e.to_string()))?;
                let cert = ServerCert::Single {
                    chain: vec![throwaway.der().clone()],
                    key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                };
                let config = tls::server_config(controller, cert, link::ALPN)
                    .map_err(|e| WorkerError::Tls(e.to_string()))?;
                Handshake::Accept(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
        };
        Ok(Enrolment {
            key,
            join,
            handshake,
        })
    }

    /// One attempt on a fresh connection: TLS within `handshake_timeout`, then the join
    /// request and the controller's answer. Fails in words; the caller may try again on
    /// another connection.
    pub(crate) async fn attempt<S>(
        &self,
        stream: S,
        handshake_timeout: Duration,
    ) -> Result<JoinResponse, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let timed_out = |_| "TLS handshake timed out".to_string();
        match &self.handshake {
            Handshake::Dial(connector) => {
                let name = ServerName::try_from(link::CONTROLLER_SERVER_NAME)
                    .map_err(|e| e.to_string())?;
                let tls = tokio::time::timeout(handshake_timeout, connector.connect(name, stream))
                    .await
                    .map_err(timed_out)?
                    .map_err(|e| format!("TLS: {e}"))?;
                self.join(tls).await
            }
            Handshake::Accept(acceptor) => {
                let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                    .await
                    .map_err(timed_out)?
                    .map_err(|e| format!("TLS: {e}"))?;
                self.join(tls).await
            }
        }
    }

    /// Saves the identity the controller's answer completes (the key of this enrolment).
    pub(crate) fn finish(
        &self,
        dir: &Path,
        joined: JoinResponse,
        issued_at: u64,
    ) -> Result<Identity, WorkerError> {
        crate::identity::finish_enrolment(dir, &self.key, joined, issued_at)
    }

    /// Sends `join` on an authenticated link and reads the controller's answer.
    async fn join<S>(&self, stream: S) -> Result<JoinResponse, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut framed = Framed::new(stream, link::codec());
        framed
            .send(self.join.clone())
            .await
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, framed.next())
            .await
            .map_err(|_| "the controller did not answer the join request".to_string())?
            .ok_or("the controller closed the link")?
            .map_err(|e| e.to_string())?;
        match link::decode(&answer).map_err(|e| e.to_string())? {
            Frame::Response {
                body: Response::Joined(joined),
                ..
            } => Ok(joined),
            Frame::Response {
                body: Response::Error { message },
                ..
            } => Err(format!(
                "the controller refused to enrol this worker: {message}"
            )),
            _ => Err("unexpected answer to the join request".to_string()),
        }
    }
}
