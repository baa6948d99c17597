//! Admission of a connection whose hello was read, in the order the checks run: the protocol
//! version, draining, the grant (signature, key id, expiry, audience), its source address and
//! client key, the session's state, the controller's freshness and the grant's endpoint; then
//! the session table counts the connection against the session's limit. A session's first
//! connection here is admitted only with the controller's online answer ([`ask_controller`]).

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_proto::grant::{self, GrantClaims, GrantError};
use portcullis_proto::link::{AdmitFirst, Request, Response};
use portcullis_proto::proxy::{ClientHello, RefusalCode};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::handshake::Refusal;
use crate::table::Admission;
use crate::Shared;

/// A connection the worker admitted, counted in the session table.
pub(super) struct Admitted {
    pub(super) claims: GrantClaims,
    /// The vetted endpoint the grant names.
    pub(super) endpoint: SocketAddr,
    pub(super) connection_id: String,
    /// The session's first connection on this worker: the controller must admit it too.
    pub(super) first: bool,
}

/// Runs every check on the hello and its grant, then counts the connection in the session
/// table. Records `session.id` and `connection.id` on the connection's span as they become
/// known, so that a refusal's log line carries them.
pub(super) fn admit(
    shared: &Shared,
    tls: &TlsStream<TcpStream>,
    peer: SocketAddr,
    hello: ClientHello,
) -> Result<Admitted, Refusal> {
    check_hello(shared, &hello)?;
    let claims = verify_grant(shared, &hello.grant)?;
    let span = tracing::Span::current();
    span.record("session.id", claims.sid.as_str());
    let endpoint = check_claims(shared, &claims, peer, client_key(tls).as_deref())?;
    let connection_id = format!("c_{}", hex::encode(rand_bytes()));
    span.record("connection.id", connection_id.as_str());
    let first = count_connection(shared, &claims)?;
    Ok(Admitted {
        claims,
        endpoint,
        connection_id,
        first,
    })
}

/// The hello speaks this worker's protocol version, and the worker is not draining.
fn check_hello(shared: &Shared, hello: &ClientHello) -> Result<(), Refusal> {
    if hello.protocol_version != portcullis_proto::PROTOCOL_VERSION {
        return Err(Refusal::new(
            RefusalCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this worker speaks version {}: use a client of the same release",
                hello.protocol_version,
                portcullis_proto::PROTOCOL_VERSION
            ),
        ));
    }
    if shared.draining.is_cancelled() {
        return Err(Refusal::new(
            RefusalCode::Draining,
            "the worker is shutting down; retry to reach another worker",
        ));
    }
    Ok(())
}

/// The grant is signed by a current grant key, unexpired, and for this worker.
fn verify_grant(shared: &Shared, token: &str) -> Result<GrantClaims, Refusal> {
    match grant::verify(
        token,
        &shared.table.keys(),
        &shared.identity.worker_id,
        shared.clock.unix_secs(),
    ) {
        Ok(c) => Ok(c),
        Err(GrantError::Expired) => Err(Refusal::new(
            RefusalCode::ExpiredGrant,
            "the grant has expired",
        )),
        Err(GrantError::WrongAudience) => Err(Refusal::new(
            RefusalCode::WrongWorker,
            "the grant is for another worker",
        )),
        Err(e) => Err(Refusal::new(RefusalCode::InvalidGrant, e.to_string())),
    }
}

/// The fingerprint of the key the client's TLS certificate carries, if it has one.
fn client_key(tls: &TlsStream<TcpStream>) -> Option<String> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| {
            webpki::EndEntityCert::try_from(c).ok().map(|e| {
                portcullis_proto::keys::spki_fingerprint(e.subject_public_key_info().as_ref())
            })
        })
}

/// The grant's claims hold for this connection and its session may take one: the client
/// connects from the grant's source with the grant's key, the session has not ended, a
/// controller was heard recently. Returns the endpoint to dial.
fn check_claims(
    shared: &Shared,
    claims: &GrantClaims,
    peer: SocketAddr,
    client_key: Option<&str>,
) -> Result<SocketAddr, Refusal> {
    if claims.src != peer.ip().to_string() {
        return Err(Refusal::new(
            RefusalCode::WrongSource,
            format!("the grant is for source {}, not {}", claims.src, peer.ip()),
        ));
    }
    if client_key != Some(claims.ckh.as_str()) {
        return Err(Refusal::new(
            RefusalCode::WrongClientKey,
            "the TLS client key is not the one the grant names",
        ));
    }
    if let Some(why) = shared.table.end_reason(&claims.sid) {
        return Err(Refusal::new(
            RefusalCode::SessionEnded,
            format!("the session has ended ({why})"),
        ));
    }
    if !shared.table.fresh(shared.config.admit_grace) {
        return Err(Refusal::new(
            RefusalCode::ControllerUnreachable,
            "no controller has been heard recently; no new connections are admitted",
        ));
    }
    claims.dst.parse().map_err(|_| {
        Refusal::new(
            RefusalCode::InvalidGrant,
            "the grant's endpoint is not IP:PORT",
        )
    })
}

/// Counts the connection against its session's limit; whether it is the session's first here.
fn count_connection(shared: &Shared, claims: &GrantClaims) -> Result<bool, Refusal> {
    match shared.table.admit(&claims.sid, claims.lim, claims.exp) {
        Admission::Ended(why) => Err(Refusal::new(
            RefusalCode::SessionEnded,
            format!("the session has ended ({why})"),
        )),
        Admission::LimitReached => Err(Refusal::new(
            RefusalCode::ConnectionLimit,
            "the session's connection limit is reached",
        )),
        Admission::Local => Ok(false),
        Admission::First => Ok(true),
    }
}

/// Asks the controller to admit a session's first connection (it records the session as
/// active); the refusal to send the client otherwise.
pub(super) async fn ask_controller(shared: &Shared, admit: AdmitFirst) -> Result<(), Refusal> {
    match shared
        .link
        .request(Request::AdmitFirst(admit), Duration::from_secs(5))
        .await
    {
        Ok(Response::Admitted) => Ok(()),
        Ok(Response::Refused { reason }) => Err(Refusal::new(RefusalCode::SessionEnded, reason)),
        Ok(other) => Err(Refusal::new(
            RefusalCode::ControllerUnreachable,
            format!("unexpected controller answer: {other:?}"),
        )),
        Err(e) => Err(Refusal::new(RefusalCode::ControllerUnreachable, e)),
    }
}

fn rand_bytes() -> [u8; 12] {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 12];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        std::process::abort();
    }
    b
}
