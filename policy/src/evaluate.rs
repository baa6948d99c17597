//! The decision: the matrix cell from the source zone, the broker's own leg, and a role.

mod grant;

use std::collections::BTreeSet;
use std::fmt;

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
        let ask = Ask {
            src,
            dst,
            service,
            port,
            identity: &req.identity,
            via_broker: req.via_broker,
        };
        let d = decide(policy, &ask, now);
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
    let ask = Ask {
        src,
        dst,
        service,
        port: req.port,
        identity: req.identity,
        via_broker: req.via_broker,
    };
    decide(policy, &ask, now)
}

/// The controller permissions the identity's roles hold. Requestable roles never count:
/// they grant sessions only, and only through an approved request.
pub fn permissions(policy: &Policy, identity: &Identity) -> BTreeSet<Permission> {
    let members = policy.groups.members_of(&identity.groups);
    members
        .iter()
        .filter_map(|id| policy.roles.get(id))
        .filter(|role| role.requestable.is_none())
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
        proxmox: None,
        policy_hash: policy.hash.clone(),
        step_up: None,
    }
}

/// One service asked for between two located places: what [`decide`] answers.
struct Ask<'a> {
    src: Place,
    dst: Place,
    service: ServiceId,
    /// `None`: any port of the service.
    port: Option<u16>,
    identity: &'a Identity,
    via_broker: bool,
}

/// Decides one service: the service's own limits, then (1) the cell from the source zone,
/// (2) the broker's own leg, and (3) a role, each recorded in the decision as it is consulted.
fn decide(policy: &Policy, ask: &Ask<'_>, now: u64) -> Decision {
    let (src, dst, service) = (ask.src.zone, ask.dst.zone, ask.service);
    let mut d = deny(policy, String::new());
    d.source_zone = Some(policy.zone_name(src).to_owned());
    d.target_zone = Some(policy.zone_name(dst).to_owned());
    d.service = Some(policy.service_name(service).to_owned());
    if let Some(reason) = service_refusal(policy, ask) {
        d.reason = reason;
        return d;
    }

    // (1) The cell from the source zone to the target zone.
    let cell = policy.cell(src, dst);
    d.cells.push(describe(policy, src, dst, cell));
    if let Some(reason) = cell_refusal(policy, ask, cell) {
        d.reason = reason;
        return d;
    }
    if !ask.via_broker {
        d.outcome = Outcome::Allow;
        d.reason = format!(
            "the network matrix allows {} for `{}` (a direct flow: no role is consulted)",
            route(policy, ask),
            policy.service_name(service)
        );
        return d;
    }

    // (2) The broker's own leg to the target zone.
    let broker_cell = policy.cell(policy.broker, dst);
    d.cells
        .push(describe(policy, policy.broker, dst, broker_cell));
    if !broker_cell.admits(service) {
        d.reason = format!(
            "the broker's own leg {} -> {} does not allow `{}`",
            policy.broker_zone(),
            policy.zone_name(dst),
            policy.service_name(service)
        );
        return d;
    }

    // (3) A role that grants it, with its constraints met.
    grant::grant(policy, d, ask, now)
}

/// `SRC -> DST` by zone names, written out only where a reason needs it.
struct Route<'a> {
    src: &'a str,
    dst: &'a str,
}

impl fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

fn route<'a>(policy: &'a Policy, ask: &Ask<'_>) -> Route<'a> {
    Route {
        src: policy.zone_name(ask.src.zone),
        dst: policy.zone_name(ask.dst.zone),
    }
}

/// Why the service itself rules the request out, whatever the matrix says: a port it does
/// not use, a zone it is not offered in, or UDP asked for through a session.
fn service_refusal(policy: &Policy, ask: &Ask<'_>) -> Option<String> {
    let (dst_name, svc_name) = (
        policy.zone_name(ask.dst.zone),
        policy.service_name(ask.service),
    );
    let Some(svc) = policy.services.get(ask.service) else {
        return Some(format!("unknown service `{svc_name}`"));
    };
    if let Some(port) = ask.port {
        if !svc.ports.contains(port) {
            let ports = svc.ports.render("-");
            return Some(format!(
                "port {port} is not a port of `{svc_name}` ({ports})"
            ));
        }
    }
    if svc
        .zones
        .as_ref()
        .is_some_and(|z| !z.contains(ask.dst.zone))
    {
        return Some(format!("service `{svc_name}` is not offered in {dst_name}"));
    }
    if ask.via_broker && !svc.protocol.carries_tcp() {
        return Some(format!(
            "`{svc_name}` is a UDP service; sessions carry TCP only"
        ));
    }
    None
}

/// Why the cell from the source zone to the target zone refuses: its access, its services,
/// its microsegment limit, or (for a direct flow) its demand for a session.
fn cell_refusal(policy: &Policy, ask: &Ask<'_>, cell: &Cell) -> Option<String> {
    let route = route(policy, ask);
    let svc_name = policy.service_name(ask.service);
    match cell.access {
        Access::Deny if cell.declared => return Some(format!("the matrix blocks {route} (X)")),
        Access::Deny => return Some(format!("the matrix has no cell {route}: denied by default")),
        Access::MtlsOnly => {
            return Some(format!("{route} is mTLS-only (E): only mutual TLS between the endpoints crosses it, never a broker session"))
        }
        Access::Allow | Access::BrokerOnly if !cell.services.contains(ask.service) => {
            let allowed = service_list(policy, cell);
            return Some(format!("{route} allows only {allowed}, not `{svc_name}`"));
        }
        Access::Allow | Access::BrokerOnly => {}
    }
    if cell.same_microsegment {
        match (ask.src.microsegment, ask.dst.microsegment) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                return Some(format!("{route} is allowed only within one microsegment; the source is in #{a}, the target in #{b}"))
            }
            _ => {
                return Some(format!("{route} is allowed only within one microsegment, and the microsegments are unknown"))
            }
        }
    }
    if !ask.via_broker && cell.access == Access::BrokerOnly {
        return Some(format!(
            "{route} is reachable only through a Portcullis session (0); a direct flow is refused"
        ));
    }
    None
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
