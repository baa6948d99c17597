use std::net::IpAddr;

use super::grant::most_generous;
use super::*;
use crate::request::TargetFacts;

const DEV: &str = include_str!("../../../config/policy-dev.toml");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn request(groups: &[&str], port: u16) -> Request {
    Request {
        source: ip("127.0.0.1"),
        target: TargetFacts {
            ip: ip("127.0.0.1"),
            port,
            vmid: None,
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: None,
        },
        identity: Identity {
            subject: "s-1".into(),
            preferred_username: Some("alice".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        },
        via_broker: true,
    }
}

#[test]
fn dev_policy_allows_admins_and_users_and_denies_strangers() {
    let policy = Policy::parse(DEV).unwrap();
    let d = evaluate(&policy, &request(&["admins"], 7777), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(d.roles, vec!["dev-admin"]);
    assert_eq!(d.constraints.logins, vec!["alice"]);
    assert_eq!(d.policy_hash, policy.hash());
    assert_eq!(
        evaluate(&policy, &request(&["users"], 22), 0).outcome,
        Outcome::Allow
    );
    let d = evaluate(&policy, &request(&["guests"], 22), 0);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        d.reason.contains("none of your groups (guests)"),
        "{}",
        d.reason
    );
    assert!(evaluate(&policy, &request(&[], 22), 0)
        .reason
        .contains("no group"));
}

#[test]
fn dev_permissions_follow_roles() {
    let policy = Policy::parse(DEV).unwrap();
    let admin = request(&["admins"], 1).identity;
    assert_eq!(permissions(&policy, &admin).len(), Permission::ALL.len());
    let user = request(&["users"], 1).identity;
    assert!(permissions(&policy, &user).is_empty());
}

#[test]
fn addresses_outside_every_zone_are_denied() {
    let policy = Policy::parse(DEV).unwrap();
    let mut req = request(&["admins"], 22);
    req.source = ip("192.0.2.1");
    let d = evaluate(&policy, &req, 0);
    assert!(d.reason.contains("192.0.2.1 is in no zone"), "{}", d.reason);
    let mut req = request(&["admins"], 22);
    req.target.ip = ip("192.0.2.1");
    let d = evaluate(&policy, &req, 0);
    assert_eq!(d.source_zone.as_deref(), Some("LOCAL"));
    assert!(d.reason.contains("in no zone"), "{}", d.reason);
}

#[test]
fn declared_zone_and_unknown_service_are_refused() {
    let policy = Policy::parse(DEV).unwrap();
    let mut req = request(&["admins"], 22);
    req.target.declared_zone = Some("ELSEWHERE".into());
    assert!(evaluate(&policy, &req, 0)
        .reason
        .contains("declares zone ELSEWHERE"));
    let mut req = request(&["admins"], 22);
    req.target.service = Some("telnet".into());
    assert!(evaluate(&policy, &req, 0)
        .reason
        .contains("`telnet` is not in the policy"));
}

#[test]
fn zoned_requests_use_the_same_rules() {
    let policy = Policy::parse(DEV).unwrap();
    let identity = request(&["users"], 1).identity;
    let zoned = ZonedRequest {
        source_zone: "LOCAL",
        source_microsegment: None,
        target_zone: "LOCAL",
        target_microsegment: None,
        service: "echo",
        port: None,
        identity: &identity,
        via_broker: true,
    };
    assert_eq!(evaluate_zones(&policy, &zoned, 0).outcome, Outcome::Allow);
    let unknown = ZonedRequest {
        target_zone: "MARS",
        ..zoned
    };
    assert!(evaluate_zones(&policy, &unknown, 0)
        .reason
        .contains("unknown zone `MARS`"));
}

#[test]
fn most_generous_limit_wins_and_none_means_unlimited() {
    assert_eq!(most_generous(None, Some(5)), Some(5));
    assert_eq!(most_generous(Some(Some(5)), Some(9)), Some(9));
    assert_eq!(most_generous(Some(Some(5)), None), None);
    assert_eq!(most_generous::<u32>(Some(None), Some(3)), None);
}

#[test]
fn a_role_denial_names_the_rule_and_keeps_the_cells_it_passed() {
    let policy = Policy::parse(DEV).unwrap();
    let d = evaluate(&policy, &request(&["guests"], 22), 0);
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.cells.len(), 2, "{:?}", d.cells);
    assert!(d.cells[0].starts_with("LOCAL -> LOCAL: "), "{:?}", d.cells);
    let rule = d.role_rule.as_deref().unwrap();
    assert!(rule.starts_with("no role: "), "{rule}");
    // A matrix denial is no role's doing.
    let mut req = request(&["admins"], 22);
    req.target.service = Some("telnet".into());
    assert_eq!(evaluate(&policy, &req, 0).role_rule, None);
}
