//! A session's Proxmox credential on this worker: asked of the controller over the cluster
//! link on the session's first request ([`Request::PveCredential`]), once however many
//! connections ask at the same time (single flight), kept in memory only, and forgotten when
//! the session ends (ended by the controller, or its grant expired). With it the session's
//! [`Upstream`] (host and token) and its [`Connector`] (TLS settings and keep-alive pool) are
//! built; each connection makes its [`super::Rules`] from them and its own grant's claims.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::Authority;
use portcullis_proto::link::{Request, Response};
use portcullis_proto::pve::{Credential, CredentialRequest};
use secrecy::zeroize::Zeroize as _;
use secrecy::SecretString;
use tracing::Instrument as _;

use super::upstream::Connector;
use super::Upstream;
use crate::Shared;

/// How long the controller has to answer a credential request.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session's requests need: the token they carry and where they go.
pub(crate) struct Ready {
    /// `USER@REALM!TOKENNAME`, which the grant's `tok` must name.
    pub(crate) token_id: String,
    pub(crate) upstream: Upstream,
    pub(crate) connector: Arc<Connector>,
}

/// One session's slot: empty until its credential is fetched.
#[derive(Default)]
pub(crate) struct Slot {
    ready: tokio::sync::OnceCell<Arc<Ready>>,
}

/// The Proxmox sessions this worker serves, by session id.
#[derive(Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Sessions {
    /// The slot of `session_id`; a new one is forgotten when the session ends.
    pub(crate) fn slot(&self, shared: &Arc<Shared>, session_id: &str) -> Arc<Slot> {
        let (slot, new) = {
            let mut sessions = self.lock();
            match sessions.get(session_id) {
                Some(slot) => (slot.clone(), false),
                None => {
                    let slot = Arc::new(Slot::default());
                    sessions.insert(session_id.to_owned(), slot.clone());
                    (slot, true)
                }
            }
        };
        if new {
            let (shared, session_id) = (shared.clone(), session_id.to_owned());
            let ending = shared.table.ending(&session_id);
            let span = tracing::info_span!("pve_session", session.id = %session_id);
            tokio::spawn(
                async move {
                    ending.ended().await;
                    shared.pve.lock().remove(&session_id);
                    tracing::debug!("forgot the session's Proxmox token");
                }
                .instrument(span),
            );
        }
        slot
    }

    /// How many sessions hold a slot (a credential, or the promise of one) now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// What a connection of the session knows to ask for the credential with.
pub(crate) struct Asking<'a> {
    pub(crate) grant: &'a str,
    /// The grant's vetted endpoint.
    pub(crate) endpoint: SocketAddr,
}

impl Slot {
    /// The session's rules and upstream, fetched now if no connection has yet; the
    /// sentence for the client's 502 otherwise (a later request asks again).
    pub(crate) async fn ready(
        &self,
        shared: &Shared,
        asking: &Asking<'_>,
    ) -> Result<Arc<Ready>, String> {
        self.ready
            .get_or_try_init(|| fetch(shared, asking))
            .await
            .cloned()
    }
}

async fn fetch(shared: &Shared, asking: &Asking<'_>) -> Result<Arc<Ready>, String> {
    let request = Request::PveCredential(CredentialRequest {
        grant: asking.grant.to_owned(),
    });
    let answer = shared.link.request(request, ASK_TIMEOUT).await;
    let credential = match answer {
        Ok(Response::PveCredential(credential)) => credential,
        Ok(Response::Error { message, .. }) => {
            return Err(format!(
                "the controller did not hand over the session's Proxmox token: {message}"
            ))
        }
        Ok(other) => {
            return Err(format!(
                "the controller answered the request for the session's Proxmox token with {other:?}: upgrade the worker and the controller together"
            ))
        }
        Err(e) => {
            return Err(format!(
                "no controller handed over the session's Proxmox token ({e}): try again once the worker is linked"
            ))
        }
    };
    let ready = build(credential, asking, shared.config.egress_addr)
        .map_err(|e| format!("the session's Proxmox credential is unusable: {e}"))?;
    tracing::info!(token.id = %ready.token_id, "fetched the session's Proxmox token");
    Ok(Arc::new(ready))
}

/// The session's upstream from the controller's credential; the credential's secret is
/// wiped from its message once it is in the `Upstream`.
pub(crate) fn build(
    mut credential: Credential,
    asking: &Asking<'_>,
    egress: Option<std::net::IpAddr>,
) -> Result<Ready, String> {
    let result = build_inner(&credential, asking, egress);
    credential.secret.zeroize();
    result
}

fn build_inner(
    credential: &Credential,
    asking: &Asking<'_>,
    egress: Option<std::net::IpAddr>,
) -> Result<Ready, String> {
    let authority: Authority = credential
        .authority
        .parse()
        .map_err(|_| format!("its authority {:?} is not host:port", credential.authority))?;
    let token = SecretString::from(format!("{}={}", credential.token_id, credential.secret));
    let upstream = Upstream::new(&authority, &token).map_err(|e| e.to_string())?;
    let connector =
        Connector::new(credential, asking.endpoint, egress).map_err(|e| e.to_string())?;
    Ok(Ready {
        token_id: credential.token_id.clone(),
        upstream,
        connector: Arc::new(connector),
    })
}
