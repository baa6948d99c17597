//! `VetForward`: a gateway session asks for a `direct-tcpip` channel (`ssh -L`, `-W`, `-J`)
//! to a destination that is not the target's own loopback. The worker never resolves or
//! dials such a name itself: the controller resolves it once, runs the whole policy for it
//! as it does for a session (the user's source zone, the broker's leg to the destination,
//! the role), and, if allowed, opens a new session of that user for the forward, under the
//! gateway session (its parent: it ends when the parent ends and never outlives it). The
//! worker dials only the address that comes back and reports the forward's connection under
//! the new session.
//!
//! The checks, in order: the parent session (live, this worker's, in gateway mode: refused
//! unaudited, like an unknown session), the destination's address (it resolves, and is
//! neither the worker's own loopback nor unroutable), the parent session still allowed with
//! `ssh.forward_local` among its rights, then the policy for the destination. Every refusal
//! from the address on is recorded as `session_denied` naming the parent session, the
//! destination and the cells checked. The decision is [`decide`], without I/O; [`vet`] reads
//! its facts and commits its outcome.

use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{Decision, Outcome};
use portcullis_proto::gateway::{VetForward, VettedForward};
use portcullis_proto::link::Response;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::state::AppState;
use crate::store::session_list::Decided;
use crate::store::sessions::{self as session_rows, SessionRecord, SessionState};
use crate::store::users::UserRecord;
use crate::store::StoreError;

/// Why a forward was refused before its destination was looked at (not audited: nothing
/// about the user's request was decided).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParentRefused {
    #[error("the gateway session is unknown to the controller")]
    Unknown,
    #[error("the gateway session has ended")]
    Ended,
    #[error("the gateway session belongs to another worker")]
    OtherWorker,
    #[error("the session is not in gateway mode: only a gateway session may ask for forwards")]
    NotGateway,
}

/// The facts [`decide`] decides on.
pub(crate) struct Facts<'a> {
    pub now: u64,
    pub parent: &'a SessionRecord,
    pub user: &'a UserRecord,
    /// `host:port` as the user's client wrote it.
    pub destination: &'a str,
    /// Where the destination resolved to.
    pub endpoint: SocketAddr,
    /// The policy's decision on the parent session now (`None`: no policy is loaded, or the
    /// parent's target is gone).
    pub parent_decision: Option<&'a Decision>,
    /// The policy's decision on the forward (`None`: no policy is loaded).
    pub decision: Option<&'a Decision>,
    pub session_id: String,
}

/// A forward the policy allowed: its session and `session_authorized`.
#[derive(Debug)]
pub(crate) struct Plan {
    pub record: SessionRecord,
    /// The matrix cell and roles that allowed it, stored on its row for the console.
    pub decided: Decided,
    pub event: AuditEvent,
}

/// A refused forward: the sentence for the worker (its `ChannelRefusal` rule quotes it) and
/// the `session_denied` that records it.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub reason: String,
    pub event: Box<AuditEvent>,
}

/// Checks the parent session of a forward request.
pub(crate) fn check_parent<'a>(
    parent: Option<&'a SessionRecord>,
    worker_id: &str,
    now: u64,
) -> Result<&'a SessionRecord, ParentRefused> {
    let parent = parent.ok_or(ParentRefused::Unknown)?;
    if parent.state == SessionState::Terminated || parent.expires_at <= clock::to_i64(now) {
        return Err(ParentRefused::Ended);
    }
    if parent.worker_id != worker_id {
        return Err(ParentRefused::OtherWorker);
    }
    if parent.ssh_mode != portcullis_policy::SshMode::Gateway || parent.parent_session_id.is_some()
    {
        return Err(ParentRefused::NotGateway);
    }
    Ok(parent)
}

/// Whether the worker may never dial `ip` for a user, whatever the policy says: its own
/// loopback (the target's loopback is reached through the upstream SSH connection, never by
/// address), unspecified (which reaches the worker itself) or multicast.
pub(crate) fn is_never_dialled(ip: IpAddr) -> bool {
    let loopback = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    loopback || crate::sessions::plan::is_unroutable(ip)
}

/// Decides a forward whose parent passed [`check_parent`]; see the module doc.
pub(crate) fn decide(facts: &Facts<'_>) -> Result<Plan, Refusal> {
    let endpoint = facts.endpoint;
    if is_never_dialled(endpoint.ip()) {
        return Err(refusal(
            facts,
            Some(endpoint),
            format!(
                "{} resolves to {}, which a worker never dials for a user (its own loopback, \
                 unspecified or multicast); forward to the target's loopback as `localhost`",
                facts.destination,
                endpoint.ip()
            ),
            None,
        ));
    }
    let (Some(parent_decision), Some(decision)) = (facts.parent_decision, facts.decision) else {
        return Err(refusal(
            facts,
            Some(endpoint),
            "no policy is loaded, or the gateway session's target is gone: everything is denied"
                .into(),
            None,
        ));
    };
    if parent_decision.outcome != Outcome::Allow {
        let reason = format!(
            "the gateway session is no longer allowed: {}",
            parent_decision.reason
        );
        return Err(refusal(
            facts,
            Some(endpoint),
            reason,
            Some(parent_decision),
        ));
    }
    if !parent_decision.constraints.ssh.rights.forward_local {
        let reason = portcullis_proto::gateway::rule_for_right("forward_local");
        return Err(refusal(
            facts,
            Some(endpoint),
            reason,
            Some(parent_decision),
        ));
    }
    if decision.outcome != Outcome::Allow {
        let reason = format!(
            "forward to {} denied: {}",
            facts.destination, decision.reason
        );
        return Err(refusal(facts, Some(endpoint), reason, Some(decision)));
    }
    Ok(plan(facts, decision))
}

/// The forward's session and its `session_authorized`.
fn plan(facts: &Facts<'_>, decision: &Decision) -> Plan {
    let parent = facts.parent;
    let now = clock::to_i64(facts.now);
    let mut expires_at = parent.expires_at;
    if let Some(max) = decision.constraints.max_session_secs {
        expires_at = expires_at.min(now.saturating_add(clock::to_i64(max.max(1))));
    }
    let connection_limit = decision.constraints.connection_limit.unwrap_or(0);
    let record = SessionRecord {
        id: facts.session_id.clone(),
        user_id: parent.user_id.clone(),
        // The target the forward was asked through, for listings and the audit log; the
        // forward's own destination is its endpoint.
        target_id: parent.target_id.clone(),
        worker_id: parent.worker_id.clone(),
        state: SessionState::Active,
        termination_reason: None,
        client_addr: parent.client_addr.clone(),
        client_key_hash: parent.client_key_hash.clone(),
        endpoint: facts.endpoint.to_string(),
        connection_limit: i64::from(connection_limit),
        connections_count: 0,
        policy_hash: decision.policy_hash.clone(),
        created_at: now,
        expires_at,
        activated_at: Some(now),
        terminated_at: None,
        ssh_mode: portcullis_policy::SshMode::Certificate,
        parent_session_id: Some(parent.id.clone()),
    };
    let authorized = Event::SessionAuthorized {
        reason: decision.reason.clone(),
        policy_hash: decision.policy_hash.clone(),
        details: event::SessionAuthorized {
            worker_id: record.worker_id.clone(),
            endpoint: record.endpoint.clone(),
            expires_at: clock::to_u64(expires_at),
            connection_limit,
            // A forward has no grant of its own: the worker carries it under the gateway
            // session's grant.
            grant_key_id: String::new(),
            ssh_certificate: None,
            vault_credential_id: None,
            source_zone: decision.source_zone.clone(),
            target_zone: decision.target_zone.clone(),
            cells: decision.cells.clone(),
            ssh_mode: None,
            parent_session: Some(parent.id.clone()),
            destination: Some(facts.destination.to_owned()),
            access_request: None,
            step_up: None,
        },
    };
    let event = AuditEvent::new(actor(facts.user, parent), authorized)
        .session(&record.id)
        .target(&parent.target_id);
    Plan {
        record,
        decided: Decided::of(decision),
        event,
    }
}

/// A refusal and its `session_denied` (on the gateway session).
fn refusal(
    facts: &Facts<'_>,
    endpoint: Option<SocketAddr>,
    reason: String,
    decision: Option<&Decision>,
) -> Refusal {
    refused(
        facts.user,
        facts.parent,
        facts.destination,
        endpoint,
        reason,
        decision,
    )
}

fn refused(
    user: &UserRecord,
    parent: &SessionRecord,
    destination: &str,
    endpoint: Option<SocketAddr>,
    reason: String,
    decision: Option<&Decision>,
) -> Refusal {
    let denied = Event::SessionDenied {
        reason: reason.clone(),
        policy_hash: decision.map(|d| d.policy_hash.clone()),
        details: event::SessionDenied {
            endpoint: endpoint.map(|e| e.to_string()),
            decision: decision.map(|d| event::DeniedAt {
                source_zone: d.source_zone.clone(),
                target_zone: d.target_zone.clone(),
                service: d.service.clone(),
                cells: d.cells.clone(),
                role_rule: d.role_rule.clone(),
            }),
            parent_session: Some(parent.id.clone()),
            destination: Some(destination.to_owned()),
        },
    };
    let cells = match decision.map(|d| d.cells.as_slice()) {
        Some(cells) if !cells.is_empty() => format!(" (cells checked: {})", cells.join("; ")),
        _ => String::new(),
    };
    Refusal {
        reason: format!("{reason}{cells}"),
        event: Box::new(
            AuditEvent::new(actor(user, parent), denied)
                .session(&parent.id)
                .target(&parent.target_id),
        ),
    }
}

/// The user of the gateway session, from the address their session came from.
fn actor(user: &UserRecord, parent: &SessionRecord) -> Actor {
    Actor {
        user_id: Some(user.id.clone()),
        username: Some(user.username.clone()),
        groups: user.groups.clone(),
        source: Some(parent.client_addr.clone()),
    }
}

/// Where `host:port` points: a literal address as is, a name resolved once (the first
/// address, IPv4 preferred, as for a target).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    crate::sessions::authorize::resolve(&format!("{host}:{port}"))
        .await
        .map_err(|e| e.to_string())
}

/// Answers a worker's `VetForward` request.
pub(crate) async fn vet(state: &AppState, worker_id: &str, request: VetForward) -> Response {
    match vet_forward(state, worker_id, &request).await {
        Ok(Ok(vetted)) => Response::ForwardVetted(vetted),
        Ok(Err(reason)) => {
            tracing::info!(session.id = %portcullis_proto::text::escaped(&request.session_id), reason = %portcullis_proto::text::escaped(&reason), "forward refused");
            Response::Refused { reason }
        }
        Err(err) => crate::link::handler::store_error(state, err),
    }
}

async fn vet_forward(
    state: &AppState,
    worker_id: &str,
    request: &VetForward,
) -> Result<Result<VettedForward, String>, StoreError> {
    let now = state.clock.unix_secs();
    let destination = format!("{}:{}", request.host, request.port);
    let (parent, user, target, granted) = {
        let mut conn = state.store.conn().await?;
        let parent = session_rows::get(&mut conn, &request.session_id).await?;
        let parent = match check_parent(parent.as_ref(), worker_id, now) {
            Ok(parent) => parent.clone(),
            Err(refused) => return Ok(Err(format!("forward to {destination} refused: {refused}"))),
        };
        let user = crate::store::users::get(&mut conn, &parent.user_id).await?;
        let target = crate::store::targets::find(&mut conn, &parent.target_id).await?;
        let target = target.filter(|t| t.id == parent.target_id);
        // A gateway session under an approved access request: its role, for both decisions.
        let at = clock::to_i64(now);
        let granted =
            crate::store::access_requests::granted_role_of_session(&mut conn, &parent.id, at)
                .await?;
        (parent, user, target, granted)
    };
    let Some(user) = user else {
        return Ok(Err("the gateway session's user is gone".into()));
    };
    let endpoint = match resolve(&request.host, request.port).await {
        Ok(endpoint) => endpoint,
        Err(detail) => {
            let reason = format!("cannot resolve {destination}: {detail}");
            let refusal = refused(&user, &parent, &destination, None, reason, None);
            state.audit_alone(*refusal.event).await?;
            return Ok(Err(refusal.reason));
        }
    };
    let policy = state.policy();
    let source: Option<IpAddr> = parent.client_addr.parse().ok();
    let parent_endpoint: Option<SocketAddr> = parent.endpoint.parse().ok();
    let parent_decision = match (policy.as_deref(), &target, source, parent_endpoint) {
        (Some(policy), Some(target), Some(source), Some(at)) => {
            let mut request = crate::authz::session_request(source, &user, target, at);
            request.identity.granted_roles = granted.iter().cloned().collect();
            Some(portcullis_policy::evaluate(policy, &request, now))
        }
        _ => None,
    };
    let decision = match (policy.as_deref(), source) {
        (Some(policy), Some(source)) => {
            let mut request = crate::authz::forward_request(source, &user, endpoint);
            request.identity.granted_roles = granted.iter().cloned().collect();
            Some(portcullis_policy::evaluate(policy, &request, now))
        }
        _ => None,
    };
    let facts = Facts {
        now,
        parent: &parent,
        user: &user,
        destination: &destination,
        endpoint,
        parent_decision: parent_decision.as_ref(),
        decision: decision.as_ref(),
        session_id: new_id(IdKind::Session),
    };
    let plan = match decide(&facts) {
        Ok(plan) => plan,
        Err(refusal) => {
            state.audit_alone(*refusal.event).await?;
            return Ok(Err(refusal.reason));
        }
    };
    let mut tx = state.begin_audited().await?;
    // Checked again in the transaction, the parent's row locked: a parent that ended
    // meanwhile gets no forward, and one that ends from now on sees the forward and ends it.
    let current = session_rows::get_locked(tx.write(), &parent.id).await?;
    if let Err(refused) = check_parent(current.as_ref(), worker_id, now) {
        return Ok(Err(format!("forward to {destination} refused: {refused}")));
    }
    session_rows::insert(tx.write(), &plan.record, None, &plan.decided).await?;
    tx.commit(plan.event).await?;
    let expires_at = clock::to_u64(plan.record.expires_at);
    crate::sessions::lifecycle::arm_expiry(state, plan.record.id.clone(), expires_at);
    tracing::info!(session.id = %plan.record.id, parent.id = %parent.id, endpoint = %plan.record.endpoint, "forward vetted");
    Ok(Ok(VettedForward {
        endpoint: plan.record.endpoint,
        session_id: plan.record.id,
        expires_at,
    }))
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
