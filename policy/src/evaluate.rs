//! The decision: the matrix cell from the source zone, the broker's own leg, and a role.

use std::collections::BTreeSet;

use crate::model::Access;
use crate::permission::Permission;
use crate::policy::{Cell, Policy, ServiceId, ZoneId};
use crate::request::{Constraints, Decision, Identity, Outcome, Request};
use crate::zones::{locate_addr, locate_target, Place};

/// Decides a request. Total: every input gets a decision, and anything not granted is denied.
///
/// A brokered session needs all three: (1) the cell from the source zone to the target zone
/// is broker-only or allow for the service; (2) the cell from the broker's zone to the target
/// zone allows it; (3) a role the identity is a member of grants the target zone and service,
/// with its constraints met. A direct request (`via_broker: false`) needs an allow cell and
/// consults no role. Roles never widen the matrix: they are checked only after it admits.
pub fn evaluate(policy: &Policy, req: &Request, now: u64) -> Decision {
    let Some(src) = locate_addr(policy, req.source) else {
        let reason = format!("the client address {} is in no zone", req.source);
        return deny(policy, reason);
    };
    let dst = match locate_target(policy, &req.target) {
        Ok(dst) => dst,
        Err(err) => {
            let mut d = deny(policy, err.to_string());
            d.source_zone = Some(policy.zone_name(src.zone).to_owned());
            return d;
        }
    };
    let port = Some(req.target.port);
    let mut first_denial: Option<Decision> = None;
    let mut try_service = |service: ServiceId| {
        let d = decide(
            policy,
            src,
            dst,
            service,
            port,
            &req.identity,
            req.via_broker,
            now,
        );
        if d.outcome == Outcome::Allow {
            return Some(d);
        }
        first_denial.get_or_insert(d);
        None
    };
    match &req.target.service {
        Some(name) => match policy.service_by_name.get(name.as_str()) {
            Some(&service) => {
                if let Some(allowed) = try_service(service) {
                    return allowed;
                }
            }
            None => {
                let mut d = deny(
                    policy,
                    format!("the target's service `{name}` is not in the policy"),
                );
                d.source_zone = Some(policy.zone_name(src.zone).to_owned());
                d.target_zone = Some(policy.zone_name(dst.zone).to_owned());
                return d;
            }
        },
        None => {
            // Services sharing a port (e.g. 443) are tried in file order; the first that
            // allows decides, and if none does, the first denial explains.
            for (service, svc) in policy.services.iter().enumerate() {
                if svc.ports.contains(req.target.port)
                    && (!req.via_broker || svc.protocol.carries_tcp())
                {
                    if let Some(allowed) = try_service(service) {
                        return allowed;
                    }
                }
            }
        }
    }
    first_denial.unwrap_or_else(|| {
        let mut d = deny(
            policy,
            format!("no service of the policy uses port {}", req.target.port),
        );
        d.source_zone = Some(policy.zone_name(src.zone).to_owned());
        d.target_zone = Some(policy.zone_name(dst.zone).to_owned());
        d
    })
}

/// A request whose zones are already known, for `policy explain --from ZONE --to ZONE`.
#[derive(Debug, Clone, Copy)]
pub struct ZonedRequest<'a> {
    pub source_zone: &'a str,
    /// Needed only where a cell allows traffic within one microsegment.
    pub source_microsegment: Option<u32>,
    pub target_zone: &'a str,
    pub target_microsegment: Option<u32>,
    pub service: &'a str,
    /// `None`: any port of the service.
    pub port: Option<u16>,
    pub identity: &'a Identity,
    pub via_broker: bool,
}

/// Decides a request given by zone names. The same rules as [`evaluate`].
pub fn evaluate_zones(policy: &Policy, req: &ZonedRequest<'_>, now: u64) -> Decision {
    let (Some(src), Some(dst)) = (
        policy.zone_id(req.source_zone),
        policy.zone_id(req.target_zone),
    ) else {
        let unknown = if policy.zone_id(req.source_zone).is_none() {
            req.source_zone
        } else {
            req.target_zone
        };
        return deny(policy, format!("unknown zone `{unknown}`"));
    };
    let Some(&service) = policy.service_by_name.get(req.service) else {
        return deny(policy, format!("unknown service `{}`", req.service));
    };
    let src = Place {
        zone: src,
        microsegment: req.source_microsegment,
    };
    let dst = Place {
        zone: dst,
        microsegment: req.target_microsegment,
    };
    decide(
        policy,
        src,
        dst,
        service,
        req.port,
        req.identity,
        req.via_broker,
        now,
    )
}

/// The controller permissions the identity's roles hold.
pub fn permissions(policy: &Policy, identity: &Identity) -> BTreeSet<Permission> {
    let members = policy.groups.members_of(&identity.groups);
    members
        .iter()
        .filter_map(|id| policy.roles.get(id))
        .flat_map(|role| role.permissions.iter().copied())
        .collect()
}

fn deny(policy: &Policy, reason: String) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        reason,
        source_zone: None,
        target_zone: None,
        service: None,
        cells: Vec::new(),
        roles: Vec::new(),
        role_rule: None,
        constraints: Constraints::default(),
        policy_hash: policy.hash.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    policy: &Policy,
    src: Place,
    dst: Place,
    service: ServiceId,
    port: Option<u16>,
    identity: &Identity,
    via_broker: bool,
    now: u64,
) -> Decision {
    let (src_name, dst_name, svc_name) = (
        policy.zone_name(src.zone),
        policy.zone_name(dst.zone),
        policy.service_name(service),
    );
    let mut d = deny(policy, String::new());
    d.source_zone = Some(src_name.to_owned());
    d.target_zone = Some(dst_name.to_owned());
    d.service = Some(svc_name.to_owned());
    let refuse = |mut d: Decision, reason: String| {
        d.reason = reason;
        d
    };
    let Some(svc) = policy.services.get(service) else {
        return refuse(d, format!("unknown service `{svc_name}`"));
    };
    if let Some(port) = port {
        if !svc.ports.contains(port) {
            let ports = svc.ports.render("-");
            return refuse(
                d,
                format!("port {port} is not a port of `{svc_name}` ({ports})"),
            );
        }
    }
    if svc.zones.as_ref().is_some_and(|z| !z.contains(dst.zone)) {
        return refuse(
            d,
            format!("service `{svc_name}` is not offered in {dst_name}"),
        );
    }
    if via_broker && !svc.protocol.carries_tcp() {
        return refuse(
            d,
            format!("`{svc_name}` is a UDP service; sessions carry TCP only"),
        );
    }

    // (1) The cell from the source zone to the target zone.
    let cell = policy.cell(src.zone, dst.zone);
    d.cells.push(describe(policy, src.zone, dst.zone, cell));
    let route = || format!("{src_name} -> {dst_name}");
    match cell.access {
        Access::Deny if cell.declared => return refuse(d, format!("the matrix blocks {} (X)", route())),
        Access::Deny => return refuse(d, format!("the matrix has no cell {}: denied by default", route())),
        Access::MtlsOnly => {
            return refuse(
                d,
                format!("{} is mTLS-only (E): only mutual TLS between the endpoints crosses it, never a broker session", route()),
            )
        }
        Access::Allow | Access::BrokerOnly if !cell.services.contains(service) => {
            let allowed = service_list(policy, cell);
            return refuse(d, format!("{} allows only {allowed}, not `{svc_name}`", route()));
        }
        Access::Allow | Access::BrokerOnly => {}
    }
    if cell.same_microsegment {
        match (src.microsegment, dst.microsegment) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                return refuse(
                    d,
                    format!("{} is allowed only within one microsegment; the source is in #{a}, the target in #{b}", route()),
                )
            }
            _ => {
                return refuse(
                    d,
                    format!("{} is allowed only within one microsegment, and the microsegments are unknown", route()),
                )
            }
        }
    }
    if !via_broker {
        if cell.access == Access::BrokerOnly {
            return refuse(
                d,
                format!("{} is reachable only through a Portcullis session (0); a direct flow is refused", route()),
            );
        }
        d.outcome = Outcome::Allow;
        d.reason = format!(
            "the network matrix allows {} for `{svc_name}` (a direct flow: no role is consulted)",
            route()
        );
        return d;
    }

    // (2) The broker's own leg to the target zone.
    let broker_cell = policy.cell(policy.broker, dst.zone);
    d.cells
        .push(describe(policy, policy.broker, dst.zone, broker_cell));
    if !broker_cell.admits(service) {
        let broker = policy.broker_zone();
        return refuse(
            d,
            format!("the broker's own leg {broker} -> {dst_name} does not allow `{svc_name}`"),
        );
    }

    // (3) A role that grants it, with its constraints met.
    grant(policy, d, src.zone, dst.zone, service, identity, now)
}

fn grant(
    policy: &Policy,
    mut d: Decision,
    src: ZoneId,
    dst: ZoneId,
    service: ServiceId,
    identity: &Identity,
    now: u64,
) -> Decision {
    let (dst_name, svc_name) = (policy.zone_name(dst), policy.service_name(service));
    let members = policy.groups.members_of(&identity.groups);
    if members.is_empty() {
        d.reason = if identity.groups.is_empty() {
            "you are in no group, so no role grants you anything".into()
        } else {
            format!(
                "none of your groups ({}) is a member of any role",
                identity.groups.join(", ")
            )
        };
        d.role_rule = Some(format!(
            "no role: a role granting `{svc_name}` in {dst_name} needs one of your groups as a member"
        ));
        return d;
    }
    // The first unmet constraint: the reason in words, and the role rule that failed.
    let mut failure: Option<(String, String)> = None;
    let mut max_session: Option<Option<u64>> = None;
    let mut connection_limit: Option<Option<u32>> = None;
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
        let unmet = if c.source_zones.as_ref().is_some_and(|s| !s.contains(src)) {
            Some(format!(
                "only from its source zones, not from {}",
                policy.zone_name(src)
            ))
        } else {
            c.mfa
                .as_ref()
                .and_then(|mfa| mfa.check(identity, now).err())
        };
        if let Some(unmet) = unmet {
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
        for login in grants.flat_map(|g| g.logins.iter()) {
            if let Some(name) = login.render(identity) {
                if !d.constraints.logins.contains(&name) {
                    d.constraints.logins.push(name);
                }
            }
        }
    }
    if d.roles.is_empty() {
        let (reason, rule) = failure.unwrap_or_else(|| {
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
        });
        d.reason = reason;
        d.role_rule = Some(rule);
        return d;
    }
    d.constraints.max_session_secs = max_session.flatten();
    d.constraints.connection_limit = connection_limit.flatten();
    d.outcome = Outcome::Allow;
    d.reason = format!(
        "allowed through a session: {} -> {dst_name} admits `{svc_name}`, the broker's leg allows it, and role {} grants it",
        d.source_zone.as_deref().unwrap_or("?"),
        d.roles.join(", ")
    );
    d
}

/// Combines limits across granting roles: no limit beats any limit, else the larger.
fn most_generous<T: Ord>(acc: Option<Option<T>>, next: Option<T>) -> Option<T> {
    match (acc, next) {
        (None, next) => next,
        (Some(None), _) | (_, None) => None,
        (Some(Some(a)), Some(b)) => Some(a.max(b)),
    }
}

fn service_list(policy: &Policy, cell: &Cell) -> String {
    let names: Vec<&str> = cell
        .services
        .iter()
        .map(|s| policy.service_name(s))
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

pub(crate) fn describe(policy: &Policy, src: ZoneId, dst: ZoneId, cell: &Cell) -> String {
    let route = format!("{} -> {}", policy.zone_name(src), policy.zone_name(dst));
    if !cell.declared {
        return format!("{route}: deny (no cell)");
    }
    let mut out = format!("{route}: {}", cell.access.as_str());
    if cell.access != Access::Deny {
        out.push_str(&format!(" [{}]", service_list(policy, cell)));
    }
    if cell.same_microsegment {
        out.push_str(" within one microsegment");
    }
    out
}

#[cfg(test)]
mod tests;
