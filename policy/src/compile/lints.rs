//! Whole-policy checks: grants the matrix forbids (errors), rules that never match (warnings).

use crate::diagnostic::Sink;
use crate::model::{Access, RawPolicy};
use crate::policy::{Policy, ServiceId, ZoneId};

pub(super) fn check(policy: &Policy, raw: &RawPolicy, sink: &mut Sink<'_>) {
    for (zone, rz) in policy.zones.iter().zip(&raw.zones) {
        if zone.cidrs.is_empty() {
            sink.warning(
                rz.name.span(),
                format!(
                    "zone `{}` has no address selector (cidrs): zones come from addresses, so nothing is ever in it",
                    zone.name
                ),
            );
        }
    }
    for rc in &raw.cells {
        let same = rc.same_microsegment.as_ref().filter(|s| *s.get_ref());
        let zone = policy
            .zone_id(rc.from.get_ref())
            .and_then(|z| policy.zones.get(z));
        if let (Some(flag), Some(zone)) = (same, zone) {
            if zone.microsegments.is_none() {
                sink.error(
                    flag.span(),
                    format!(
                        "same_microsegment needs `microsegments` on zone `{}`",
                        zone.name
                    ),
                );
            }
        }
    }
    for (role, rr) in policy.roles.iter().zip(&raw.roles) {
        if role.groups.is_empty() {
            sink.warning(
                rr.name.span(),
                format!(
                    "role `{}` has no groups, so it never matches anyone",
                    role.name
                ),
            );
        }
        let sources = role.constraints.source_zones.as_ref();
        for (grant, rg) in role.grants.iter().zip(&rr.grants) {
            if grant.all_zones || grant.all_services {
                continue;
            }
            for zone in grant.zones.iter() {
                for service in grant.services.iter() {
                    if reachable(policy, zone, service, sources) {
                        continue;
                    }
                    let span = rg
                        .services
                        .first()
                        .map(|s| s.span())
                        .or_else(|| rg.zones.first().map(|z| z.span()))
                        .unwrap_or_else(|| rr.name.span());
                    sink.error(
                        span,
                        format!(
                            "role `{}` grants `{}` in `{}`, which the matrix forbids: it needs a broker-only or allow cell from {} to `{}` for it, and `{} -> {}` allowing it",
                            role.name,
                            policy.service_name(service),
                            policy.zone_name(zone),
                            if sources.is_some() { "one of the role's source_zones" } else { "some zone" },
                            policy.zone_name(zone),
                            policy.broker_zone(),
                            policy.zone_name(zone),
                        ),
                    );
                }
            }
        }
    }
}

/// Whether some allowed source zone can reach `service` in `zone` through the broker.
pub(crate) fn reachable(
    policy: &Policy,
    zone: ZoneId,
    service: ServiceId,
    sources: Option<&crate::policy::IdSet>,
) -> bool {
    let broker_leg = policy.cell(policy.broker, zone);
    if !(broker_leg.access == Access::Allow || broker_leg.access == Access::BrokerOnly)
        || !broker_leg.services.contains(service)
    {
        return false;
    }
    (0..policy.zones.len())
        .filter(|src| sources.is_none_or(|s| s.contains(*src)))
        .any(|src| policy.cell(src, zone).admits(service))
}
