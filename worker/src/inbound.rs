//! Links that controllers dial (the outbound-only control plane): the worker listens on
//! `cluster_listen`, presents its certificate, requires a controller's CA-issued link
//! certificate, and then speaks the same protocol as when it dials out.
//!
//! Only a controller is accepted: its certificate must chain to the CA, carry the
//! client-authentication usage and name `portcullis-controller`. Workers' certificates chain
//! to the same CA and carry client authentication too, but never that name (the CA refuses to
//! issue it to a worker), so one worker cannot pose as a controller to another and hand it
//! grant keys or end its sessions.
//!
//! Before enrolment the worker has no certificate: it presents a throw-away self-signed one,
//! accepts only a controller whose CA matches the join token's hash, and sends `join`.
//! Enrolment attempts are served side by side: an idle connection does not hold up a real
//! controller.

use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use portcullis_crypto::tls::verify::{CaTrust, PinnedCa};
use portcullis_crypto::tls::{self, ServerCert};
use portcullis_proto::clock::Clock;
use portcullis_proto::link::{self, LinkError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::accept::{self, Gate};
use crate::config::Config;
use crate::enrol::{Enrolment, Side};
use crate::identity::Identity;
use crate::ExposeSecret as _;
use crate::{Shared, WorkerError};

/// Waits for a controller to dial in and enrols through it with the join token.
pub async fn enrol(
    listener: &mut accept::Listener,
    config: &Config,
    proxy_addr: &str,
    clock: &dyn Clock,
) -> Result<Identity, WorkerError> {
    let token = config.join_token.as_ref().ok_or(WorkerError::NotEnrolled)?;
    let enrolment = Enrolment::new(
        token.expose_secret(),
        &config.name,
        proxy_addr,
        Side::Accept,
    )?;
    let gate = Gate::new(config.handshake_limits, "cluster");
    let mut attempts = FuturesUnordered::new();
    tracing::info!("waiting for a controller to dial in for enrolment");
    // Enrolment ends with an identity or an error; only dropping it stops it sooner.
    let running = CancellationToken::new();
    loop {
        tokio::select! {
            Some((tcp, peer)) = listener.accept(&running) => {
                let Some(pass) = gate.enter(peer.ip()) else { continue };
                let enrolment = &enrolment;
                attempts.push(async move {
                    let _pass = pass;
                    enrolment
                        .attempt(tcp, config.handshake_timeout)
                        .await
                        .map_err(|e| format!("with {peer}: {e}"))
                });
            }
            Some(result) = attempts.next(), if !attempts.is_empty() => match result {
                Ok(joined) => return enrolment.finish(&config.state_dir, joined, clock.unix_secs()),
                Err(e) => tracing::warn!(error = %portcullis_proto::text::escaped(&e), "enrolment attempt failed; waiting for another"),
            },
        }
    }
}

/// Serves links dialled by controllers until `shutdown`. Several controllers may hold links
/// at once; a connection that fails (in TLS or later) changes no other link.
pub async fn serve(
    mut listener: accept::Listener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let controllers = PinnedCa::controller(
        CaTrust::Bundle(shared.certs.trust()),
        link::CONTROLLER_SERVER_NAME,
    )
    .map_err(|e| WorkerError::Tls(e.to_string()))?;
    let config = tls::server_config(
        Arc::new(controllers),
        ServerCert::Resolver(shared.certs.clone()),
        link::ALPN,
    )
    .map_err(|e| WorkerError::Tls(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let gate = Arc::new(Gate::new(shared.config.handshake_limits, "cluster"));
    loop {
        let Some((tcp, peer)) = listener.accept(&shutdown).await else {
            return Ok(());
        };
        let Some(pass) = gate.enter(peer.ip()) else {
            continue;
        };
        let (acceptor, shared, shutdown) = (acceptor.clone(), shared.clone(), shutdown.clone());
        let span = tracing::info_span!("inbound_link", controller.addr = %peer);
        tokio::spawn(
            async move {
                let result = async {
                    let tls =
                        tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(tcp))
                            .await
                            .map_err(|_| LinkError::TlsTimedOut {
                                after: shared.config.handshake_timeout,
                            })?
                            .map_err(|source| LinkError::Tls { source })?;
                    drop(pass);
                    // The verifier accepted a controller certificate; its key names the
                    // controller (a newer link with the same key replaces this one).
                    let controller = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| tls::spki_of(c).ok())
                        .map(|spki| portcullis_proto::keys::spki_fingerprint(&spki))
                        .ok_or(LinkError::NoPeerCertificate)?;
                    crate::link::drive(&shared, tls, &controller, &peer.to_string(), &shutdown)
                        .await
                }
                .await;
                if let Err(e) = result {
                    tracing::info!(error = %portcullis_proto::text::escaped(&e), "controller link ended");
                }
            }
            .instrument(span),
        );
    }
}
