//! Step (3) of a brokered session's decision: a role the identity is a member of grants the
//! target zone and service, with its constraints met. Consulted only after the matrix
//! admitted the request, so a role never widens it.

use super::Ask;
use crate::policy::{Grant, IdSet, Policy, RoleConstraints};
use crate::proxmox_access::{ProxmoxIdentity, PROXMOX_API_SERVICE};
use crate::recording::Recording;
use crate::request::{Decision, Identity, Outcome, StepUp};
use crate::roles::any_group_matches;
use crate::ssh::{SshAccess, SshMode, SshRights};

/// Step (3): the roles the identity is a member of that grant the target zone and service,
/// with their constraints met. Allows with the most generous limits, every login they give
/// and the SSH access they give together (the strictest mode of the target zone, the roles
/// and their matching grants; the union of the roles' channel rights), and the recording
/// the target zone and the roles require together (each role only adds to it; a required
/// recording needs the gateway), and for `proxmox-api` the one Proxmox identity they name;
/// denies with the first unmet constraint, with what the roles lack, or when the Proxmox
/// identity is ambiguous or cannot be rendered.
pub(super) fn grant(policy: &Policy, mut d: Decision, ask: &Ask<'_>, now: u64) -> Decision {
    let (dst, service) = (ask.dst.zone, ask.service);
    let (dst_name, svc_name) = (policy.zone_name(dst), policy.service_name(service));
    let members = members(policy, ask.identity);
    if members.is_empty() {
        d.reason = no_member_reason(&ask.identity.groups);
        d.reason.push_str(&requestable_hint(policy, ask));
        d.role_rule = Some(format!(
            "no role: a role granting `{svc_name}` in {dst_name} needs one of your groups as a member"
        ));
        return d;
    }
    // The first unmet constraint: the reason in words, and the role rule that failed.
    let mut failure: Option<(String, String)> = None;
    // The first role whose only unmet constraint is MFA: a fresh login could meet it.
    let mut step_up: Option<StepUp> = None;
    let mut max_session: Option<Option<u64>> = None;
    let mut connection_limit: Option<Option<u32>> = None;
    let zone = policy.zones.get(dst);
    let mut ssh = SshAccess {
        mode: zone.map(|z| z.ssh_mode).unwrap_or_default(),
        rights: SshRights::NONE,
    };
    let mut recording = zone
        .map(|z| Recording::for_zone(&z.recording))
        .unwrap_or_default();
    for role in members.iter().filter_map(|id| policy.roles.get(id)) {
        let mut grants = role
            .grants
            .iter()
            .filter(|g| g.zones.contains(dst) && g.services.contains(service))
            .peekable();
        if grants.peek().is_none() {
            continue;
        }
        let c = &role.constraints;
        if let Some(unmet) = unmet_constraint(policy, c, ask, now) {
            if let (Unmet::Mfa(_), Some(mfa)) = (&unmet, &c.mfa) {
                if !ask.identity.is_service_account() {
                    step_up.get_or_insert_with(|| StepUp {
                        role: role.name.clone(),
                        amr: mfa.amr.clone(),
                        acr: mfa.acr.clone(),
                        max_auth_age_secs: mfa.max_auth_age_secs,
                    });
                }
            }
            let unmet = unmet.text();
            failure.get_or_insert_with(|| {
                (
                    format!(
                        "role `{}` grants `{svc_name}` in {dst_name}, but {unmet}",
                        role.name
                    ),
                    format!(
                        "role {}: grants {svc_name} in {dst_name}; unmet: {unmet}",
                        role.name
                    ),
                )
            });
            continue;
        }
        d.cells.push(format!(
            "role {}: grants {svc_name} in {dst_name}",
            role.name
        ));
        d.roles.push(role.name.clone());
        max_session = Some(most_generous(max_session, c.max_session_secs));
        connection_limit = Some(most_generous(connection_limit, c.connection_limit));
        ssh.mode = ssh.mode.strictest(role.ssh_mode);
        ssh.rights = ssh.rights.union(role.ssh.unwrap_or_default());
        recording = recording.with_role(&role.recording);
        for grant in grants {
            ssh.mode = ssh.mode.strictest(grant.ssh_mode);
            add_logins(&mut d.constraints.logins, grant, ask.identity);
        }
    }
    if d.roles.is_empty() {
        let (reason, rule) = failure.unwrap_or_else(|| {
            let (mut reason, rule) = nothing_granted(policy, &members, svc_name, dst_name);
            reason.push_str(&requestable_hint(policy, ask));
            (reason, rule)
        });
        d.reason = reason;
        d.role_rule = Some(rule);
        d.step_up = step_up;
        return d;
    }
    if svc_name == PROXMOX_API_SERVICE {
        if let Err((reason, rule)) = proxmox_grant(policy, &mut d, ask.identity) {
            d.reason = reason;
            d.role_rule = Some(rule);
            d.roles.clear();
            return d;
        }
    }
    d.constraints.max_session_secs = max_session.flatten();
    d.constraints.connection_limit = connection_limit.flatten();
    if recording.required {
        // Only the gateway sees channels to record: in certificate mode the broker carries
        // encrypted bytes, so a required recording would be escaped.
        ssh.mode = SshMode::Gateway;
    }
    d.constraints.ssh = ssh;
    d.constraints.recording = recording;
    d.outcome = Outcome::Allow;
    d.reason = format!(
        "allowed through a session: {} -> {dst_name} admits `{svc_name}`, the broker's leg allows it, and role {} grants it",
        d.source_zone.as_deref().unwrap_or("?"),
        d.roles.join(", ")
    );
    d
}

/// The roles the identity is a member of for this decision: standing membership by group
/// (which never includes a requestable role), plus the roles an approved request grants it
/// (`granted_roles`), counted only when they are requestable.
pub(crate) fn members(policy: &Policy, identity: &Identity) -> IdSet {
    let mut ids = policy.groups.members_of(&identity.groups);
    for granted in &identity.granted_roles {
        let found = policy
            .roles
            .iter()
            .position(|r| r.name == *granted && r.requestable.is_some());
        if let Some(id) = found {
            ids.insert(id);
        }
    }
    ids
}

/// Sets the Proxmox identity of a `proxmox-api` session from the granting roles: exactly
/// one of them may name one (several would leave it ambiguous which user the token is of
/// and which roles it gets, so that is a deny); none leaves the session a plain tunnel.
/// The error is the deny's reason and role rule.
fn proxmox_grant(
    policy: &Policy,
    d: &mut Decision,
    identity: &Identity,
) -> Result<(), (String, String)> {
    let naming: Vec<(&str, &ProxmoxIdentity)> = d
        .roles
        .iter()
        .filter_map(|name| policy.roles.iter().find(|r| r.name == *name))
        .filter_map(|r| Some((r.name.as_str(), r.proxmox.as_ref()?)))
        .collect();
    match naming.as_slice() {
        [] => Ok(()),
        [(role, proxmox)] => {
            let grant = proxmox.grant(&identity.subject).map_err(|why| {
                (
                    format!("role `{role}` grants `{PROXMOX_API_SERVICE}`, but {why}"),
                    format!("role {role}: Proxmox identity: {why}"),
                )
            })?;
            d.proxmox = Some(grant);
            Ok(())
        }
        several => {
            let names: Vec<&str> = several.iter().map(|(n, _)| *n).collect();
            Err((
                format!(
                    "roles {} each grant `{PROXMOX_API_SERVICE}` with their own Proxmox identity,                      and a session acts as exactly one: leave `proxmox` on one of them, or                      give their members disjoint groups",
                    names.join(", ")
                ),
                format!(
                    "roles {}: more than one Proxmox identity for one session",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// When nothing grants the session: the requestable roles the identity may request that
/// grant the target zone and service, as a hint (empty when there are none).
fn requestable_hint(policy: &Policy, ask: &Ask<'_>) -> String {
    let names: Vec<&str> = policy
        .roles
        .iter()
        .filter(|r| r.requestable.is_some())
        .filter(|r| any_group_matches(r.group_match, &r.groups, &ask.identity.groups))
        .filter(|r| {
            r.grants
                .iter()
                .any(|g| g.zones.contains(ask.dst.zone) && g.services.contains(ask.service))
        })
        .map(|r| r.name.as_str())
        .collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => {
            format!("; role `{one}` grants it on request: `portcullis request create --role {one}`")
        }
        many => format!(
            "; roles {} grant it on request: `portcullis request create --role ROLE`",
            many.join(", ")
        ),
    }
}

/// Why no role applies when the identity's groups make it a member of none.
fn no_member_reason(groups: &[String]) -> String {
    if groups.is_empty() {
        "you are in no group, so no role grants you anything".into()
    } else {
        format!(
            "none of your groups ({}) is a member of any role",
            groups.join(", ")
        )
    }
}

/// A constraint a granting role's request does not meet, in words.
enum Unmet {
    SourceZone(String),
    /// The MFA requirement: the one a fresh, stronger login can meet (a step-up).
    Mfa(String),
}

impl Unmet {
    fn text(self) -> String {
        match self {
            Unmet::SourceZone(text) | Unmet::Mfa(text) => text,
        }
    }
}

/// The first constraint of a granting role that the request does not meet: the source zone
/// first, then MFA.
fn unmet_constraint(
    policy: &Policy,
    constraints: &RoleConstraints,
    ask: &Ask<'_>,
    now: u64,
) -> Option<Unmet> {
    let src = ask.src.zone;
    if constraints
        .source_zones
        .as_ref()
        .is_some_and(|s| !s.contains(src))
    {
        return Some(Unmet::SourceZone(format!(
            "only from its source zones, not from {}",
            policy.zone_name(src)
        )));
    }
    constraints
        .mfa
        .as_ref()
        .and_then(|mfa| mfa.check(ask.identity, now).err())
        .map(Unmet::Mfa)
}

/// Adds the login names a grant renders for the identity, in order, skipping repeats.
fn add_logins(logins: &mut Vec<String>, grant: &Grant, identity: &Identity) {
    for login in &grant.logins {
        if let Some(name) = login.render(identity) {
            if !logins.contains(&name) {
                logins.push(name);
            }
        }
    }
}

/// The denial when the identity's roles grant nothing for the service in the zone: the
/// reason in words and the role rule.
fn nothing_granted(
    policy: &Policy,
    members: &IdSet,
    svc_name: &str,
    dst_name: &str,
) -> (String, String) {
    let names: Vec<&str> = members
        .iter()
        .filter_map(|id| policy.roles.get(id))
        .map(|r| r.name.as_str())
        .collect();
    (
        format!(
            "your roles ({}) grant nothing for `{svc_name}` in {dst_name}",
            names.join(", ")
        ),
        format!(
            "roles {}: none grants {svc_name} in {dst_name}",
            names.join(", ")
        ),
    )
}

/// Combines limits across granting roles: no limit beats any limit, else the larger.
pub(super) fn most_generous<T: Ord>(acc: Option<Option<T>>, next: Option<T>) -> Option<T> {
    match (acc, next) {
        (None, next) => next,
        (Some(None), _) | (_, None) => None,
        (Some(Some(a)), Some(b)) => Some(a.max(b)),
    }
}
