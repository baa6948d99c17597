//! The admission decision, with no I/O: each step takes the facts its edge gathered (the
//! hello, the grant as verified, the TCP peer, the TLS client key, the session table's state,
//! when a controller was last heard, the worker's clock) and answers with a go-ahead or the
//! [`Refusal`] the client gets.
//!
//! The steps run in this order, and each refuses with the first check that fails:
//! [`check_hello`] (protocol version, draining), [`refuse_grant`] (a grant that did not
//! verify), [`check`] (source address, client key, session ended, controller heard, endpoint),
//! [`count`] (the session table's count against the session's limit), and for a session's
//! first connection here [`answer`] (the controller's online answer). They are separate
//! because what each needs is known only after the one before: the session is looked up by
//! the verified grant's id, and the table counts a connection atomically, under its lock, so
//! that two connections cannot both take a session's last place.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use portcullis_proto::grant::{GrantClaims, GrantError};
use portcullis_proto::link::{EndReason, LinkError, Response, Trouble};
use portcullis_proto::proxy::{ClientHello, RefusalCode};

use crate::proxy::handshake::Refusal;
use crate::table::{self, Admission};

/// What the worker knows about a connection whose grant verified, gathered before [`check`].
#[derive(Debug, Clone)]
pub(super) struct Facts<'a> {
    /// The client's address as the TCP connection shows it (an IPv4 client in plain form).
    pub(super) peer: IpAddr,
    /// The fingerprint of the key of the client's TLS certificate, if it presented one.
    pub(super) client_key: Option<&'a str>,
    /// Why the grant's session ended, if the session table knows it has.
    pub(super) session_ended: Option<EndReason>,
    /// When a controller was last heard, on the worker's monotonic clock; `None` if never.
    pub(super) controller_heard: Option<Instant>,
    /// When a controller last answered without vouching for the sessions, and why.
    pub(super) controller_trouble: Option<(Instant, Trouble)>,
    /// How recently a controller must have been heard for a new connection to be admitted.
    pub(super) admit_grace: Duration,
}

/// The go-ahead of [`check`]: the connection may be counted against its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Permit {
    /// The vetted endpoint the grant names, to dial.
    pub(super) endpoint: SocketAddr,
}

/// Who has the last word on a connection the session table counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// The session's first connection on this worker: admitted only if the controller, asked
    /// online, admits it too ([`answer`]).
    AskController,
    /// A later connection of a session the controller admitted here: admitted.
    Admit,
}

/// The hello speaks this worker's protocol version, and the worker is not draining.
pub(super) fn check_hello(hello: &ClientHello, draining: bool) -> Result<(), Refusal> {
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
    if draining {
        return Err(Refusal::new(
            RefusalCode::Draining,
            "the worker is shutting down; retry to reach another worker",
        ));
    }
    Ok(())
}

/// The refusal for a grant that did not verify (signature, key id, issuer, audience, expiry).
pub(super) fn refuse_grant(error: GrantError) -> Refusal {
    match error {
        GrantError::Expired => Refusal::new(RefusalCode::ExpiredGrant, "the grant has expired"),
        GrantError::WrongAudience => {
            Refusal::new(RefusalCode::WrongWorker, "the grant is for another worker")
        }
        other => Refusal::new(RefusalCode::InvalidGrant, other.to_string()),
    }
}

/// The verified grant's claims hold for this connection and its session may take one at
/// `now` (the worker's monotonic clock): the client connects from the grant's source with the
/// grant's key, the session has not ended, a controller was heard within the admit grace, and
/// the grant names an endpoint as `IP:PORT`.
pub(super) fn check(
    claims: &GrantClaims,
    facts: &Facts<'_>,
    now: Instant,
) -> Result<Permit, Refusal> {
    if claims.src != facts.peer.to_string() {
        return Err(Refusal::new(
            RefusalCode::WrongSource,
            format!("the grant is for source {}, not {}", claims.src, facts.peer),
        ));
    }
    if facts.client_key != Some(claims.ckh.as_str()) {
        return Err(Refusal::new(
            RefusalCode::WrongClientKey,
            "the TLS client key is not the one the grant names",
        ));
    }
    if let Some(why) = facts.session_ended {
        return Err(session_ended(why));
    }
    if !table::heard_within(facts.controller_heard, facts.admit_grace, now) {
        return Err(not_vouched(facts, now));
    }
    let endpoint = claims.dst.parse().map_err(|_| {
        Refusal::new(
            RefusalCode::InvalidGrant,
            "the grant's endpoint is not IP:PORT",
        )
    })?;
    Ok(Permit { endpoint })
}

/// What the session table's count of the connection means for it: refused if the session
/// ended meanwhile or its connection limit is reached.
pub(super) fn count(admission: Admission) -> Result<Counted, Refusal> {
    match admission {
        Admission::Ended(why) => Err(session_ended(why)),
        Admission::LimitReached => Err(Refusal::new(
            RefusalCode::ConnectionLimit,
            "the session's connection limit is reached",
        )),
        Admission::Local => Ok(Counted::Admit),
        Admission::First => Ok(Counted::AskController),
    }
}

/// The controller's answer to the admission of a session's first connection, or why none came
/// (`Err`, the link's words for it).
pub(super) fn answer(reply: Result<Response, impl std::fmt::Display>) -> Result<(), Refusal> {
    match reply {
        Ok(Response::Admitted) => Ok(()),
        Ok(Response::Refused { reason }) => Err(Refusal::new(RefusalCode::SessionEnded, reason)),
        Ok(other) => Err(Refusal::new(
            RefusalCode::ControllerUnreachable,
            format!("unexpected controller answer: {other:?}"),
        )),
        Err(e) => Err(Refusal::new(
            RefusalCode::ControllerUnreachable,
            e.to_string(),
        )),
    }
}

/// Whether the admission of a first connection that failed with `error` is asked again once
/// a link is up (until the admission's deadline): the request was lost with its link (it
/// closed before the answer came, or none was up), so no controller decided it. A controller
/// that answers, refuses or fails the request, and one that did not answer in time, decided
/// or may still be deciding: those are final. A controller that hung and later reads a copy
/// of the request answers it as the same connection (the controller's admission is
/// idempotent per connection id).
pub(super) fn ask_again(error: &LinkError) -> bool {
    matches!(error, LinkError::Closed | LinkError::NoLink)
}

/// The refusal when no controller vouched for the sessions within the admit grace: what a
/// controller that answered meanwhile said was wrong, or that none was heard.
fn not_vouched(facts: &Facts<'_>, now: Instant) -> Refusal {
    let trouble = facts
        .controller_trouble
        .filter(|(at, _)| table::heard_within(Some(*at), facts.admit_grace, now));
    let reason = match trouble {
        Some((_, trouble)) => {
            format!("{trouble}; no new connections are admitted until it can")
        }
        None => "no controller has been heard recently; no new connections are admitted".into(),
    };
    Refusal::new(RefusalCode::ControllerUnreachable, reason)
}

/// Whether a refusal of [`answer`] is the controller's own: it refused the connection
/// online and audited it, so the worker does not report it again (the other refusals of
/// `answer`, no answer at all, are the worker's).
pub(super) fn decided_by_controller(refusal: &Refusal) -> bool {
    refusal.code == RefusalCode::SessionEnded
}

fn session_ended(why: EndReason) -> Refusal {
    Refusal::new(
        RefusalCode::SessionEnded,
        format!("the session has ended ({why})"),
    )
}
