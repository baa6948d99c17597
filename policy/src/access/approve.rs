//! Whether someone may approve (or deny) a request for a requestable role.

use crate::policy::Policy;
use crate::request::Identity;
use crate::roles::{any_group_matches, AUTH_TIME_SKEW_SECS};

/// The `amr` values of which an approver's login must carry one: `mfa`, which the OIDC login
/// adds when the provider's `amr`/`acr` meet `[auth.oidc.mfa]`, or `otp`, which a local login
/// with a TOTP code (or a provider that used one) carries (RFC 8176).
pub(crate) const APPROVER_AMR: &[&str] = &["mfa", "otp"];

/// Someone about to approve or deny a request.
#[derive(Debug, Clone, Copy)]
pub struct ApproveAsk<'a> {
    pub role: &'a str,
    /// The approver's token identity (groups, amr, auth_time).
    pub approver: &'a Identity,
    /// User ids, compared for "never the requester" and "never twice".
    pub approver_id: &'a str,
    pub requester_id: &'a str,
    pub prior_approver_ids: &'a [String],
    /// The controller's `[access] approver_max_auth_age`.
    pub max_auth_age_secs: u64,
}

/// Why someone may not approve or deny a request; each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    #[error("the policy has no role `{role}` any more, so its requests cannot be approved; revoke the request")]
    UnknownRole { role: String },
    #[error("role `{role}` is no longer requestable, so its requests cannot be approved; revoke the request")]
    NotRequestable { role: String },
    #[error("you asked for this access, and a request is never approved by its requester; ask one of {approvers}")]
    Requester { approvers: String },
    #[error("you have already approved this request; it needs another approver from {approvers}")]
    AlreadyApproved { approvers: String },
    #[error("a service account cannot approve or deny requests; a person from {approvers} must")]
    ServiceAccount { approvers: String },
    #[error("you may not approve requests for role `{role}`: its approvers are members of {approvers}, and none of this login's groups is one of them")]
    NotApprover { role: String, approvers: String },
    #[error("approving needs a login with a second factor (amr `mfa` or `otp`), and this one has none: log in again with MFA: `portcullis login`")]
    NoMfa,
    #[error("approving needs a recent login ({why}): log in again: `portcullis login`")]
    StaleLogin { why: String },
}

/// Whether `ask.approver` may approve or deny a request for `ask.role` at `now`. Refuses:
/// the role unknown or not requestable, the requester, someone who already approved, a
/// service account, someone in none of the role's approvers groups (of this login's groups),
/// a login without MFA, and a login older than `max_auth_age_secs` (or without auth_time).
pub fn may_approve(policy: &Policy, ask: &ApproveAsk<'_>, now: u64) -> Result<(), ApprovalRefusal> {
    let role = policy
        .role(ask.role)
        .ok_or_else(|| ApprovalRefusal::UnknownRole {
            role: ask.role.to_owned(),
        })?;
    let terms = role
        .requestable
        .as_ref()
        .ok_or_else(|| ApprovalRefusal::NotRequestable {
            role: role.name.clone(),
        })?;
    let approvers = if terms.approvers.is_empty() {
        "no group (its requests are preapproved or break-glass only)".to_owned()
    } else {
        terms.approvers.join(", ")
    };
    let id = ask.approver;
    if ask.approver_id == ask.requester_id {
        return Err(ApprovalRefusal::Requester { approvers });
    }
    if ask.prior_approver_ids.iter().any(|p| p == ask.approver_id) {
        return Err(ApprovalRefusal::AlreadyApproved { approvers });
    }
    if id.is_service_account() {
        return Err(ApprovalRefusal::ServiceAccount { approvers });
    }
    if !any_group_matches(role.group_match, &terms.approvers, &id.groups) {
        return Err(ApprovalRefusal::NotApprover {
            role: role.name.clone(),
            approvers,
        });
    }
    if !id.amr.iter().any(|a| APPROVER_AMR.contains(&a.as_str())) {
        return Err(ApprovalRefusal::NoMfa);
    }
    let max = ask.max_auth_age_secs;
    let Some(auth_time) = id.auth_time else {
        return Err(ApprovalRefusal::StaleLogin {
            why: "this login has no auth_time".into(),
        });
    };
    if auth_time > now.saturating_add(AUTH_TIME_SKEW_SECS) {
        return Err(ApprovalRefusal::StaleLogin {
            why: "this login's auth_time is in the future".into(),
        });
    }
    let age = now.saturating_sub(auth_time);
    if age > max {
        return Err(ApprovalRefusal::StaleLogin {
            why: format!("at most {max} s old; this one is {age} s old"),
        });
    }
    Ok(())
}
