//! Links this worker dials: one controller at a time, trying each configured address in
//! turn as [`super::redial`] schedules it, over TLS that checks the controller's name and CA.

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::link::{self, LinkError};
use rustls::pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use tokio_util::sync::CancellationToken;

use super::redial::{Outcome, Redial};
use crate::Shared;

/// How long the TCP connect and the TLS handshake with a controller may each take (well
/// inside the 5 s admission grace, so an unreachable or hung controller costs at most this
/// before the next one is tried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps a link up until `shutdown`, failing over between controllers: after a link that was
/// up drops, the next controller at once; after failures, the others at once and then a
/// jittered back-off ([`Redial`]).
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    if shared.config.controllers.is_empty() {
        // Outbound-only control plane: controllers dial this worker (see `inbound`).
        return;
    }
    let mut redial = Redial::new(shared.config.controllers.len());
    let mut index = 0usize;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let addr = shared.config.controllers[index % shared.config.controllers.len()].clone();
        index += 1;
        let links_before = shared.link.registrations();
        let result = session(&shared, &addr, &shutdown).await;
        // A link registers once its controller answered the hello.
        let outcome = if shared.link.registrations() != links_before {
            Outcome::Dropped
        } else {
            Outcome::Failed
        };
        match result {
            Ok(()) => return,
            Err(LinkError::PeerClosed) if outcome == Outcome::Dropped => {
                // The controller ended the link on purpose (a restart, a shutdown).
                tracing::info!(controller.addr = %addr, "the controller closed the link; linking again");
            }
            Err(err) => {
                tracing::warn!(controller.addr = %addr, error = %portcullis_proto::text::escaped(&err), "controller link down; retrying");
            }
        }
        let wait = redial.next_wait(outcome);
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn client_config(shared: &Shared) -> Result<Arc<rustls::ClientConfig>, LinkError> {
    use portcullis_crypto::tls::verify::{CaTrust, PinnedCa};
    let set_up = |e: &dyn std::fmt::Display| LinkError::TlsSetUp {
        reason: e.to_string(),
    };
    let identity = shared.identity.clone();
    let ca = CaTrust::Bundle(shared.certs.trust());
    let controller =
        PinnedCa::controller(ca, link::CONTROLLER_SERVER_NAME).map_err(|e| set_up(&e))?;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(shared.certs.pem().as_bytes())
        .map_err(|e| set_up(&e))?;
    let auth = portcullis_crypto::tls::ClientAuth::Cert {
        chain: vec![cert],
        key: identity.key_der(),
    };
    let config = portcullis_crypto::tls::client_config(Arc::new(controller), auth, link::ALPN)
        .map_err(|e| set_up(&e))?;
    Ok(Arc::new(config))
}

async fn session(
    shared: &Arc<Shared>,
    addr: &str,
    shutdown: &CancellationToken,
) -> Result<(), LinkError> {
    let connector = tokio_rustls::TlsConnector::from(client_config(shared)?);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::ConnectTimedOut {
            addr: addr.to_owned(),
        })?
        .map_err(|source| LinkError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let name =
        ServerName::try_from(link::CONTROLLER_SERVER_NAME).map_err(|e| LinkError::TlsSetUp {
            reason: e.to_string(),
        })?;
    // A controller that accepts TCP but never answers (SIGSTOP, a full accept queue) must not
    // hold the worker past its admission grace: the next controller is tried instead.
    let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| LinkError::TlsTimedOut {
            after: TLS_HANDSHAKE_TIMEOUT,
        })?
        .map_err(|source| LinkError::Tls { source })?;
    // One link at a time in this direction: the address names the controller.
    super::drive(shared, tls, addr, addr, shutdown).await
}
