//! Creating and deciding requests: each change commits with its event through one
//! `AuditedTx`, as a conditional update (a request changes state once, whoever races), and
//! revoking one ends every live session under it after its commit (`super::ending`).

use portcullis_policy::access::Scope;
use portcullis_policy::{Permission, TargetFacts};
use portcullis_proto::access::{CreateAccessRequest, RequestState};

use super::error::AccessError;
use super::notify;
use super::policy_edge;
use crate::api::extract::Principal;
use crate::audit::{event, AuditEvent, Event};
use crate::clock::{to_i64, to_u64};
use crate::ids;
use crate::state::AppState;
use crate::store::access_requests::{self as rows, AccessRecord, ApprovalRecord, RunRecord};
use crate::store::{targets, StoreError};

/// The most arguments a run's command may have, and the most bytes all of them together.
const MAX_RUN_ARGS: usize = 256;
const MAX_RUN_BYTES: usize = 8192;
/// The most targets one request may name.
const MAX_TARGETS: usize = 100;

/// `POST /v1/requests`: checks the ask against the policy, then stores the request with its
/// event (`access_requested`, or `break_glass`), approved at once when the policy says so.
pub(crate) async fn create(
    state: &AppState,
    principal: &Principal,
    body: CreateAccessRequest,
) -> Result<AccessRecord, AccessError> {
    let now = state.clock.unix_secs();
    let policy = state.policy().ok_or_else(|| {
        AccessError::Refused("no policy is loaded, so no access can be requested".into())
    })?;
    let (targets, zone) = scope_of(&body)?;
    if let Some(command) = &body.run_command {
        check_command(command)?;
        if zone.is_some() {
            return Err(AccessError::Field {
                field: "zone",
                message: "a run covers named targets only: pass --targets".into(),
            });
        }
    }
    let mut resolved: Vec<(String, TargetFacts)> = Vec::new();
    let mut names = Vec::new();
    for asked in &targets {
        let target = {
            let mut conn = state.store.conn().await?;
            targets::find(&mut conn, asked).await?
        }
        .ok_or_else(|| AccessError::Field {
            field: "targets",
            message: format!("no target {asked:?}: `portcullis targets list` shows them"),
        })?;
        let endpoint = crate::sessions::authorize::resolve(&target.address)
            .await
            .map_err(|e| AccessError::Refused(format!("{}: {e}", target.name)))?;
        resolved.push((
            target.name.clone(),
            policy_edge::target_facts(&principal.user, &target, endpoint),
        ));
        if !names.contains(&target.name) {
            names.push(target.name.clone());
        }
    }
    let scope = match &zone {
        Some(zone) => Scope::Zone(zone),
        None => Scope::Targets(&resolved),
    };
    let admission = policy_edge::admit(
        &policy,
        &principal.user,
        principal.peer.ip(),
        &body.role,
        scope,
        body.duration_secs,
        body.reason.as_deref(),
        body.break_glass,
        now,
    )
    .map_err(|refusal| match policy_edge::is_bad_request(&refusal) {
        true => AccessError::Field {
            field: field_of(&refusal),
            message: refusal.to_string(),
        },
        // Refused by the policy: audited, as any refusal of what a caller may do.
        false => AccessError::NotAllowed {
            message: refusal.to_string(),
            actor: Box::new(principal.actor()),
            permission: "access:request",
        },
    })?;
    let approved = admission.approvals_needed == 0;
    let duration = to_i64(body.duration_secs);
    let created_at = to_i64(now);
    let record = AccessRecord {
        id: new_request_id(),
        user_id: principal.user.id.clone(),
        role: body.role.clone(),
        targets: names,
        zone,
        state: if approved {
            RequestState::Approved
        } else {
            RequestState::Pending
        },
        reason: body.reason.clone(),
        break_glass: admission.break_glass,
        duration_secs: duration,
        created_at,
        approved_at: approved.then_some(created_at),
        expires_at: if approved {
            created_at.saturating_add(duration)
        } else {
            created_at.saturating_add(to_i64(state.config.access.pending_ttl.as_secs()))
        },
        approvals_needed: i64::from(admission.approvals_needed),
        decided_by: None,
        decision_reason: None,
        run: body.run_command.clone().map(|command| RunRecord {
            command,
            ..RunRecord::default()
        }),
    };
    let details = event::AccessRequested {
        request_id: record.id.clone(),
        role: record.role.clone(),
        targets: record.targets.clone(),
        zone: record.zone.clone(),
        duration_secs: body.duration_secs,
        request_reason: record.reason.clone(),
        approvals_needed: admission.approvals_needed,
        break_glass: admission.break_glass,
        preapproved: admission.preapproved,
        expires_at: to_u64(record.expires_at),
        cells: admission.cells.clone(),
        run_command: body.run_command.clone(),
    };
    let event = match admission.break_glass {
        true => Event::BreakGlass {
            reason: record.reason.clone().unwrap_or_default(),
            details,
        },
        false => Event::AccessRequested { details },
    };
    let event = AuditEvent::new(principal.actor(), event);
    let mut tx = state.begin_audited().await?;
    rows::insert(tx.write(), &record).await?;
    tx.commit(event.clone()).await?;
    notify::send(state, &event);
    Ok(record)
}

/// A new request id, `ar_` and 96 random bits.
fn new_request_id() -> String {
    ids::new_id(ids::IdKind::AccessRequest)
}

/// The request's scope: targets or a zone, never both.
fn scope_of(body: &CreateAccessRequest) -> Result<(Vec<String>, Option<String>), AccessError> {
    match (&body.zone, body.targets.is_empty()) {
        (Some(_), false) => Err(AccessError::Field {
            field: "zone",
            message: "a request covers targets or a zone, not both".into(),
        }),
        (Some(zone), true) => Ok((Vec::new(), Some(zone.clone()))),
        (None, _) if body.targets.len() > MAX_TARGETS => Err(AccessError::Field {
            field: "targets",
            message: format!("at most {MAX_TARGETS} targets; ask for a zone instead"),
        }),
        (None, _) => Ok((body.targets.clone(), None)),
    }
}

/// A run's command: argv, not empty, bounded, no NUL or other control characters (it is
/// shown to approvers and in the audit log).
fn check_command(command: &[String]) -> Result<(), AccessError> {
    let bad = |message: String| AccessError::Field {
        field: "run_command",
        message,
    };
    if command.first().is_none_or(|c| c.is_empty()) {
        return Err(bad("the command is empty: give it after `--`".into()));
    }
    if command.len() > MAX_RUN_ARGS
        || command.iter().map(String::len).sum::<usize>() > MAX_RUN_BYTES
    {
        return Err(bad(format!(
            "the command is longer than {MAX_RUN_ARGS} arguments or {MAX_RUN_BYTES} bytes; \
             run a script instead"
        )));
    }
    if command.iter().any(|a| a.chars().any(char::is_control)) {
        return Err(bad("an argument holds a control character".into()));
    }
    Ok(())
}

fn field_of(refusal: &portcullis_policy::access::RequestRefusal) -> &'static str {
    use portcullis_policy::access::RequestRefusal as R;
    match refusal {
        R::UnknownRole { .. } | R::NotRequestable { .. } => "role",
        R::NoBreakGlass { .. } => "break_glass",
        R::ReasonMissing { .. } | R::ReasonInvalid { .. } => "reason",
        R::ZeroDuration | R::TooLong { .. } => "duration_secs",
        R::UnknownZone { .. } => "zone",
        _ => "targets",
    }
}

/// Reads request `id`; 404 when there is none.
pub(crate) async fn get(state: &AppState, id: &str) -> Result<AccessRecord, AccessError> {
    let mut conn = state.store.conn().await?;
    rows::get(&mut conn, id)
        .await?
        .ok_or_else(|| AccessError::NotFound(id.to_owned()))
}

/// Whether `principal` may see request `record`: its requester, anyone with `audit:read`,
/// or someone in the approvers of its role.
pub(crate) fn may_see(state: &AppState, principal: &Principal, record: &AccessRecord) -> bool {
    record.user_id == principal.user.id
        || principal.has(Permission::AuditRead)
        || approver_roles(state, principal).contains(&record.role)
}

/// The requestable roles `principal` is an approver of (by group, whatever the login's age).
pub(crate) fn approver_roles(state: &AppState, principal: &Principal) -> Vec<String> {
    let Some(policy) = state.policy() else {
        return Vec::new();
    };
    policy
        .requestable_roles()
        .filter(|(_, terms)| {
            terms
                .approvers
                .iter()
                .any(|g| principal.user.groups.iter().any(|mine| mine == g))
        })
        .map(|(role, _)| role.to_owned())
        .collect()
}

/// Checks that `principal` may decide on `record` now (approve or deny); the refusal is a
/// 403 audited as `permission_denied`.
fn may_decide(
    state: &AppState,
    principal: &Principal,
    record: &AccessRecord,
    prior: &[String],
    what: &'static str,
) -> Result<(), AccessError> {
    let policy = state.policy().ok_or_else(|| {
        AccessError::Unavailable("no policy is loaded: requests cannot be decided".into())
    })?;
    let now = state.clock.unix_secs();
    let max_age = state.config.access.approver_max_auth_age.as_secs();
    policy_edge::may_approve(
        &policy,
        &principal.user,
        &record.role,
        &record.user_id,
        prior,
        max_age,
        now,
    )
    .map_err(|refusal| AccessError::NotAllowed {
        message: refusal.to_string(),
        actor: Box::new(principal.actor()),
        permission: what,
    })
}

/// Refuses a request that is not pending, or whose approval deadline has passed.
fn check_pending(record: &AccessRecord, now: i64) -> Result<(), AccessError> {
    if record.state != RequestState::Pending {
        return Err(AccessError::Conflict(format!(
            "request {} is {}, not pending: only a pending request is approved or denied",
            record.id, record.state
        )));
    }
    if record.expires_at <= now {
        return Err(AccessError::Conflict(format!(
            "request {} was not approved in time and has expired; make a new one",
            record.id
        )));
    }
    Ok(())
}

fn checked_reason(reason: Option<&str>) -> Result<Option<String>, AccessError> {
    match reason {
        None => Ok(None),
        Some(text) => policy_edge::check_reason(text)
            .map(|()| Some(text.to_owned()))
            .map_err(|message| AccessError::Field {
                field: "reason",
                message,
            }),
    }
}

/// `POST /v1/requests/{id}/approve`: one approval; the last one needed approves the request
/// for its duration from now.
pub(crate) async fn approve(
    state: &AppState,
    principal: &Principal,
    id: &str,
    reason: Option<&str>,
) -> Result<AccessRecord, AccessError> {
    let reason = checked_reason(reason)?;
    let record = get(state, id).await?;
    let now = to_i64(state.clock.unix_secs());
    let prior: Vec<String> = {
        let mut conn = state.store.conn().await?;
        rows::approvals(&mut conn, id)
            .await?
            .into_iter()
            .map(|a| a.user_id)
            .collect()
    };
    may_decide(state, principal, &record, &prior, "access:approve")?;
    check_pending(&record, now)?;
    let needed = (record.approvals_needed - 1).max(0);
    let is_final = needed == 0;
    let window_end = now.saturating_add(record.duration_secs);
    let mut tx = state.begin_audited().await?;
    let approval = ApprovalRecord {
        request_id: id.to_owned(),
        user_id: principal.user.id.clone(),
        at: now,
        reason: reason.clone(),
    };
    match rows::add_approval(tx.write(), &approval).await {
        Err(StoreError::Conflict(_)) => {
            return Err(AccessError::Conflict(
                "you have already approved this request; it needs another approver".into(),
            ))
        }
        other => other?,
    }
    let changed = match is_final {
        true => rows::approve(tx.write(), id, now, window_end).await?,
        false => rows::set_needed(tx.write(), id, needed).await?,
    };
    if !changed {
        return Err(AccessError::Conflict(format!(
            "request {id} changed meanwhile (decided or expired); show it again"
        )));
    }
    let event = AuditEvent::new(
        principal.actor(),
        Event::AccessApproved {
            details: event::AccessApproved {
                request_id: id.to_owned(),
                role: record.role.clone(),
                requester: record.user_id.clone(),
                approval_reason: reason,
                approvals_needed: u32::try_from(needed).unwrap_or(0),
                is_final,
                expires_at: is_final.then_some(to_u64(window_end)),
            },
        },
    );
    tx.commit(event.clone()).await?;
    notify::send(state, &event);
    get(state, id).await
}

/// `POST /v1/requests/{id}/deny`: a pending request refused by one who may approve it.
pub(crate) async fn deny(
    state: &AppState,
    principal: &Principal,
    id: &str,
    reason: Option<&str>,
) -> Result<AccessRecord, AccessError> {
    let reason = checked_reason(reason)?;
    let record = get(state, id).await?;
    let now = to_i64(state.clock.unix_secs());
    may_decide(state, principal, &record, &[], "access:deny")?;
    check_pending(&record, now)?;
    let mut tx = state.begin_audited().await?;
    let pending = [RequestState::Pending];
    let by = Some(principal.user.id.as_str());
    if !rows::close(
        tx.write(),
        id,
        &pending,
        RequestState::Denied,
        by,
        reason.as_deref(),
    )
    .await?
    {
        return Err(AccessError::Conflict(format!(
            "request {id} changed meanwhile (decided or expired); show it again"
        )));
    }
    let event = AuditEvent::new(
        principal.actor(),
        Event::AccessDenied {
            reason,
            details: event::AccessRef {
                request_id: id.to_owned(),
                role: record.role.clone(),
                requester: record.user_id.clone(),
            },
        },
    );
    tx.commit(event.clone()).await?;
    notify::send(state, &event);
    get(state, id).await
}

/// `POST /v1/requests/{id}/revoke`: ends an open request (by its requester, one who may
/// approve it, or a holder of `sessions:cancel-any`) and every live session under it.
pub(crate) async fn revoke(
    state: &AppState,
    principal: &Principal,
    id: &str,
    reason: Option<&str>,
) -> Result<AccessRecord, AccessError> {
    let reason = checked_reason(reason)?;
    let record = get(state, id).await?;
    if record.user_id != principal.user.id && !principal.has(Permission::SessionsCancelAny) {
        // An approver of the role, on the same terms as for approving (MFA, a fresh login).
        may_decide(state, principal, &record, &[], "access:revoke")?;
    }
    if !record.state.is_open() {
        return Err(AccessError::Conflict(format!(
            "request {id} is {} already: only a pending or approved request is revoked",
            record.state
        )));
    }
    let ended = super::ending::close(
        state,
        &record,
        RequestState::Revoked,
        principal.actor(),
        Some(principal.user.id.as_str()),
        reason,
        None,
    )
    .await?;
    if ended.is_none() {
        return Err(AccessError::Conflict(format!(
            "request {id} changed meanwhile (decided or expired); show it again"
        )));
    }
    get(state, id).await
}
