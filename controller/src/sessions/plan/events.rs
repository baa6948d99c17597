//! The audit events of a plan: `session_authorized` for a planned session, and the refusals
//! with their `session_denied` and `session_limit_reached`.

use std::net::SocketAddr;

use portcullis_policy::Decision;
use portcullis_proto::grant::GrantClaims;

use super::{Certificate, Facts, Refusal, VaultMint};
use crate::api::extract::Principal;
use crate::audit::{event, AuditEvent, Event};
use crate::sessions::error::SessionError;
use crate::store::targets::TargetRecord;
use crate::store::workers::WorkerRecord;

/// The first refusal of a minute by `sessions.per_user.authorize_per_minute`.
pub(super) fn rate_limited(
    principal: &Principal,
    target: &TargetRecord,
    per_minute: u32,
) -> AuditEvent {
    let reached = Event::SessionLimitReached {
        reason: format!("more than {per_minute} authorize-session requests in a minute"),
        details: event::LimitReached {
            limit: "sessions.per_user.authorize_per_minute".into(),
            value: u64::from(per_minute),
            live: None,
        },
    };
    AuditEvent::new(principal.actor(), reached).target(&target.id)
}

/// What the plan issues, for its event.
pub(super) struct Issued<'a> {
    pub(super) claims: &'a GrantClaims,
    pub(super) worker: &'a WorkerRecord,
    pub(super) logins: &'a [String],
    /// How the session's SSH runs, when an SSH key was sent.
    pub(super) ssh_mode: Option<portcullis_policy::SshMode>,
    pub(super) certificate: Option<&'a Certificate>,
    pub(super) vault: Option<&'a VaultMint>,
}

pub(super) fn authorized(facts: &Facts<'_>, issued: &Issued<'_>) -> AuditEvent {
    let (decision, claims) = (facts.decision, issued.claims);
    let authorized = Event::SessionAuthorized {
        reason: decision.reason.clone(),
        policy_hash: decision.policy_hash.clone(),
        details: event::SessionAuthorized {
            worker_id: issued.worker.id.clone(),
            endpoint: claims.dst.clone(),
            expires_at: claims.exp,
            connection_limit: claims.lim,
            grant_key_id: facts.keys.grant.to_owned(),
            ssh_certificate: issued.certificate.map(|cert| event::SshCertificate {
                serial: cert.serial.to_string(),
                key_id: claims.sid.clone(),
                ca_key_id: cert.ca_key_id.clone(),
                principals: issued.logins.to_vec(),
                valid_before: cert.valid_before,
            }),
            vault_credential_id: issued.vault.map(|v| v.credential_id.clone()),
            source_zone: decision.source_zone.clone(),
            target_zone: decision.target_zone.clone(),
            cells: decision.cells.clone(),
            ssh_mode: issued.ssh_mode.map(|mode| mode.as_str().to_owned()),
            parent_session: None,
            destination: None,
            access_request: facts.access.as_ref().map(|a| a.request_id.to_owned()),
            step_up: facts.step_up.map(str::to_owned),
        },
    };
    AuditEvent::new(facts.principal.actor(), authorized)
        .session(&claims.sid)
        .target(&facts.target.id)
}

pub(super) fn too_many_live(facts: &Facts<'_>, live: i64) -> Refusal {
    let max_live = facts.settings.max_live;
    let reached = Event::SessionLimitReached {
        reason: format!("{live} live sessions, the most one user may hold is {max_live}"),
        details: event::LimitReached {
            limit: "sessions.per_user.max_live".into(),
            value: u64::from(max_live),
            live: Some(u64::try_from(live).unwrap_or(0)),
        },
    };
    Refusal {
        error: SessionError::TooManyLive { max_live, live },
        event: Some(Box::new(
            AuditEvent::new(facts.principal.actor(), reached).target(&facts.target.id),
        )),
        step_up: None,
    }
}

/// A denial and its `session_denied` event: the facts of `session_authorized` where the
/// decision got that far (zones, service, the matrix cells checked, the role rule that
/// failed), and the endpoint the target resolved to.
pub(super) fn denial(
    principal: &Principal,
    target: &TargetRecord,
    endpoint: SocketAddr,
    reason: String,
    decision: Option<&Decision>,
) -> Refusal {
    let denied = Event::SessionDenied {
        reason: reason.clone(),
        policy_hash: decision.map(|d| d.policy_hash.clone()),
        details: event::SessionDenied {
            endpoint: Some(endpoint.to_string()),
            decision: decision.map(|d| event::DeniedAt {
                source_zone: d.source_zone.clone(),
                target_zone: d.target_zone.clone(),
                service: d.service.clone(),
                cells: d.cells.clone(),
                role_rule: d.role_rule.clone(),
            }),
            parent_session: None,
            destination: None,
        },
    };
    let admitting_cell = decision
        .filter(|d| d.role_rule.is_some())
        .and_then(|d| d.cells.first().cloned());
    Refusal {
        error: SessionError::Denied {
            reason,
            admitting_cell,
        },
        event: Some(Box::new(
            AuditEvent::new(principal.actor(), denied).target(&target.id),
        )),
        step_up: decision.and_then(|d| d.step_up.clone()).map(Box::new),
    }
}

/// A denial of a discovered target that is a template or a stopped guest, and its
/// `session_denied` event (no endpoint: the address was not resolved).
pub(super) fn unavailable(principal: &Principal, target: &TargetRecord) -> Refusal {
    let seen = crate::catalog::plan::Seen::of(target);
    let key = target.source_key.as_deref().unwrap_or("?");
    let reason = match seen.as_ref().map(|s| s.status.as_str()) {
        Some("template") => format!(
            "target {} is a template in Proxmox ({key}): a template is never connectable; \
             connect to a guest cloned from it",
            target.name
        ),
        status => format!(
            "target {} is a {} guest in Proxmox ({key}): start it, and the next catalog sync \
             makes it connectable",
            target.name,
            status.unwrap_or("stopped")
        ),
    };
    let denied = Event::SessionDenied {
        reason: reason.clone(),
        policy_hash: None,
        details: event::SessionDenied {
            endpoint: None,
            decision: None,
            parent_session: None,
            destination: None,
        },
    };
    Refusal {
        error: SessionError::Denied {
            reason,
            admitting_cell: None,
        },
        event: Some(Box::new(
            AuditEvent::new(principal.actor(), denied).target(&target.id),
        )),
        step_up: None,
    }
}
