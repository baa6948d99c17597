//! The controller's side of `portcullis_policy::access`: the pure questions of the policy
//! asked with the stored user as its identity. No I/O.

use std::net::{IpAddr, SocketAddr};

use portcullis_policy::access::{
    Admission, ApprovalRefusal, ApproveAsk, RequestAsk, RequestRefusal, Scope,
};
use portcullis_policy::{Decision, Policy, TargetFacts};

use crate::store::targets::TargetRecord;
use crate::store::users::UserRecord;

/// Whether a request for `role` may be created, as `admit_request` decides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn admit(
    policy: &Policy,
    requester: &UserRecord,
    source: IpAddr,
    role: &str,
    scope: Scope<'_>,
    duration_secs: u64,
    reason: Option<&str>,
    break_glass: bool,
    now: u64,
) -> Result<Admission, RequestRefusal> {
    let identity = crate::authz::identity(requester);
    let ask = RequestAsk {
        role,
        requester: &identity,
        source,
        scope,
        duration_secs,
        reason,
        break_glass,
    };
    portcullis_policy::access::admit_request(policy, &ask, now)
}

/// Whether `approver` may approve or deny a request of `requester_id` for `role`.
pub(crate) fn may_approve(
    policy: &Policy,
    approver: &UserRecord,
    role: &str,
    requester_id: &str,
    prior_approver_ids: &[String],
    max_auth_age_secs: u64,
    now: u64,
) -> Result<(), ApprovalRefusal> {
    let identity = crate::authz::identity(approver);
    let ask = ApproveAsk {
        role,
        approver: &identity,
        approver_id: &approver.id,
        requester_id,
        prior_approver_ids,
        max_auth_age_secs,
    };
    portcullis_policy::access::may_approve(policy, &ask, now)
}

/// The facts of `target` at its resolved `endpoint`, as authorize-session builds them.
pub(crate) fn target_facts(
    user: &UserRecord,
    target: &TargetRecord,
    endpoint: SocketAddr,
) -> TargetFacts {
    crate::authz::session_request(endpoint.ip(), user, target, endpoint).target
}

/// The policy's decision on a session of `user` from `source` to `target` with `role`
/// granted by an approved request: the role counts only if it is requestable, and the
/// matrix still decides (a cell marked X denies whatever is granted).
pub(crate) fn evaluate_granted(
    policy: &Policy,
    user: &UserRecord,
    source: IpAddr,
    target: &TargetRecord,
    endpoint: SocketAddr,
    role: &str,
    now: u64,
) -> Decision {
    let mut request = crate::authz::session_request(source, user, target, endpoint);
    request.identity.granted_roles = vec![role.to_owned()];
    portcullis_policy::evaluate(policy, &request, now)
}

/// Whether a request's refusal is the caller's mistake in the body (400) rather than a
/// refusal of what was asked (403).
pub(crate) fn is_bad_request(refusal: &RequestRefusal) -> bool {
    matches!(
        refusal,
        RequestRefusal::UnknownRole { .. }
            | RequestRefusal::NotRequestable { .. }
            | RequestRefusal::NoBreakGlass { .. }
            | RequestRefusal::ReasonMissing { .. }
            | RequestRefusal::ReasonInvalid { .. }
            | RequestRefusal::ZeroDuration
            | RequestRefusal::TooLong { .. }
            | RequestRefusal::EmptyScope
            | RequestRefusal::UnknownZone { .. }
    )
}

/// The longest reason an approver or revoker may give, in characters (as a request's).
pub(crate) const MAX_REASON_CHARS: usize = 500;

/// Checks a decision's reason: 1 to [`MAX_REASON_CHARS`] characters, no control characters
/// (it is shown in terminals and notifications).
pub(crate) fn check_reason(text: &str) -> Result<(), String> {
    let count = text.chars().count();
    if count == 0 || count > MAX_REASON_CHARS {
        return Err(format!(
            "a reason is 1 to {MAX_REASON_CHARS} characters (this one has {count})"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("a reason is one line without control characters".into());
    }
    Ok(())
}
