//! What one identity may reach under a policy: every target zone and service, from every
//! source zone, allowed or why not; and how that changes from one policy to another.

use serde::{Deserialize, Serialize};

use crate::evaluate::{evaluate_zones, ZonedRequest};
use crate::policy::Policy;
use crate::request::{Constraints, Identity, Outcome};

/// One (target zone, service, source zone) as an identity's session would be decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    pub target_zone: String,
    pub service: String,
    pub source_zone: String,
    pub outcome: Outcome,
    /// Whether both matrix cells (from the source zone, the broker's leg) admit the
    /// service: when they do, a deny is the roles' (or their constraints'), not the
    /// network's.
    pub matrix_admits: bool,
    /// The roles that granted it (empty on a deny).
    pub roles: Vec<String>,
    /// Why, in words (on a deny: what is missing, and the roles that grant it on request).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
}

/// What `identity` may reach under `policy` at `now`: for each target zone and service the
/// zone offers (TCP services only: sessions carry TCP), from each source zone, in file
/// order. Both ends are taken to be in one microsegment, on any port of the service.
pub fn simulate(policy: &Policy, identity: &Identity, now: u64) -> Vec<Reach> {
    let mut out = Vec::new();
    for (dst_id, dst) in policy.zones.iter().enumerate() {
        for svc in &policy.services {
            let offered = svc.zones.as_ref().is_none_or(|z| z.contains(dst_id));
            if !offered || !svc.protocol.carries_tcp() {
                continue;
            }
            for src in &policy.zones {
                out.push(reach(
                    policy, identity, now, &src.name, &dst.name, &svc.name,
                ));
            }
        }
    }
    out
}

/// A (target zone, service, source zone) whose outcome for one identity differs between
/// two policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachChange {
    pub target_zone: String,
    pub service: String,
    pub source_zone: String,
    pub old: Outcome,
    pub new: Outcome,
    /// The new policy's reason.
    pub reason: String,
}

/// Where `identity` gains or loses reach from `old` to `new` (zones and services of either).
pub fn reach_changes(
    old: &Policy,
    new: &Policy,
    identity: &Identity,
    now: u64,
) -> Vec<ReachChange> {
    let zones = super::union(new.zone_names(), old.zone_names());
    let services = super::union(new.service_names(), old.service_names());
    let mut out = Vec::new();
    for dst in &zones {
        for svc in &services {
            for src in &zones {
                // Where neither matrix admits the service, both deny: nothing to evaluate.
                if !matrix_admits(old, src, dst, svc) && !matrix_admits(new, src, dst, svc) {
                    continue;
                }
                let a = reach(old, identity, now, src, dst, svc);
                let b = reach(new, identity, now, src, dst, svc);
                if a.outcome != b.outcome {
                    out.push(ReachChange {
                        target_zone: dst.clone(),
                        service: svc.clone(),
                        source_zone: src.clone(),
                        old: a.outcome,
                        new: b.outcome,
                        reason: b.reason,
                    });
                }
            }
        }
    }
    out
}

fn reach(policy: &Policy, identity: &Identity, now: u64, src: &str, dst: &str, svc: &str) -> Reach {
    let ask = ZonedRequest {
        source_zone: src,
        source_microsegment: Some(0),
        target_zone: dst,
        target_microsegment: Some(0),
        service: svc,
        port: None,
        identity,
        via_broker: true,
    };
    let d = evaluate_zones(policy, &ask, now);
    let matrix_admits = matrix_admits(policy, src, dst, svc);
    let allowed = d.is_allowed();
    Reach {
        target_zone: dst.to_owned(),
        service: svc.to_owned(),
        source_zone: src.to_owned(),
        outcome: d.outcome,
        matrix_admits,
        roles: d.roles,
        reason: d.reason,
        constraints: allowed.then_some(d.constraints),
    }
}

/// Whether both cells of a session (from the source zone, the broker's leg) admit `svc`.
fn matrix_admits(policy: &Policy, src: &str, dst: &str, svc: &str) -> bool {
    match (
        policy.zone_id(src),
        policy.zone_id(dst),
        policy.service_by_name.get(svc),
    ) {
        (Some(s), Some(t), Some(&v)) => {
            policy.cell(s, t).admits(v) && policy.cell(policy.broker, t).admits(v)
        }
        _ => false,
    }
}
