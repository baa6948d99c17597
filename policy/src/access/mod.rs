//! Just-in-time access: the terms of a requestable role (`[role.requestable]`), whether a
//! request for one may be created ([`admit_request`]) and whether someone may approve or
//! deny it ([`may_approve`]). Pure, like the rest of the crate: the controller stores the
//! requests and passes the time.
//!
//! An approved request never widens the matrix: the controller evaluates a session under it
//! with the role in [`Identity::granted_roles`], and the cells must still admit the session.

mod approve;
pub(crate) mod duration;

use std::net::IpAddr;

use crate::evaluate::{evaluate, evaluate_zones, ZonedRequest};
use crate::model::Access;
use crate::policy::{Policy, Role};
use crate::request::{Decision, Identity, Request, TargetFacts};
use crate::roles::any_group_matches;
use crate::zones::locate_addr;

pub use approve::{may_approve, ApprovalRefusal, ApproveAsk};

/// The longest break-glass window a policy may allow.
pub(crate) const BREAK_GLASS_CEILING_SECS: u64 = 4 * 3600;

/// The longest reason a request or decision may carry, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// `[role.requestable]`: who approves requests for a role, and on what terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requestable {
    /// Groups whose members may approve or deny (compared like the role's `groups`).
    pub approvers: Vec<String>,
    /// Distinct approvers needed, never the requester; at least 1.
    pub approvals: u32,
    pub max_duration_secs: u64,
    pub reason_required: bool,
    /// Groups whose members' requests are approved at creation.
    pub preapproved: Vec<String>,
    pub break_glass: Option<BreakGlass>,
}

/// `[role.requestable.break_glass]`: self-approval with a mandatory reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakGlass {
    pub max_duration_secs: u64,
}

impl Policy {
    /// The terms of `role` if it is requestable; `None` for a standing or unknown role.
    pub fn requestable(&self, role: &str) -> Option<&Requestable> {
        self.role(role)?.requestable.as_ref()
    }

    /// Every requestable role with its terms, in file order.
    pub fn requestable_roles(&self) -> impl Iterator<Item = (&str, &Requestable)> {
        self.roles
            .iter()
            .filter_map(|r| Some((r.name.as_str(), r.requestable.as_ref()?)))
    }

    pub(crate) fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }
}

/// What a request covers: named targets (their facts, as authorize-session builds them) or
/// every service the role grants in a zone.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Targets(&'a [(String, TargetFacts)]),
    Zone(&'a str),
}

/// A request about to be created.
#[derive(Debug, Clone, Copy)]
pub struct RequestAsk<'a> {
    pub role: &'a str,
    /// The requester's current identity (groups from the token).
    pub requester: &'a Identity,
    /// The requester's address now: the source zone.
    pub source: IpAddr,
    pub scope: Scope<'a>,
    pub duration_secs: u64,
    pub reason: Option<&'a str>,
    pub break_glass: bool,
}

/// A request the policy admits, and how it is to be approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// 0: approved at creation (break-glass or preapproved).
    pub approvals_needed: u32,
    pub break_glass: bool,
    pub preapproved: bool,
    /// Per target (or zone and service): the cells and role rule it would open.
    pub cells: Vec<String>,
}

/// Why a request cannot be created; each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    #[error("the policy has no role `{role}`; `portcullis request create` needs a requestable role (see `portcullis policy export`)")]
    UnknownRole { role: String },
    #[error("role `{role}` is not requestable (it has no [role.requestable]); ask for a requestable role")]
    NotRequestable { role: String },
    #[error("you may not request role `{role}`: it is requestable by members of {groups}, and none of your groups is one of them")]
    NotRequester { role: String, groups: String },
    #[error(
        "role `{role}` has no break-glass access; leave out --break-glass and ask its approvers"
    )]
    NoBreakGlass { role: String },
    #[error("{what} needs a reason: give one with --reason")]
    ReasonMissing { what: String },
    #[error("the reason {why}: give 1 to {MAX_REASON_CHARS} characters on one line")]
    ReasonInvalid { why: String },
    #[error("the duration must be longer than 0; ask for e.g. 30m or 2h")]
    ZeroDuration,
    #[error("{asked} is longer than the {max} {what} allows; ask for {max} or less")]
    TooLong {
        asked: String,
        max: String,
        what: String,
    },
    #[error("the request covers nothing: name targets or a zone")]
    EmptyScope,
    #[error("unknown zone `{zone}`; zones are: {known}")]
    UnknownZone { zone: String, known: String },
    #[error("your address {address} is in no zone of the policy, so no request can be made from it; connect from a network the policy knows")]
    SourceInNoZone { address: IpAddr },
    #[error("role `{role}` grants nothing in zone {zone}; ask for targets or a zone it grants")]
    NothingInZone { role: String, zone: String },
    #[error("{target}: {reason}")]
    Denied { target: String, reason: String },
}

/// Decides whether a request may be created, and how many approvals it needs.
///
/// Each target (or each service the role grants in the zone) is evaluated from the
/// requester's source zone as a member of the requested role alone: every one must be
/// allowed, so a request never asks for what the matrix or the role would refuse.
pub fn admit_request(
    policy: &Policy,
    ask: &RequestAsk<'_>,
    now: u64,
) -> Result<Admission, RequestRefusal> {
    let role = policy
        .role(ask.role)
        .ok_or_else(|| RequestRefusal::UnknownRole {
            role: ask.role.to_owned(),
        })?;
    let terms = role
        .requestable
        .as_ref()
        .ok_or_else(|| RequestRefusal::NotRequestable {
            role: role.name.clone(),
        })?;
    let groups = &ask.requester.groups;
    if !any_group_matches(role.group_match, &role.groups, groups) {
        return Err(RequestRefusal::NotRequester {
            role: role.name.clone(),
            groups: listed(&role.groups),
        });
    }
    let max_secs = if ask.break_glass {
        let bg = terms
            .break_glass
            .ok_or_else(|| RequestRefusal::NoBreakGlass {
                role: role.name.clone(),
            })?;
        bg.max_duration_secs
    } else {
        terms.max_duration_secs
    };
    check_reason(ask, terms)?;
    if ask.duration_secs == 0 {
        return Err(RequestRefusal::ZeroDuration);
    }
    if ask.duration_secs > max_secs {
        return Err(RequestRefusal::TooLong {
            asked: duration::render_secs(ask.duration_secs),
            max: duration::render_secs(max_secs),
            what: if ask.break_glass {
                format!("break-glass access to role `{}`", role.name)
            } else {
                format!("role `{}`", role.name)
            },
        });
    }
    let cells = match ask.scope {
        Scope::Targets([]) => return Err(RequestRefusal::EmptyScope),
        Scope::Zone("") => return Err(RequestRefusal::EmptyScope),
        Scope::Targets(targets) => admit_targets(policy, ask, targets, now)?,
        Scope::Zone(zone) => admit_zone(policy, ask, role, zone, now)?,
    };
    let preapproved = any_group_matches(role.group_match, &terms.preapproved, groups);
    let approvals_needed = if ask.break_glass || preapproved {
        0
    } else {
        terms.approvals
    };
    Ok(Admission {
        approvals_needed,
        break_glass: ask.break_glass,
        preapproved,
        cells,
    })
}

fn check_reason(ask: &RequestAsk<'_>, terms: &Requestable) -> Result<(), RequestRefusal> {
    match ask.reason {
        None if ask.break_glass => Err(RequestRefusal::ReasonMissing {
            what: "break-glass access".into(),
        }),
        None if terms.reason_required => Err(RequestRefusal::ReasonMissing {
            what: format!("a request for role `{}`", ask.role),
        }),
        None => Ok(()),
        Some(text) => check_reason_text(text).map_err(|why| RequestRefusal::ReasonInvalid { why }),
    }
}

/// A reason is 1 to [`MAX_REASON_CHARS`] characters with no control characters; the error
/// says which rule it breaks.
pub(crate) fn check_reason_text(text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        Err("is empty".into())
    } else if chars > MAX_REASON_CHARS {
        Err(format!("is {chars} characters long"))
    } else if text.chars().any(char::is_control) {
        Err("contains control characters (newlines, tabs, escapes)".into())
    } else {
        Ok(())
    }
}

/// The requester as a member of the requested role alone, for this evaluation.
fn as_granted(ask: &RequestAsk<'_>) -> Identity {
    Identity {
        groups: Vec::new(),
        granted_roles: vec![ask.role.to_owned()],
        ..ask.requester.clone()
    }
}

fn admit_targets(
    policy: &Policy,
    ask: &RequestAsk<'_>,
    targets: &[(String, TargetFacts)],
    now: u64,
) -> Result<Vec<String>, RequestRefusal> {
    let identity = as_granted(ask);
    let mut cells = Vec::new();
    for (name, facts) in targets {
        let req = Request {
            source: ask.source,
            target: facts.clone(),
            identity: identity.clone(),
            via_broker: true,
        };
        let d = evaluate(policy, &req, now);
        cells.push(opened(policy, name, d)?);
    }
    Ok(cells)
}

fn admit_zone(
    policy: &Policy,
    ask: &RequestAsk<'_>,
    role: &Role,
    zone: &str,
    now: u64,
) -> Result<Vec<String>, RequestRefusal> {
    let dst = policy
        .zone_id(zone)
        .ok_or_else(|| RequestRefusal::UnknownZone {
            zone: zone.to_owned(),
            known: policy.zone_names().collect::<Vec<_>>().join(", "),
        })?;
    let src = locate_addr(policy, ask.source).ok_or(RequestRefusal::SourceInNoZone {
        address: ask.source,
    })?;
    let services: Vec<&str> = policy
        .service_names()
        .enumerate()
        .filter(|(id, _)| {
            role.grants
                .iter()
                .any(|g| g.zones.contains(dst) && g.services.contains(*id))
        })
        .map(|(_, name)| name)
        .collect();
    if services.is_empty() {
        return Err(RequestRefusal::NothingInZone {
            role: role.name.clone(),
            zone: zone.to_owned(),
        });
    }
    let identity = as_granted(ask);
    let mut cells = Vec::new();
    for service in services {
        let req = ZonedRequest {
            source_zone: policy.zone_name(src.zone),
            source_microsegment: src.microsegment,
            target_zone: zone,
            target_microsegment: None,
            service,
            port: None,
            identity: &identity,
            via_broker: true,
        };
        let d = evaluate_zones(policy, &req, now);
        cells.push(opened(
            policy,
            &format!("zone {zone}, service {service}"),
            d,
        )?);
    }
    Ok(cells)
}

/// The cells an allowing decision opens for `target`, or the refusal naming it.
fn opened(policy: &Policy, target: &str, d: Decision) -> Result<String, RequestRefusal> {
    if !d.is_allowed() {
        let mut reason = d.reason.clone();
        if blocked_by_x(policy, &d) {
            reason.push_str(": a request never opens a cell marked X");
        }
        return Err(RequestRefusal::Denied {
            target: target.to_owned(),
            reason,
        });
    }
    Ok(format!("{target}: {}", d.cells.join("; ")))
}

/// Whether the decision's source cell or the broker's leg is a declared X cell.
fn blocked_by_x(policy: &Policy, d: &Decision) -> bool {
    let (Some(src), Some(dst)) = (
        d.source_zone.as_deref().and_then(|z| policy.zone_id(z)),
        d.target_zone.as_deref().and_then(|z| policy.zone_id(z)),
    ) else {
        return false;
    };
    [policy.cell(src, dst), policy.cell(policy.broker, dst)]
        .iter()
        .any(|c| c.declared && c.access == Access::Deny)
}

fn listed(groups: &[String]) -> String {
    if groups.is_empty() {
        "no group".into()
    } else {
        groups.join(", ")
    }
}

#[cfg(test)]
mod tests;
