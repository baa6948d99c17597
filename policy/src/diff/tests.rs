#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::{evaluate_zones, Identity, ZonedRequest};

const BASE: &str = r#"
[settings]
broker_zone = "BROKER"

[[zone]]
name = "BROKER"
cidrs = ["10.5.0.0/16"]

[[zone]]
name = "ADMIN"
cidrs = ["10.10.0.0/16"]

[[zone]]
name = "DMZ"
cidrs = ["10.30.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "https"
ports = [443]

[[cell]]
from = "ADMIN"
to = "DMZ"
access = "broker-only"
services = ["ssh", "https"]

[[cell]]
from = "BROKER"
to = "DMZ"
access = "allow"
services = ["ssh", "https"]

[[role]]
name = "ops"
groups = ["ops"]
[[role.grant]]
zones = ["DMZ"]
services = ["ssh"]
logins = ["{{preferred_username}}"]

[[role]]
name = "web"
groups = ["web"]
[[role.grant]]
zones = ["DMZ"]
services = ["https"]

[[role]]
name = "dmz-oncall"
groups = ["developers"]
[[role.grant]]
zones = ["DMZ"]
services = ["ssh"]
[role.requestable]
approvers = ["leads"]
max_duration = "4h"
"#;

fn parse(text: &str) -> Policy {
    Policy::parse(text).unwrap()
}

fn edited(from: &str, to: &str) -> Policy {
    assert!(
        BASE.contains(from),
        "the edit's anchor `{from}` is not in the base"
    );
    parse(&BASE.replacen(from, to, 1))
}

fn lines(d: &PolicyDiff) -> Vec<String> {
    d.changes.iter().map(Change::line).collect()
}

#[test]
fn identical_policies_differ_in_nothing() {
    let p = parse(BASE);
    let d = diff(&p, &p);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(d.summary(), Summary::default());
    // A comment changes the hash, not a decision.
    let q = parse(&format!("# a comment\n{BASE}"));
    let d = diff(&p, &q);
    assert!(d.is_empty());
    assert_ne!(d.old_hash, d.new_hash);
}

#[test]
fn removing_a_cell_denies_what_it_admitted_naming_the_cell() {
    let old = parse(BASE);
    let new = edited(
        "services = [\"ssh\", \"https\"]\n\n[[cell]]\nfrom = \"BROKER\"",
        "services = [\"https\"]\n\n[[cell]]\nfrom = \"BROKER\"",
    );
    let d = diff(&old, &new);
    assert_eq!(
        lines(&d),
        vec![
            "role ops: ADMIN -> DMZ ssh: allow -> deny",
            "role dmz-oncall: ADMIN -> DMZ ssh: allow -> deny",
        ]
    );
    let ops = &d.changes[0];
    assert_eq!(ops.kind, ChangeKind::Denied);
    assert!(
        ops.because
            .contains(&"- ADMIN -> DMZ: broker-only [ssh, https]".to_owned()),
        "{:?}",
        ops.because
    );
    assert!(ops
        .because
        .contains(&"+ ADMIN -> DMZ: broker-only [https]".to_owned()));
    assert_eq!(d.cells.len(), 1);
    assert_eq!(d.cells[0].old, "broker-only [ssh, https]");
    assert_eq!(d.summary().denied, 2);
}

#[test]
fn a_grant_added_allows_and_a_constraint_changes_terms() {
    let old = parse(BASE);
    let new = edited(
        "services = [\"https\"]\n",
        "services = [\"https\", \"ssh\"]\n[role.constraints]\nmax_session_secs = 600\nmfa = { amr = [\"mfa\"] }\n",
    );
    let d = diff(&old, &new);
    assert_eq!(
        lines(&d),
        vec![
            "role web: BROKER -> DMZ ssh: deny -> allow",
            "role web: BROKER -> DMZ https: allow -> allow",
            "role web: ADMIN -> DMZ ssh: deny -> allow",
            "role web: ADMIN -> DMZ https: allow -> allow",
        ]
    );
    assert_eq!(d.changes[0].kind, ChangeKind::Allowed);
    assert!(d.changes[0]
        .because
        .iter()
        .any(|b| b == "+ role web: grants ssh in DMZ"));
    let terms = &d.changes[1];
    assert_eq!(terms.kind, ChangeKind::Changed);
    assert!(terms
        .because
        .contains(&"max session: none -> 600s".to_owned()));
    assert!(terms
        .because
        .contains(&"mfa: none -> amr one of mfa".to_owned()));
    assert_eq!(
        terms.new.terms.as_ref().unwrap().mfa.as_deref(),
        Some("amr one of mfa")
    );
}

#[test]
fn requestable_roles_change_terms_not_standing_decisions() {
    let old = parse(BASE);
    let new = edited(
        "max_duration = \"4h\"",
        "max_duration = \"8h\"\napprovals = 2",
    );
    let d = diff(&old, &new);
    assert!(d.changes.is_empty(), "{:?}", lines(&d));
    assert_eq!(
        d.role_changes,
        vec![ItemChange {
            name: "dmz-oncall".into(),
            changes: vec!["approvals: 1 -> 2".into(), "max_duration: 4h -> 8h".into()],
        }]
    );
    // Standing to requestable: the same decision, now held on request.
    let new = edited(
        "[[role.grant]]\nzones = [\"DMZ\"]\nservices = [\"https\"]\n",
        "[[role.grant]]\nzones = [\"DMZ\"]\nservices = [\"https\"]\n[role.requestable]\napprovers = [\"leads\"]\nmax_duration = \"1h\"\n",
    );
    let d = diff(&old, &new);
    assert_eq!(
        lines(&d),
        vec![
            "role web: BROKER -> DMZ https: allow -> allow",
            "role web: ADMIN -> DMZ https: allow -> allow",
        ]
    );
    assert!(d.changes[1]
        .because
        .contains(&"held: standing -> on request".to_owned()));
    assert_eq!(d.role_changes[0].name, "web");
    assert!(d.role_changes[0]
        .changes
        .contains(&"held: standing -> on request".to_owned()));
}

#[test]
fn names_added_and_removed_and_zones_changed() {
    let old = parse(BASE);
    let new = parse(
        &BASE
            .replace("cidrs = [\"10.30.0.0/16\"]", "cidrs = [\"10.31.0.0/16\"]")
            .replace(
                "[[role]]\nname = \"web\"",
                "[[zone]]\nname = \"LAB\"\ncidrs = [\"10.60.0.0/16\"]\n\n[[role]]\nname = \"web\"",
            )
            .replace("name = \"ops\"", "name = \"admins\""),
    );
    let d = diff(&old, &new);
    assert_eq!(d.zones.added, vec!["LAB"]);
    assert_eq!(d.roles.added, vec!["admins"]);
    assert_eq!(d.roles.removed, vec!["ops"]);
    assert_eq!(d.zone_changes[0].name, "DMZ");
    assert_eq!(
        d.zone_changes[0].changes,
        vec!["cidrs: [10.30.0.0/16] -> [10.31.0.0/16]"]
    );
    // Renaming a role: the new one allows, the old one denies, new names first.
    assert_eq!(
        lines(&d),
        vec![
            "role admins: BROKER -> DMZ ssh: deny -> allow",
            "role admins: ADMIN -> DMZ ssh: deny -> allow",
            "role ops: BROKER -> DMZ ssh: allow -> deny",
            "role ops: ADMIN -> DMZ ssh: allow -> deny",
        ]
    );
    assert!(d.changes[3]
        .new
        .rules
        .contains(&"role `ops` is not in this policy".to_owned()));
    assert_eq!(d.changes[3].because, ["role `ops` removed"]);
    assert_eq!(d.changes[0].because, ["role `admins` added"]);
    let s = d.summary();
    assert_eq!((s.roles_added, s.roles_removed, s.zones_added), (1, 1, 1));
}

#[test]
fn simulate_lists_reach_with_reasons_and_reach_changes_follow_the_edit() {
    let p = parse(BASE);
    let ops = Identity {
        subject: "a".into(),
        preferred_username: Some("alice".into()),
        groups: vec!["ops".into(), "developers".into()],
        ..Identity::default()
    };
    let reach = simulate(&p, &ops, 1000);
    assert_eq!(reach.len(), 3 * 2 * 3, "every zone x service x source zone");
    let allowed: Vec<_> = reach
        .iter()
        .filter(|r| r.outcome == Outcome::Allow)
        .collect();
    assert_eq!(allowed.len(), 2, "from BROKER and from ADMIN");
    assert_eq!(
        (
            allowed[1].source_zone.as_str(),
            allowed[1].target_zone.as_str(),
            allowed[1].service.as_str()
        ),
        ("ADMIN", "DMZ", "ssh")
    );
    assert_eq!(allowed[0].roles, vec!["ops"]);
    assert_eq!(
        allowed[0].constraints.as_ref().unwrap().logins,
        vec!["alice"]
    );
    let https = reach
        .iter()
        .find(|r| r.source_zone == "ADMIN" && r.target_zone == "DMZ" && r.service == "https")
        .unwrap();
    assert!(https.matrix_admits && https.outcome == Outcome::Deny);
    assert!(
        https.reason.contains("grant nothing for `https`"),
        "{}",
        https.reason
    );
    // Without the ops group, the requestable role is named as the way in.
    let dev = Identity {
        groups: vec!["developers".into()],
        ..ops.clone()
    };
    let ssh = simulate(&p, &dev, 1000)
        .into_iter()
        .find(|r| r.source_zone == "ADMIN" && r.target_zone == "DMZ" && r.service == "ssh")
        .unwrap();
    assert!(
        ssh.reason.contains("request create --role dmz-oncall"),
        "{}",
        ssh.reason
    );

    let new = edited("groups = [\"web\"]", "groups = [\"web\", \"ops\"]");
    let changes = reach_changes(&p, &new, &ops, 1000);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        (
            changes[1].source_zone.as_str(),
            changes[1].service.as_str(),
            changes[1].old,
            changes[1].new
        ),
        ("ADMIN", "https", Outcome::Deny, Outcome::Allow)
    );
    assert!(reach_changes(&p, &p, &ops, 1000).is_empty());
}

#[test]
fn the_diff_serialises_for_scripts() {
    let old = parse(BASE);
    let new = edited(
        "services = [\"ssh\"]\nlogins",
        "services = [\"https\"]\nlogins",
    );
    let d = diff(&old, &new);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["changes"][0]["kind"], "denied");
    assert_eq!(json["changes"][0]["old"]["outcome"], "allow");
    let back: PolicyDiff = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}

// ---- Properties ----

/// A small random policy: three zones (the first the broker's), three services (one UDP),
/// random cells, and up to three roles, each with its own group, sometimes requestable.
fn policy_text() -> impl Strategy<Value = String> {
    let cell = (
        0usize..3,
        0usize..3,
        prop::sample::select(vec!["allow", "broker-only", "deny", "mtls-only"]),
        prop::collection::btree_set(0usize..3, 1..=3),
    );
    let role = (
        prop::option::of(prop::collection::btree_set(0usize..3, 1..=3)),
        prop::option::of(prop::collection::btree_set(0usize..3, 1..=3)),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![60u64, 600])),
        any::<bool>(),
        prop::option::of(prop::collection::btree_set(0usize..3, 1..=2)),
        any::<bool>(),
    );
    (
        prop::collection::vec(cell, 0..7),
        prop::collection::vec(role, 1..=3),
        any::<bool>(),
    )
        .prop_map(|(cells, roles, gateway)| {
            let zones = ["Z0", "Z1", "Z2"];
            let services = ["ssh", "web", "dns"];
            let mut t = String::from("[settings]\nbroker_zone = \"Z0\"\n");
            for (i, z) in zones.iter().enumerate() {
                t += &format!("[[zone]]\nname = \"{z}\"\ncidrs = [\"10.{i}.0.0/16\"]\n");
                if gateway && i == 2 {
                    t += "ssh_mode = \"gateway\"\n";
                }
            }
            t += "[[service]]\nname = \"ssh\"\nports = [22]\n[[service]]\nname = \"web\"\nports = [443]\n[[service]]\nname = \"dns\"\nprotocol = \"udp\"\nports = [53]\n";
            let mut seen = BTreeSet::new();
            for (from, to, access, svcs) in cells {
                if !seen.insert((from, to)) {
                    continue;
                }
                t += &format!(
                    "[[cell]]\nfrom = \"{}\"\nto = \"{}\"\naccess = \"{access}\"\n",
                    zones[from], zones[to]
                );
                if access == "allow" || access == "broker-only" {
                    let names: Vec<String> = svcs.iter().map(|s| format!("\"{}\"", services[*s])).collect();
                    t += &format!("services = [{}]\n", names.join(", "));
                }
            }
            for (i, (gz, gs, requestable, max, mfa, sources, record)) in roles.into_iter().enumerate() {
                t += &format!("[[role]]\nname = \"r{i}\"\ngroups = [\"g{i}\"]\n");
                if record {
                    t += "record = true\n";
                }
                // `None`: "*", which the compiler does not hold to the matrix.
                let zs: Vec<String> = gz.map_or(vec!["\"*\"".into()], |gz| gz.iter().map(|z| format!("\"{}\"", zones[*z])).collect());
                let ss: Vec<String> = gs.map_or(vec!["\"*\"".into()], |gs| gs.iter().map(|s| format!("\"{}\"", services[*s])).collect());
                t += &format!("[[role.grant]]\nzones = [{}]\nservices = [{}]\n", zs.join(", "), ss.join(", "));
                if max.is_some() || mfa || sources.is_some() {
                    t += "[role.constraints]\n";
                    if let Some(max) = max {
                        t += &format!("max_session_secs = {max}\n");
                    }
                    if let Some(sources) = sources {
                        let zs: Vec<String> = sources.iter().map(|z| format!("\"{}\"", zones[*z])).collect();
                        t += &format!("source_zones = [{}]\n", zs.join(", "));
                    }
                    if mfa {
                        t += "mfa = { amr = [\"mfa\"] }\n";
                    }
                }
                if requestable {
                    t += "[role.requestable]\napprovers = [\"leads\"]\nmax_duration = \"1h\"\n";
                }
            }
            t
        })
        // A grant the matrix forbids is a compile error: keep the policies that compile.
        .prop_filter("a policy that compiles", |t| Policy::parse(t).is_ok())
}

/// The identity that is a member of role `i` alone in any generated policy: its own group
/// (standing), or the role granted (requestable); MFA met.
fn member_of(i: usize) -> Identity {
    Identity {
        subject: "SUBJECT".into(),
        preferred_username: Some("USER".into()),
        groups: vec![format!("g{i}")],
        amr: vec!["mfa".into()],
        granted_roles: vec![format!("r{i}")],
        ..Identity::default()
    }
}

type Tuple = (String, String, String, String);

/// The tuples whose `evaluate_zones` outcome differs between `a` and `b`.
fn outcome_changes(a: &Policy, b: &Policy) -> BTreeSet<Tuple> {
    let mut out = BTreeSet::new();
    for i in 0..3 {
        let who = member_of(i);
        for src in ["Z0", "Z1", "Z2"] {
            for dst in ["Z0", "Z1", "Z2"] {
                for svc in ["ssh", "web", "dns"] {
                    let ask = ZonedRequest {
                        source_zone: src,
                        source_microsegment: Some(0),
                        target_zone: dst,
                        target_microsegment: Some(0),
                        service: svc,
                        port: None,
                        identity: &who,
                        via_broker: true,
                    };
                    let (x, y) = (evaluate_zones(a, &ask, 0), evaluate_zones(b, &ask, 0));
                    if x.outcome != y.outcome {
                        out.insert((format!("r{i}"), src.into(), dst.into(), svc.into()));
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_policy_differs_from_itself_in_nothing(text in policy_text()) {
        let p = parse(&text);
        prop_assert!(diff(&p, &p).is_empty());
    }

    #[test]
    fn the_diff_reports_exactly_the_decisions_whose_outcome_differs(
        a in policy_text(),
        b in policy_text(),
    ) {
        let (a, b) = (parse(&a), parse(&b));
        let d = diff(&a, &b);
        let reported: BTreeSet<Tuple> = d
            .changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Changed)
            .map(|c| (c.role.clone(), c.source_zone.clone(), c.target_zone.clone(), c.service.clone()))
            .collect();
        prop_assert_eq!(reported, outcome_changes(&a, &b));
        for c in &d.changes {
            prop_assert_eq!(c.kind == ChangeKind::Changed, c.old.outcome == c.new.outcome);
            prop_assert!(c.kind != ChangeKind::Changed || c.old.terms != c.new.terms);
            prop_assert!(!c.because.is_empty(), "{:?}", c);
        }
        prop_assert_eq!(&diff(&a, &b), &d, "deterministic");
    }
}

#[test]
fn a_target_sees_the_changes_of_its_zone_and_service_and_its_move() {
    let old = parse(BASE);
    let facts = crate::TargetFacts {
        ip: "10.30.0.5".parse().unwrap(),
        port: 22,
        vmid: None,
        tags: Vec::new(),
        pool: None,
        declared_zone: None,
        service: None,
    };
    let same = parse(BASE);
    assert_eq!(
        Comparison::new(&old, &same).target_impact("db", &facts),
        None
    );
    let new = edited(
        "services = [\"ssh\", \"https\"]\n\n[[cell]]\nfrom = \"BROKER\"",
        "services = [\"https\"]\n\n[[cell]]\nfrom = \"BROKER\"",
    );
    let impact = Comparison::new(&old, &new)
        .target_impact("db", &facts)
        .unwrap();
    assert_eq!(impact.service.as_deref(), Some("ssh"), "by its port");
    assert_eq!(impact.new_zone.as_deref(), Some("DMZ"));
    let lines: Vec<String> = impact.changes.iter().map(Change::line).collect();
    assert_eq!(
        lines,
        vec![
            "role ops: ADMIN -> DMZ ssh: allow -> deny",
            "role dmz-oncall: ADMIN -> DMZ ssh: allow -> deny",
        ]
    );
    // Its address leaves DMZ: in no zone, every allow it had is gone.
    let moved = edited("cidrs = [\"10.30.0.0/16\"]", "cidrs = [\"10.31.0.0/16\"]");
    let impact = Comparison::new(&old, &moved)
        .target_impact("db", &facts)
        .unwrap();
    assert_eq!(
        (impact.old_zone.as_deref(), impact.new_zone),
        (Some("DMZ"), None)
    );
    assert_eq!(
        impact.changes.len(),
        4,
        "ops and dmz-oncall, from BROKER and ADMIN"
    );
    assert!(impact.changes.iter().all(|c| c.kind == ChangeKind::Denied));
}
