//! Admission of a connection whose hello was read, in the order the checks run: the protocol
//! version, draining, the grant (signature, key id, expiry, audience), its source address and
//! client key, the session's state, the controller's freshness and the grant's endpoint; then
//! the session table counts the connection against the session's limit. A session's first
//! connection here is admitted only with the controller's online answer ([`ask_controller`]).
//!
//! Every decision is [`check`]'s, a module with no I/O; this module is its edge: it gathers
//! the facts (the worker's clock, the session table, the TLS connection), hands them over, and
//! acts on the answer.

mod check;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use super::ClientStream;
use portcullis_proto::grant::{self, GrantClaims};
use portcullis_proto::link::{AdmitFirst, Request, Response};
use portcullis_proto::proxy::ClientHello;

use self::check::{Counted, Facts};
use super::handshake::Refusal;
use crate::Shared;

/// A connection the worker admitted, counted in the session table.
pub(super) struct Admitted {
    pub(super) claims: GrantClaims,
    /// The vetted endpoint the grant names.
    pub(super) endpoint: SocketAddr,
    pub(super) connection_id: String,
    /// The session's first connection on this worker: the controller must admit it too.
    pub(super) first: bool,
    /// The grant as the client sent it (the SSH gateway shows it to the controller).
    pub(super) grant: String,
}

/// A refusal of [`admit`], with the session of the grant when it verified.
pub(super) struct Refused {
    pub(super) session_id: Option<String>,
    pub(super) refusal: Refusal,
}

/// Runs every check on the hello and its grant, then counts the connection in the session
/// table. Records `session.id` and `connection.id` on the connection's span as they become
/// known, so that a refusal's log line carries them.
pub(super) fn admit(
    shared: &Shared,
    tls: &ClientStream,
    peer: SocketAddr,
    hello: ClientHello,
) -> Result<Admitted, Refused> {
    let before_grant = |refusal| Refused {
        session_id: None,
        refusal,
    };
    check::check_hello(&hello, shared.draining.is_cancelled()).map_err(before_grant)?;
    let claims = grant::verify(
        &hello.grant,
        &shared.table.keys(),
        &shared.identity.worker_id,
        shared.clock.unix_secs(),
    )
    .map_err(|e| before_grant(check::refuse_grant(e)))?;
    let of_session = |refusal| Refused {
        session_id: Some(claims.sid.clone()),
        refusal,
    };
    let span = tracing::Span::current();
    span.record("session.id", claims.sid.as_str());
    let client_key = client_key(tls);
    let facts = Facts {
        peer: peer.ip(),
        client_key: client_key.as_deref(),
        session_ended: shared.table.end_reason(&claims.sid),
        controller_heard: shared.table.last_heard(),
        controller_trouble: shared.table.trouble(),
        admit_grace: shared.config.admit_grace,
    };
    let permit = check::check(&claims, &facts, shared.clock.instant()).map_err(of_session)?;
    let connection_id = format!("c_{}", hex::encode(rand_bytes()));
    span.record("connection.id", connection_id.as_str());
    let counted = check::count(shared.table.admit(&claims.sid, claims.lim, claims.exp))
        .map_err(of_session)?;
    Ok(Admitted {
        claims,
        endpoint: permit.endpoint,
        connection_id,
        first: counted == Counted::AskController,
        grant: hello.grant,
    })
}

/// The fingerprint of the key the client's TLS certificate carries, if it has one.
fn client_key(tls: &ClientStream) -> Option<String> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| portcullis_crypto::tls::spki_of(c).ok())
        .map(|spki| portcullis_proto::keys::spki_fingerprint(&spki))
}

/// How long a session's first connection waits for the controller's admission, asked again
/// on each new link meanwhile.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the controller to admit a session's first connection (it records the session as
/// active); the refusal to send the client otherwise. A request lost with its link (the
/// controller hung or died before answering, see [`check::ask_again`]) is asked again once a
/// link is up, until [`ADMIT_TIMEOUT`] after the first ask: a failover within that time
/// costs the client a wait, not a refusal.
pub(super) async fn ask_controller(shared: &Shared, admit: AdmitFirst) -> Result<(), Refusal> {
    let deadline = tokio::time::Instant::now() + ADMIT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = shared
            .link
            .request(Request::AdmitFirst(admit.clone()), left)
            .await;
        match reply {
            Err(error) if check::ask_again(&error) => {
                if !shared.link.wait_for_link(deadline).await {
                    return check::answer(Err::<Response, _>(error));
                }
                tracing::info!(
                    error = %error,
                    "asking again for the admission on the next link"
                );
            }
            reply => return check::answer(reply),
        }
    }
}

/// Whether a refusal met while opening an admitted connection is in the audit log already:
/// the controller's own refusal of a first connection (it audited it), or a target that could
/// not be reached (the connection's `closed` event records it). Any other one, the worker
/// reports ([`crate::refusals`]).
pub(super) fn audited_when_opening(refusal: &Refusal) -> bool {
    refusal.code == portcullis_proto::proxy::RefusalCode::TargetUnreachable
        || check::decided_by_controller(refusal)
}

fn rand_bytes() -> [u8; 12] {
    match portcullis_crypto::random::bytes() {
        Ok(b) => b,
        Err(_) => std::process::abort(),
    }
}
