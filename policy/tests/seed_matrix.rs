//! The expected-decision table of issue 4, against `config/policy.toml`.
//!
//! Each row names a source, a target, a service and the user's groups. Sources and targets
//! are real addresses (and VMIDs) inside the zones, so the whole path is exercised: address
//! to zone, target selectors, both matrix cells, and the roles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use portcullis_policy::{evaluate, Decision, Identity, Outcome, Policy, Request, TargetFacts};

const NOW: u64 = 1_800_000_000;

fn policy() -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/policy.toml");
    let text = std::fs::read_to_string(path).expect("config/policy.toml");
    Policy::parse(&text).expect("config/policy.toml is valid")
}

/// A representative address (and VMID) in each zone; `NOWHERE` is in no zone.
fn place(name: &str) -> (IpAddr, Option<u32>) {
    let (ip, vmid) = match name {
        "ON-PREM-ADMIN" => ("10.10.1.10", None),
        "VAULT" => ("10.10.6.10", None),
        "BROKER" => ("10.10.5.10", None),
        "PROXMOX-MGMT" => ("10.20.0.11", None),
        "CORE-INFRA" => ("10.30.0.10", Some(1001)),
        "SECURITY-SERVICES" => ("10.60.0.10", None),
        "OBSERVABILITY" => ("10.50.0.10", Some(5000)),
        // Microsegment #0: VMIDs 4000-4099, 10.40.0.0/24.
        "WORKLOADS" | "WORKLOADS#0" => ("10.40.0.12", Some(4012)),
        "WORKLOADS#0b" => ("10.40.0.77", Some(4077)),
        // Microsegment #1: VMIDs 4100-4199, 10.40.1.0/24.
        "WORKLOADS#1" => ("10.40.1.5", Some(4105)),
        "NOWHERE" => ("192.168.77.7", None),
        other => panic!("no place {other}"),
    };
    (ip.parse().unwrap(), vmid)
}

fn port_of(service: &str) -> u16 {
    match service {
        "proxmox-api" => 8006,
        "ssh" => 22,
        "rdp" => 3389,
        "winrm" => 5986,
        "iam-token" => 443,
        "dns" => 53,
        "siem-config-api" => 55000,
        "dashboards" => 3000,
        "vault-api" => 8200,
        "log-shipping" => 6514,
        "metrics" => 9100,
        "app-traffic" => 8080,
        other => panic!("no port for {other}"),
    }
}

/// An identity with fresh MFA, so that rows test the matrix and the roles, not the clock.
fn identity(groups: &[&str]) -> Identity {
    Identity {
        subject: "0b5e-11".into(),
        preferred_username: Some("alice".into()),
        email: Some("alice@example.org".into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        amr: vec!["pwd".into(), "otp".into()],
        acr: None,
        auth_time: Some(NOW - 60),
        granted_roles: Vec::new(),
    }
}

fn decide(
    policy: &Policy,
    from: &str,
    to: &str,
    service: &str,
    groups: &[&str],
    via_broker: bool,
) -> Decision {
    let (source, _) = place(from);
    let (ip, vmid) = place(to);
    let request = Request {
        source,
        target: TargetFacts {
            ip,
            port: port_of(service),
            vmid,
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: Some(service.into()),
        },
        identity: identity(groups),
        via_broker,
    };
    evaluate(policy, &request, NOW)
}

/// An admin's session request from ON-PREM-ADMIN to `zone`'s address on `port`, with no
/// VM id, tag, pool, declared zone or service.
fn admin_session_to(zone: &str, port: u16) -> Request {
    Request {
        source: place("ON-PREM-ADMIN").0,
        target: TargetFacts {
            ip: place(zone).0,
            port,
            vmid: None,
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: None,
        },
        identity: identity(&["admins"]),
        via_broker: true,
    }
}

const SESSION: bool = true;
const DIRECT: bool = false;
const ALLOW: Outcome = Outcome::Allow;
const DENY: Outcome = Outcome::Deny;

/// (source, target, service, groups, via broker, expected, a phrase the reason holds)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
    Outcome,
    &'static str,
);

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // ON-PREM-ADMIN -> PROXMOX-MGMT proxmox-api, admin: allow via session; ssh: deny; direct: deny.
    ("ON-PREM-ADMIN", "PROXMOX-MGMT", "proxmox-api", &["admins"], SESSION, ALLOW, "role admin"),
    ("ON-PREM-ADMIN", "PROXMOX-MGMT", "ssh", &["admins"], SESSION, DENY, "allows only proxmox-api"),
    ("ON-PREM-ADMIN", "PROXMOX-MGMT", "proxmox-api", &["admins"], DIRECT, DENY, "only through a Portcullis session"),
    // ON-PREM-ADMIN -> CORE-INFRA iam-token, infrastructure: allow; dns: deny.
    ("ON-PREM-ADMIN", "CORE-INFRA", "iam-token", &["infrastructure"], SESSION, ALLOW, "role infrastructure"),
    ("ON-PREM-ADMIN", "CORE-INFRA", "dns", &["infrastructure"], SESSION, DENY, "allows only iam-token"),
    // ON-PREM-ADMIN -> SECURITY-SERVICES siem-config-api, admin: allow; ssh: deny.
    ("ON-PREM-ADMIN", "SECURITY-SERVICES", "siem-config-api", &["admins"], SESSION, ALLOW, "role admin"),
    ("ON-PREM-ADMIN", "SECURITY-SERVICES", "ssh", &["admins"], SESSION, DENY, "allows only siem-config-api"),
    // ON-PREM-ADMIN -> OBSERVABILITY dashboards, admin: allow.
    ("ON-PREM-ADMIN", "OBSERVABILITY", "dashboards", &["admins"], SESSION, ALLOW, "role admin"),
    // ON-PREM-ADMIN -> WORKLOADS ssh, projects: allow; rdp: allow; proxmox-api: deny; games: deny.
    ("ON-PREM-ADMIN", "WORKLOADS", "ssh", &["projects"], SESSION, ALLOW, "role projects"),
    ("ON-PREM-ADMIN", "WORKLOADS", "rdp", &["projects"], SESSION, ALLOW, "role projects"),
    ("ON-PREM-ADMIN", "WORKLOADS", "proxmox-api", &["projects"], SESSION, DENY, "not `proxmox-api`"),
    ("ON-PREM-ADMIN", "WORKLOADS", "ssh", &["games"], SESSION, DENY, "grant nothing"),
    ("ON-PREM-ADMIN", "WORKLOADS", "rdp", &["games"], SESSION, DENY, "grant nothing"),
    ("ON-PREM-ADMIN", "WORKLOADS", "winrm", &["games"], SESSION, DENY, "grant nothing"),
    ("ON-PREM-ADMIN", "WORKLOADS", "proxmox-api", &["games"], SESSION, DENY, "not `proxmox-api`"),
    // WORKLOADS -> PROXMOX-MGMT, any: deny (X).
    ("WORKLOADS", "PROXMOX-MGMT", "proxmox-api", &["admins"], SESSION, DENY, "blocks WORKLOADS -> PROXMOX-MGMT (X)"),
    ("WORKLOADS", "PROXMOX-MGMT", "ssh", &["admins", "infrastructure"], SESSION, DENY, "(X)"),
    ("WORKLOADS", "PROXMOX-MGMT", "proxmox-api", &["admins"], DIRECT, DENY, "(X)"),
    // VAULT -> SECURITY-SERVICES: deny.
    ("VAULT", "SECURITY-SERVICES", "siem-config-api", &["admins"], SESSION, DENY, "(X)"),
    ("VAULT", "SECURITY-SERVICES", "log-shipping", &[], DIRECT, DENY, "(X)"),
    // PROXMOX-MGMT -> WORKLOADS: deny.
    ("PROXMOX-MGMT", "WORKLOADS", "ssh", &["admins", "projects"], SESSION, DENY, "(X)"),
    ("PROXMOX-MGMT", "WORKLOADS", "app-traffic", &[], DIRECT, DENY, "(X)"),
    // SECURITY-SERVICES -> WORKLOADS: deny.
    ("SECURITY-SERVICES", "WORKLOADS", "ssh", &["admins", "projects"], SESSION, DENY, "(X)"),
    ("SECURITY-SERVICES", "WORKLOADS", "log-shipping", &[], DIRECT, DENY, "(X)"),
    // WORKLOADS -> WORKLOADS: allow only within the same microsegment.
    ("WORKLOADS#0", "WORKLOADS#0b", "app-traffic", &[], DIRECT, ALLOW, "network matrix allows"),
    ("WORKLOADS#0", "WORKLOADS#1", "app-traffic", &[], DIRECT, DENY, "within one microsegment"),
    ("WORKLOADS#0", "WORKLOADS#0b", "ssh", &["projects"], SESSION, ALLOW, "role projects"),
    ("WORKLOADS#0", "WORKLOADS#1", "ssh", &["projects"], SESSION, DENY, "source is in #0, the target in #1"),
    // Sources or destinations the seed does not list: deny.
    ("OBSERVABILITY", "WORKLOADS", "ssh", &["admins", "projects"], SESSION, DENY, "no cell OBSERVABILITY -> WORKLOADS"),
    ("OBSERVABILITY", "CORE-INFRA", "dns", &[], DIRECT, DENY, "no cell"),
    ("CORE-INFRA", "ON-PREM-ADMIN", "ssh", &["admins"], SESSION, DENY, "no cell CORE-INFRA -> ON-PREM-ADMIN"),
    ("WORKLOADS", "ON-PREM-ADMIN", "ssh", &["admins"], SESSION, DENY, "no cell"),
    ("BROKER", "ON-PREM-ADMIN", "ssh", &["admins"], SESSION, DENY, "no cell"),
    // An address in no zone: deny, as a source and as a target.
    ("NOWHERE", "PROXMOX-MGMT", "proxmox-api", &["admins"], SESSION, DENY, "is in no zone"),
    ("ON-PREM-ADMIN", "NOWHERE", "ssh", &["admins"], SESSION, DENY, "is in no zone"),
];

#[test]
fn the_expected_decision_table_holds() {
    let policy = policy();
    let mut failures = Vec::new();
    for (from, to, service, groups, via_broker, expected, phrase) in ROWS {
        let d = decide(&policy, from, to, service, groups, *via_broker);
        if d.outcome != *expected || !d.reason.contains(phrase) {
            failures.push(format!(
                "{from} -> {to} {service} {groups:?} via_broker={via_broker}: expected {expected:?} ({phrase}), got {:?}: {}",
                d.outcome, d.reason
            ));
        }
        assert_eq!(d.policy_hash, policy.hash());
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_broker_only_cell_is_open_to_admin_and_records_both_cells() {
    let policy = policy();
    for (to, service) in [
        ("PROXMOX-MGMT", "proxmox-api"),
        ("CORE-INFRA", "iam-token"),
        ("SECURITY-SERVICES", "siem-config-api"),
        ("OBSERVABILITY", "dashboards"),
        ("WORKLOADS", "ssh"),
        ("WORKLOADS", "rdp"),
        ("WORKLOADS", "winrm"),
    ] {
        let d = decide(
            &policy,
            "ON-PREM-ADMIN",
            to,
            service,
            &["/org/admins"],
            SESSION,
        );
        assert_eq!(d.outcome, ALLOW, "{to} {service}: {}", d.reason);
        assert_eq!(d.cells.len(), 3, "{:?}", d.cells);
        assert!(d.cells[0].starts_with(&format!("ON-PREM-ADMIN -> {to}: broker-only")));
        assert!(d.cells[1].starts_with(&format!("BROKER -> {to}: allow")));
        assert_eq!(d.constraints.max_session_secs, Some(28800));
        assert_eq!(d.constraints.connection_limit, Some(16));
    }
}

#[test]
fn admin_needs_fresh_mfa_and_the_admin_zone() {
    let policy = policy();
    let mut request = admin_session_to("PROXMOX-MGMT", 8006);
    assert_eq!(evaluate(&policy, &request, NOW).outcome, ALLOW);
    request.identity.amr = vec!["pwd".into()];
    let d = evaluate(&policy, &request, NOW);
    assert!(d.reason.contains("requires MFA"), "{}", d.reason);
    request.identity.amr = vec!["otp".into()];
    let d = evaluate(&policy, &request, NOW + 86_400);
    assert!(d.reason.contains("sign in again"), "{}", d.reason);
}

#[test]
fn logins_and_limits_come_from_the_granting_roles() {
    let policy = policy();
    let d = decide(
        &policy,
        "ON-PREM-ADMIN",
        "WORKLOADS",
        "ssh",
        &["infrastructure", "projects"],
        SESSION,
    );
    assert_eq!(d.outcome, ALLOW);
    assert_eq!(d.roles, vec!["infrastructure", "projects"]);
    assert_eq!(d.constraints.logins, vec!["alice", "ansible"]);
    assert_eq!(d.constraints.max_session_secs, Some(14400));
    // infrastructure sets no connection limit, so none applies.
    assert_eq!(d.constraints.connection_limit, None);
}

#[test]
fn selectors_that_disagree_with_the_address_are_refused() {
    let policy = policy();
    let mut request = Request {
        source: place("ON-PREM-ADMIN").0,
        target: TargetFacts {
            ip: place("WORKLOADS#0").0,
            port: 22,
            vmid: Some(4105),
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: Some("ssh".into()),
        },
        identity: identity(&["projects"]),
        via_broker: true,
    };
    assert!(evaluate(&policy, &request, NOW)
        .reason
        .contains("microsegment"));
    request.target.vmid = Some(1001);
    assert!(evaluate(&policy, &request, NOW)
        .reason
        .contains("VMID 1001 puts it in zone CORE-INFRA"));
    request.target.vmid = None;
    request.target.tags = vec!["pve-mgmt".into()];
    assert!(evaluate(&policy, &request, NOW)
        .reason
        .contains("tag `pve-mgmt`"));
    request.target.tags.clear();
    request.target.declared_zone = Some("CORE-INFRA".into());
    assert!(evaluate(&policy, &request, NOW)
        .reason
        .contains("declares zone CORE-INFRA"));
    request.target.declared_zone = Some("WORKLOADS".into());
    request.target.port = 2222;
    assert!(evaluate(&policy, &request, NOW)
        .reason
        .contains("port 2222 is not a port of `ssh`"));
}

#[test]
fn mtls_only_cells_are_never_satisfied_by_a_session() {
    let policy = policy();
    let d = decide(
        &policy,
        "VAULT",
        "PROXMOX-MGMT",
        "vault-api",
        &["admins"],
        SESSION,
    );
    assert_eq!(d.outcome, DENY);
    assert!(d.reason.contains("mTLS-only"), "{}", d.reason);
}

#[test]
fn a_port_shared_by_services_tries_each_in_file_order() {
    let policy = policy();
    let mut request = admin_session_to("OBSERVABILITY", 443);
    let d = evaluate(&policy, &request, NOW);
    assert_eq!(d.outcome, ALLOW, "{}", d.reason);
    assert_eq!(d.service.as_deref(), Some("dashboards"));
    request.target.ip = place("CORE-INFRA").0;
    let d = evaluate(&policy, &request, NOW);
    assert_eq!(d.service.as_deref(), Some("iam-token"));
    // Only `app-traffic` (any port) uses port 1, and the matrix blocks it here.
    request.target.port = 1;
    let d = evaluate(&policy, &request, NOW);
    assert_eq!(
        (d.outcome, d.service.as_deref()),
        (DENY, Some("app-traffic")),
        "{}",
        d.reason
    );
}
