//! Links this worker dials: one controller at a time, trying each configured address in
//! turn with a growing, jittered back-off, over TLS that checks the controller's name and CA.

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::link::{self, LinkError};
use rustls::pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// The waits between attempts: from 200 ms, doubling and jittered, at most 5 s
/// ([`portcullis_proto::retry`]).
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Keeps a link up until `shutdown`, failing over between controllers.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    if shared.config.controllers.is_empty() {
        // Outbound-only control plane: controllers dial this worker (see `inbound`).
        return;
    }
    let mut waits = portcullis_proto::retry::schedule(FIRST_RETRY, MAX_RETRY);
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
        let wait = waits.next().unwrap_or(MAX_RETRY);
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
    let ca = CaTrust::Pinned(identity.ca_der().map_err(|e| set_up(&e))?);
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
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
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
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|source| LinkError::Tls { source })?;
    // One link at a time in this direction: the address names the controller.
    super::drive(shared, tls, addr, addr, shutdown).await
}
