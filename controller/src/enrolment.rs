//! Worker enrolment: join tokens are single use, expire, and are stored hashed; each
//! carries the hash of the CA's key so a worker can tell the real controller.
//!
//! A join comes from a link that presented no worker certificate, so from anyone who can
//! reach the cluster port. [`join`] therefore counts attempts per address (in the store,
//! shared by every controller) before it looks at anything else, consumes the token before
//! any certificate is issued, and records refusals through [`audit::denials`]: summed per
//! address, with the address as the actor and the name the caller claimed only as
//! `details.attempted_name`, never as a worker.

use std::net::IpAddr;

use portcullis_proto::api::{join_token, JoinRequest, JoinResponse};
use portcullis_proto::link::Response;

use crate::audit::denials::{Failure, FailureKind};
use crate::audit::{event, Actor, AuditEvent, AuditedTx, Event};
use crate::clock;
use crate::ids::{new_id, new_secret, secret_hash, IdKind};
use crate::keys::ca::{CertificateAuthority, Leaf};
use crate::keys::{KeyError, Keyset};
use crate::state::AppState;
use crate::store::join_tokens::{self, JoinTokenRecord};
use crate::store::{rate_limits, workers as worker_rows, Store, StoreError};

/// Creates a join token valid for `ttl_secs`; returns the token (shown once) and its expiry.
pub async fn issue_join_token(
    store: &Store,
    keys: &Keyset,
    actor: Option<Actor>,
    ttl_secs: u64,
) -> Result<(String, u64), KeyError> {
    let ca = keys.certificate_authority().await?;
    let secret = new_secret();
    let now = keys.clock().unix_secs();
    let record = JoinTokenRecord {
        id: new_id(IdKind::JoinToken),
        token_hash: secret_hash(&secret),
        created_by: actor.as_ref().and_then(|a| a.user_id.clone()),
        created_at: clock::to_i64(now),
        expires_at: clock::to_i64(now + ttl_secs),
    };
    let mut tx = AuditedTx::begin(store, keys).await?;
    join_tokens::insert(tx.write(), &record).await?;
    tx.commit(AuditEvent::new(
        actor.unwrap_or_else(Actor::system),
        Event::WorkerJoinTokenCreated {
            details: event::JoinTokenCreated {
                join_token_id: record.id.clone(),
                expires_at: now + ttl_secs,
            },
        },
    ))
    .await?;
    Ok((
        join_token::format(&ca.key_fingerprint, &secret),
        now + ttl_secs,
    ))
}

/// Enrols a worker with a join token, for a link from `peer` without a worker certificate.
pub(crate) async fn join(state: &AppState, join: JoinRequest, peer: IpAddr) -> Response {
    let refuse = |reason: &'static str, message: String| {
        state.denials.note(Failure {
            kind: FailureKind::WorkerJoinFailed,
            source: peer,
            reason,
            attempted_name: valid_name(&join.name).then(|| join.name.clone()),
        });
        Response::error(message)
    };
    let now = state.clock.unix_secs();
    match allowed(state, peer, now).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                "rate limited",
                "too many join attempts from this address \
                 (workers.join_rate_limit_per_minute); wait a minute"
                    .into(),
            )
        }
        Err(e) => return store_error(e),
    }
    let (secret, spki) = match parse(&join) {
        Ok(parsed) => parsed,
        Err((reason, message)) => return refuse(reason, message),
    };
    let ca = match state.keys.certificate_authority().await {
        Ok(ca) => ca,
        Err(e) => return error(format!("keyset unavailable: {e}")),
    };
    // Every CA trusted now (two during a CA rotation), so that a worker joining in the
    // overlap follows the activation like the others.
    let ca_bundle = match state.keys.ca_bundle().await {
        Ok(bundle) => bundle.pem(),
        Err(e) => return error(format!("keyset unavailable: {e}")),
    };
    let worker_id = new_id(IdKind::Worker);
    let lifetime = state.config.worker_cert_lifetime;
    let enrolment = Enrolment {
        join: &join,
        peer,
        token_hash: secret_hash(secret),
        spki: &spki,
        worker_id: &worker_id,
        now,
    };
    match enrol(state, &ca, &enrolment).await {
        Ok(Some(cert_pem)) => Response::Joined(JoinResponse {
            worker_id,
            cert_pem,
            ca_pem: ca_bundle,
            cert_expires_at: now + lifetime.as_secs(),
        }),
        Ok(None) => refuse(
            "unknown, used or expired join token",
            "the join token is unknown, already used or expired; issue a new one with \
             `portcullis workers join-token`"
                .into(),
        ),
        Err(StoreError::Conflict(_)) => {
            error(format!("a worker named {:?} already exists", join.name))
        }
        Err(e) => store_error(e),
    }
}

/// Counts a join attempt from `peer`; false past `workers.join_rate_limit_per_minute`.
async fn allowed(state: &AppState, peer: IpAddr, now: u64) -> Result<bool, StoreError> {
    let mut conn = state.store.conn().await?;
    rate_limits::hit(
        &mut conn,
        &format!("join:{peer}"),
        clock::to_i64(now),
        60,
        state.config.join_rate_limit,
    )
    .await
}

/// The token's secret and the worker's public key (SPKI DER) from a join request, or the
/// refusal's reason and message.
fn parse(join: &JoinRequest) -> Result<(&str, Vec<u8>), (&'static str, String)> {
    let secret = match join_token::parse(&join.token) {
        Ok((_, secret)) => secret,
        Err(message) => return Err(("malformed join token", message.to_string())),
    };
    let spki = match portcullis_proto::keys::unb64(&join.public_key) {
        Ok(spki) if portcullis_proto::keys::ed25519_from_spki(&spki).is_ok() => spki,
        _ => {
            return Err((
                "malformed join request",
                "public_key must be a base64url DER Ed25519 SubjectPublicKeyInfo".into(),
            ))
        }
    };
    if !valid_name(&join.name) {
        return Err((
            "malformed join request",
            "worker name must be 1-64 letters, digits, `-`, `_` or `.`".into(),
        ));
    }
    Ok((secret, spki))
}

/// A join request that passed the checks, on its way into the store.
struct Enrolment<'a> {
    join: &'a JoinRequest,
    peer: IpAddr,
    token_hash: Vec<u8>,
    spki: &'a [u8],
    worker_id: &'a str,
    now: u64,
}

/// Consumes the join token and records the worker with its `worker_joined` event; returns
/// the worker's certificate, or nothing when the token is unknown, used or expired.
async fn enrol(
    state: &AppState,
    ca: &CertificateAuthority,
    enrolment: &Enrolment<'_>,
) -> Result<Option<String>, StoreError> {
    let lifetime = state.config.worker_cert_lifetime;
    let now = clock::to_i64(enrolment.now);
    let mut tx = state.begin_audited().await?;
    if !join_tokens::consume(tx.write(), &enrolment.token_hash, enrolment.worker_id, now).await? {
        return Ok(None);
    }
    // Only now, with a valid token consumed in this transaction, is a certificate made;
    // if anything below fails the transaction rolls back and the certificate is dropped.
    let cert_pem = ca
        .issue(
            enrolment.spki,
            Leaf::Worker {
                worker_id: enrolment.worker_id,
            },
            lifetime,
        )
        .map_err(|e| StoreError::Unavailable(format!("cannot issue the certificate: {e}")))?;
    worker_rows::insert(
        tx.write(),
        &worker_rows::WorkerRecord {
            id: enrolment.worker_id.to_owned(),
            name: enrolment.join.name.clone(),
            proxy_addr: enrolment.join.proxy_addr.clone(),
            key_fingerprint: portcullis_proto::keys::spki_fingerprint(enrolment.spki),
            state: worker_rows::ACTIVE.into(),
            created_at: now,
            last_seen_at: None,
            cert_expires_at: clock::to_i64(enrolment.now + lifetime.as_secs()),
            draining_since: None,
            stopped_at: None,
        },
    )
    .await?;
    tx.commit(AuditEvent::new(
        Actor::worker(enrolment.worker_id),
        Event::WorkerJoined {
            details: event::WorkerJoined {
                worker_id: enrolment.worker_id.to_owned(),
                name: enrolment.join.name.clone(),
                proxy_addr: enrolment.join.proxy_addr.clone(),
                peer: enrolment.peer.to_string(),
            },
        },
    ))
    .await?;
    Ok(Some(cert_pem))
}

/// A worker name: 1-64 letters, digits, `-`, `_` or `.`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn error(message: impl Into<String>) -> Response {
    Response::error(message)
}

fn store_error(err: StoreError) -> Response {
    tracing::warn!(error = %err, "join failed in the store");
    error("the controller's store is unavailable; retry")
}
