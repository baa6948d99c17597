//! The fuzz entry point of the policy compiler: a policy file is admin input, but the
//! controller compiles it at start and on every reload, and `policy check` runs it on any
//! file, so no text may make it panic or hang. `fuzz/fuzz_targets/policy_compile.rs` drives
//! it under libFuzzer (see `fuzz/README.md`); the unit tests replay the seed corpus and every
//! input that once crashed, on stable.

use std::net::IpAddr;

use crate::export::{self, ExportOptions};
use crate::{admit_request, may_approve, ApproveAsk, RequestAsk, Scope};
use crate::{check, evaluate, evaluate_zones, explain, permissions, Identity, Policy, Request};
use crate::{TargetFacts, ZonedRequest};

const NOW: u64 = 1_700_000_000;

/// Compiles the text as `policy check` and the controller do; a policy that compiles is
/// exported in every format and asked for decisions between all of its zones.
pub fn policy_compile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(policy) = compile_consistently(text) else {
        return;
    };
    let zones: Vec<String> = policy.zone_names().map(str::to_owned).collect();
    let addrs: Vec<IpAddr> = zones
        .iter()
        .filter_map(|z| {
            policy
                .zone_cidrs(z)
                .and_then(|c| c.first())
                .map(|n| n.addr())
        })
        .collect();
    export_every_format(&policy, &zones, &addrs);

    let identity = Identity {
        subject: "u_fuzz".into(),
        groups: policy.role_names().map(str::to_owned).collect(),
        amr: vec!["mfa".into()],
        auth_time: Some(NOW - 60),
        granted_roles: policy
            .requestable_roles()
            .map(|(name, _)| name.to_owned())
            .collect(),
        ..Identity::default()
    };
    let _ = permissions(&policy, &identity);
    for zone in &zones {
        let _ = explain::locate(&policy, zone);
    }
    decide_between_addresses(&policy, &addrs, &identity);
    decide_between_zones(&policy, &zones, &identity);
    ask_for_requestable_roles(&policy, &zones, &addrs, &identity);
}

/// A request for each requestable role into each of the first zones, and its approval.
fn ask_for_requestable_roles(
    policy: &Policy,
    zones: &[String],
    addrs: &[IpAddr],
    identity: &Identity,
) {
    let source = addrs
        .first()
        .copied()
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    for (role, terms) in policy.requestable_roles().take(4) {
        for zone in zones.iter().take(4) {
            for break_glass in [false, true] {
                let ask = RequestAsk {
                    role,
                    requester: identity,
                    source,
                    scope: Scope::Zone(zone),
                    duration_secs: terms.max_duration_secs,
                    reason: Some("fuzz"),
                    break_glass,
                };
                let _ = admit_request(policy, &ask, NOW);
            }
        }
        let ask = ApproveAsk {
            role,
            approver: identity,
            approver_id: "u_approver",
            requester_id: "u_fuzz",
            prior_approver_ids: &[],
            max_auth_age_secs: 600,
        };
        let _ = may_approve(policy, &ask, NOW);
    }
}

/// The policy, when the text compiles; asserts that `check` agrees with `parse` and that
/// the same text hashes the same.
fn compile_consistently(text: &str) -> Option<Policy> {
    let report = check(text);
    let policy = match Policy::parse(text) {
        Ok(policy) => policy,
        Err(err) => {
            assert!(!err.diagnostics.is_empty(), "a refusal names no problem");
            assert!(!report.is_valid(), "check passes a file parse refuses");
            return None;
        }
    };
    assert!(report.is_valid(), "check refuses a file parse accepts");
    assert_eq!(
        Policy::parse(text)
            .ok()
            .map(|p| p.hash().to_owned())
            .as_deref(),
        Some(policy.hash()),
        "the same text hashes differently"
    );
    Some(policy)
}

/// Markdown, nftables and Proxmox, with workers in the first zones and a target per zone.
fn export_every_format(policy: &Policy, zones: &[String], addrs: &[IpAddr]) {
    let options = ExportOptions {
        worker_addrs: addrs.iter().take(2).copied().collect(),
        targets: zones
            .iter()
            .enumerate()
            .map(|(i, z)| (100 + i as u32, z.clone()))
            .collect(),
    };
    let _ = export::markdown(policy);
    let _ = export::nftables(policy, &options);
    let _ = export::proxmox(policy, &options);
}

/// A session and a direct flow between the first addresses of the first zones, explained.
fn decide_between_addresses(policy: &Policy, addrs: &[IpAddr], identity: &Identity) {
    for source in addrs.iter().take(8) {
        let _ = explain::locate(policy, &source.to_string());
        for target in addrs.iter().take(8) {
            for via_broker in [true, false] {
                let request = Request {
                    source: *source,
                    target: TargetFacts {
                        ip: *target,
                        port: 22,
                        vmid: Some(100),
                        tags: vec![],
                        pool: None,
                        declared_zone: None,
                        service: None,
                    },
                    identity: identity.clone(),
                    via_broker,
                };
                let decision = evaluate(policy, &request, NOW);
                let _ = explain::render(&decision);
            }
        }
    }
}

/// A session for each of the first services between each pair of the first zones.
fn decide_between_zones(policy: &Policy, zones: &[String], identity: &Identity) {
    let services: Vec<String> = policy.service_names().map(str::to_owned).collect();
    for source in zones.iter().take(8) {
        for target in zones.iter().take(8) {
            for service in services.iter().take(4) {
                let request = ZonedRequest {
                    source_zone: source,
                    source_microsegment: None,
                    target_zone: target,
                    target_microsegment: None,
                    service,
                    port: None,
                    identity,
                    via_broker: true,
                };
                let _ = evaluate_zones(policy, &request, NOW);
            }
        }
    }
}

#[cfg(test)]
mod tests;
