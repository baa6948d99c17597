use std::net::IpAddr;

use super::*;
use crate::request::{Outcome, TargetFacts};
use crate::{check, evaluate, permissions, Permission};

const NOW: u64 = 1_700_000_000;

/// ADMIN reaches WEB's ssh through the broker only; OPS reaches WEB's ssh and https and
/// SECRET's ssh; ADMIN -> SECRET is X.
const POLICY: &str = r#"
[settings]
broker_zone = "BROKER"

[[zone]]
name = "BROKER"
cidrs = ["10.0.5.0/24"]

[[zone]]
name = "ADMIN"
cidrs = ["10.0.1.0/24"]

[[zone]]
name = "OPS"
cidrs = ["10.0.2.0/24"]

[[zone]]
name = "WEB"
cidrs = ["10.2.0.0/16"]

[[zone]]
name = "SECRET"
cidrs = ["10.9.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "https"
ports = [443]

[[cell]]
from = "ADMIN"
to = "WEB"
access = "broker-only"
services = ["ssh"]

[[cell]]
from = "OPS"
to = "WEB"
access = "broker-only"
services = ["ssh", "https"]

[[cell]]
from = "OPS"
to = "SECRET"
access = "broker-only"
services = ["ssh"]

[[cell]]
from = "ADMIN"
to = "SECRET"
access = "deny"

[[cell]]
from = "BROKER"
to = "WEB"
access = "allow"
services = ["ssh", "https"]

[[cell]]
from = "BROKER"
to = "SECRET"
access = "allow"
services = ["ssh"]

[[role]]
name = "viewer"
groups = ["developers"]
permissions = ["audit:read"]
[[role.grant]]
zones = ["WEB"]
services = ["https"]

[[role]]
name = "plain"
groups = ["plain-group"]
[[role.grant]]
zones = ["WEB"]
services = ["ssh"]

[[role]]
name = "web-ssh"
groups = ["developers", "ci-bots"]
[[role.grant]]
zones = ["WEB"]
services = ["ssh"]
logins = ["deploy"]
[role.requestable]
approvers = ["sre-leads"]
approvals = 2
max_duration = "4h"
preapproved = ["ci-bots"]
[role.requestable.break_glass]
max_duration = "1h"

[[role]]
name = "web-all"
groups = ["developers"]
[[role.grant]]
zones = ["WEB"]
services = ["ssh", "https"]
[role.requestable]
approvers = ["sre-leads"]
max_duration = "2h"
reason_required = true

[[role]]
name = "secret-oncall"
groups = ["developers"]
[[role.grant]]
zones = ["SECRET"]
services = ["ssh"]
[role.requestable]
approvers = ["sre-leads"]
max_duration = "1h"
"#;

fn policy() -> Policy {
    Policy::parse(POLICY).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn person(groups: &[&str]) -> Identity {
    Identity {
        subject: "u-1".into(),
        preferred_username: Some("alice".into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        amr: vec!["pwd".into(), "mfa".into()],
        auth_time: Some(NOW - 60),
        ..Identity::default()
    }
}

fn target(addr: &str, port: u16) -> (String, TargetFacts) {
    (
        format!("t-{addr}"),
        TargetFacts {
            ip: ip(addr),
            port,
            vmid: None,
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: None,
        },
    )
}

fn ask<'a>(role: &'a str, who: &'a Identity, scope: Scope<'a>) -> RequestAsk<'a> {
    RequestAsk {
        role,
        requester: who,
        source: ip("10.0.1.7"),
        scope,
        duration_secs: 3600,
        reason: None,
        break_glass: false,
    }
}

#[test]
fn terms_are_compiled_and_listed() {
    let p = policy();
    let t = p.requestable("web-ssh").unwrap();
    assert_eq!(t.approvers, vec!["sre-leads".to_owned()]);
    assert_eq!((t.approvals, t.max_duration_secs), (2, 4 * 3600));
    assert_eq!(t.preapproved, vec!["ci-bots".to_owned()]);
    assert_eq!(
        t.break_glass,
        Some(BreakGlass {
            max_duration_secs: 3600
        })
    );
    assert!(!t.reason_required);
    assert_eq!(p.requestable("web-all").unwrap().approvals, 1);
    assert!(p.requestable("viewer").is_none() && p.requestable("nope").is_none());
    let names: Vec<&str> = p.requestable_roles().map(|(n, _)| n).collect();
    assert_eq!(names, ["web-ssh", "web-all", "secret-oncall"]);
}

#[test]
fn a_target_request_is_admitted_with_its_cells() {
    let p = policy();
    let who = person(&["developers"]);
    let targets = [target("10.2.0.10", 22)];
    let a = admit_request(&p, &ask("web-ssh", &who, Scope::Targets(&targets)), NOW).unwrap();
    assert_eq!(a.approvals_needed, 2);
    assert!(!a.break_glass && !a.preapproved);
    assert_eq!(a.cells.len(), 1);
    assert!(
        a.cells[0].starts_with("t-10.2.0.10: ADMIN -> WEB: broker-only [ssh]"),
        "{:?}",
        a.cells
    );
    assert!(
        a.cells[0].contains("role web-ssh: grants ssh in WEB"),
        "{:?}",
        a.cells
    );
}

#[test]
fn a_request_for_an_x_cell_is_refused_naming_the_target() {
    let p = policy();
    let who = person(&["developers"]);
    let targets = [target("10.9.0.3", 22)];
    let err = admit_request(
        &p,
        &ask("secret-oncall", &who, Scope::Targets(&targets)),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t-10.9.0.3: the matrix blocks ADMIN -> SECRET (X): a request never opens a cell marked X"
    );
    // From OPS the same request is fine: the role, not the matrix, was asked for.
    let mut from_ops = ask("secret-oncall", &who, Scope::Targets(&targets));
    from_ops.source = ip("10.0.2.9");
    assert!(admit_request(&p, &from_ops, NOW).is_ok());
}

#[test]
fn every_target_must_be_allowed_by_the_role_alone() {
    let p = policy();
    // `viewer` (standing) grants https in WEB, but the request is for web-ssh, which does not.
    let who = person(&["developers"]);
    let targets = [target("10.2.0.10", 22), target("10.2.0.11", 443)];
    let mut from_ops = ask("web-ssh", &who, Scope::Targets(&targets));
    from_ops.source = ip("10.0.2.9");
    let err = admit_request(&p, &from_ops, NOW).unwrap_err();
    match &err {
        RequestRefusal::Denied { target, reason } => {
            assert_eq!(target, "t-10.2.0.11");
            assert!(reason.contains("web-ssh"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_zone_request_needs_every_service_the_role_grants_there() {
    let p = policy();
    let who = person(&["developers"]);
    let mut zone = ask("web-all", &who, Scope::Zone("WEB"));
    zone.reason = Some("deploy hotfix");
    // ADMIN -> WEB admits ssh only; web-all grants https too.
    let err = admit_request(&p, &zone, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zone WEB, service https: ADMIN -> WEB allows only ssh, not `https`"
    );
    // From OPS both are admitted, one cell line per service.
    zone.source = ip("10.0.2.9");
    let a = admit_request(&p, &zone, NOW).unwrap();
    assert_eq!(a.cells.len(), 2, "{:?}", a.cells);
    assert!(a.cells[0].starts_with("zone WEB, service ssh: OPS -> WEB"));
    assert!(a.cells[1].starts_with("zone WEB, service https: OPS -> WEB"));
    // A zone the role grants nothing in, an unknown zone, a source in no zone.
    let mut other = ask("web-ssh", &who, Scope::Zone("SECRET"));
    assert!(matches!(
        admit_request(&p, &other, NOW),
        Err(RequestRefusal::NothingInZone { .. })
    ));
    other.scope = Scope::Zone("MARS");
    let err = admit_request(&p, &other, NOW).unwrap_err();
    assert!(
        err.to_string().contains("zones are: BROKER, ADMIN"),
        "{err}"
    );
    other.scope = Scope::Zone("WEB");
    other.source = ip("192.0.2.1");
    assert!(matches!(
        admit_request(&p, &other, NOW),
        Err(RequestRefusal::SourceInNoZone { .. })
    ));
}

#[test]
fn preapproved_requesters_need_no_approval() {
    let p = policy();
    let bot = person(&["ci-bots"]);
    let targets = [target("10.2.0.10", 22)];
    let a = admit_request(&p, &ask("web-ssh", &bot, Scope::Targets(&targets)), NOW).unwrap();
    assert_eq!(a.approvals_needed, 0);
    assert!(a.preapproved && !a.break_glass);
}

#[test]
fn break_glass_is_self_approved_with_a_reason_and_its_own_limit() {
    let p = policy();
    let who = person(&["developers"]);
    let targets = [target("10.2.0.10", 22)];
    let mut bg = ask("web-ssh", &who, Scope::Targets(&targets));
    bg.break_glass = true;
    let err = admit_request(&p, &bg, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "break-glass access needs a reason: give one with --reason"
    );
    bg.reason = Some("INC-4411: site down");
    let a = admit_request(&p, &bg, NOW).unwrap();
    assert_eq!(a.approvals_needed, 0);
    assert!(a.break_glass && !a.preapproved);
    // Its maximum is its own (1h), not the role's (4h).
    bg.duration_secs = 3601;
    let err = admit_request(&p, &bg, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "1h1s is longer than the 1h break-glass access to role `web-ssh` allows; ask for 1h or less"
    );
    bg.duration_secs = 3600;
    // A role without break-glass refuses it.
    bg.role = "web-all";
    assert!(matches!(
        admit_request(&p, &bg, NOW),
        Err(RequestRefusal::NoBreakGlass { .. })
    ));
}

#[test]
fn refusals_before_the_matrix() {
    let p = policy();
    let who = person(&["developers"]);
    let targets = [target("10.2.0.10", 22)];
    let base = ask("web-ssh", &who, Scope::Targets(&targets));
    let refused = |a: RequestAsk<'_>| admit_request(&p, &a, NOW).unwrap_err();
    assert!(matches!(
        refused(RequestAsk {
            role: "nope",
            ..base
        }),
        RequestRefusal::UnknownRole { .. }
    ));
    assert!(matches!(
        refused(RequestAsk {
            role: "viewer",
            ..base
        }),
        RequestRefusal::NotRequestable { .. }
    ));
    let stranger = person(&["sre-leads"]);
    let err = refused(RequestAsk {
        requester: &stranger,
        ..base
    });
    assert_eq!(
        err.to_string(),
        "you may not request role `web-ssh`: it is requestable by members of developers, ci-bots, and none of your groups is one of them"
    );
    let err = refused(RequestAsk {
        role: "web-all",
        ..base
    });
    assert!(
        matches!(err, RequestRefusal::ReasonMissing { .. }),
        "{err:?}"
    );
    for bad in ["", "   ", "two\nlines", "tab\there"] {
        let err = refused(RequestAsk {
            reason: Some(bad),
            ..base
        });
        assert!(
            matches!(err, RequestRefusal::ReasonInvalid { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let long = "x".repeat(MAX_REASON_CHARS + 1);
    assert!(matches!(
        refused(RequestAsk {
            reason: Some(&long),
            ..base
        }),
        RequestRefusal::ReasonInvalid { .. }
    ));
    let longest = "é".repeat(MAX_REASON_CHARS);
    assert!(admit_request(
        &p,
        &RequestAsk {
            reason: Some(&longest),
            ..base
        },
        NOW
    )
    .is_ok());
    assert_eq!(
        refused(RequestAsk {
            duration_secs: 0,
            ..base
        }),
        RequestRefusal::ZeroDuration
    );
    assert!(matches!(
        refused(RequestAsk {
            duration_secs: 4 * 3600 + 1,
            ..base
        }),
        RequestRefusal::TooLong { .. }
    ));
    assert!(admit_request(
        &p,
        &RequestAsk {
            duration_secs: 4 * 3600,
            ..base
        },
        NOW
    )
    .is_ok());
    assert_eq!(
        refused(RequestAsk {
            scope: Scope::Targets(&[]),
            ..base
        }),
        RequestRefusal::EmptyScope
    );
    assert_eq!(
        refused(RequestAsk {
            scope: Scope::Zone(""),
            ..base
        }),
        RequestRefusal::EmptyScope
    );
}

fn approver() -> Identity {
    person(&["sre-leads"])
}

fn approve_ask<'a>(who: &'a Identity, prior: &'a [String]) -> ApproveAsk<'a> {
    ApproveAsk {
        role: "web-ssh",
        approver: who,
        approver_id: "u_bob",
        requester_id: "u_alice",
        prior_approver_ids: prior,
        max_auth_age_secs: 600,
    }
}

#[test]
fn an_approver_with_a_fresh_mfa_login_may_approve() {
    let p = policy();
    let who = approver();
    assert_eq!(may_approve(&p, &approve_ask(&who, &[]), NOW), Ok(()));
    let prior = vec!["u_carol".to_owned()];
    assert_eq!(may_approve(&p, &approve_ask(&who, &prior), NOW), Ok(()));
}

#[test]
fn approval_refusals() {
    let p = policy();
    let who = approver();
    let base = approve_ask(&who, &[]);
    let refused = |a: ApproveAsk<'_>| may_approve(&p, &a, NOW).unwrap_err();
    assert!(matches!(
        refused(ApproveAsk {
            role: "nope",
            ..base
        }),
        ApprovalRefusal::UnknownRole { .. }
    ));
    assert!(matches!(
        refused(ApproveAsk {
            role: "viewer",
            ..base
        }),
        ApprovalRefusal::NotRequestable { .. }
    ));
    // The requester, even one in an approvers group.
    assert!(matches!(
        refused(ApproveAsk {
            approver_id: "u_alice",
            ..base
        }),
        ApprovalRefusal::Requester { .. }
    ));
    // Twice.
    let prior = vec!["u_bob".to_owned()];
    assert!(matches!(
        refused(ApproveAsk {
            prior_approver_ids: &prior,
            ..base
        }),
        ApprovalRefusal::AlreadyApproved { .. }
    ));
    // A service account, even in the approvers group with mfa.
    let mut svc = approver();
    svc.amr.push(crate::SERVICE_ACCOUNT_AMR.into());
    assert!(matches!(
        refused(ApproveAsk {
            approver: &svc,
            ..base
        }),
        ApprovalRefusal::ServiceAccount { .. }
    ));
    // Not an approver: the requester's groups do not count.
    let dev = person(&["developers"]);
    let err = refused(ApproveAsk {
        approver: &dev,
        ..base
    });
    assert!(matches!(err, ApprovalRefusal::NotApprover { .. }));
    assert!(err.to_string().contains("members of sre-leads"), "{err}");
    // No MFA.
    let mut pwd = approver();
    pwd.amr = vec!["pwd".into(), "otp".into()];
    let err = refused(ApproveAsk {
        approver: &pwd,
        ..base
    });
    assert_eq!(err, ApprovalRefusal::NoMfa);
    assert!(err.to_string().contains("`portcullis login`"));
    // Stale, missing or future auth_time.
    let mut stale = approver();
    stale.auth_time = Some(NOW - 601);
    let err = refused(ApproveAsk {
        approver: &stale,
        ..base
    });
    assert!(matches!(err, ApprovalRefusal::StaleLogin { .. }));
    assert!(
        err.to_string().contains("log in again: `portcullis login`"),
        "{err}"
    );
    stale.auth_time = Some(NOW - 600);
    assert_eq!(
        may_approve(
            &p,
            &ApproveAsk {
                approver: &stale,
                ..base
            },
            NOW
        ),
        Ok(())
    );
    stale.auth_time = None;
    assert!(matches!(
        refused(ApproveAsk {
            approver: &stale,
            ..base
        }),
        ApprovalRefusal::StaleLogin { .. }
    ));
    stale.auth_time = Some(NOW + 3600);
    assert!(matches!(
        refused(ApproveAsk {
            approver: &stale,
            ..base
        }),
        ApprovalRefusal::StaleLogin { .. }
    ));
}

fn session(groups: &[&str], granted: &[&str], to: &str) -> crate::Request {
    let mut identity = person(groups);
    identity.granted_roles = granted.iter().map(|g| g.to_string()).collect();
    crate::Request {
        source: ip("10.0.1.7"),
        target: target(to, 22).1,
        identity,
        via_broker: true,
    }
}

#[test]
fn a_granted_requestable_role_opens_a_broker_only_cell() {
    let p = policy();
    // Standing: developers are members of viewer only (https), never of web-ssh.
    let d = evaluate(&p, &session(&["developers"], &[], "10.2.0.10"), NOW);
    assert_eq!(d.outcome, Outcome::Deny, "{}", d.reason);
    assert_eq!(
        d.reason,
        "your roles (viewer) grant nothing for `ssh` in WEB; roles web-ssh, web-all grant it on request: `portcullis request create --role ROLE`"
    );
    let d = evaluate(&p, &session(&["ci-bots"], &[], "10.2.0.10"), NOW);
    assert_eq!(
        d.reason,
        "none of your groups (ci-bots) is a member of any role; role `web-ssh` grants it on request: `portcullis request create --role web-ssh`"
    );
    let d = evaluate(&p, &session(&["sre-leads"], &[], "10.2.0.10"), NOW);
    assert!(!d.reason.contains("on request"), "{}", d.reason);
    let d = evaluate(
        &p,
        &session(&["developers"], &["web-ssh"], "10.2.0.10"),
        NOW,
    );
    assert_eq!(d.outcome, Outcome::Allow, "{}", d.reason);
    assert_eq!(d.roles, vec!["web-ssh".to_owned()]);
    assert_eq!(d.constraints.logins, vec!["deploy".to_owned()]);
    // The grant alone is enough, without the requester groups.
    let d = evaluate(&p, &session(&[], &["web-ssh"], "10.2.0.10"), NOW);
    assert_eq!(d.outcome, Outcome::Allow, "{}", d.reason);
}

#[test]
fn a_granted_role_never_opens_an_x_cell() {
    let p = policy();
    let d = evaluate(
        &p,
        &session(&["developers"], &["secret-oncall"], "10.9.0.3"),
        NOW,
    );
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reason, "the matrix blocks ADMIN -> SECRET (X)");
    assert!(d.roles.is_empty());
}

#[test]
fn a_granted_non_requestable_role_is_ignored() {
    let p = policy();
    let d = evaluate(&p, &session(&[], &["plain"], "10.2.0.10"), NOW);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(d.reason.contains("no group"), "{}", d.reason);
    let d = evaluate(&p, &session(&["plain-group"], &[], "10.2.0.10"), NOW);
    assert_eq!(d.outcome, Outcome::Allow, "standing membership still works");
    let d = evaluate(&p, &session(&[], &["no-such-role"], "10.2.0.10"), NOW);
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn permissions_never_come_from_requestable_roles() {
    let p = policy();
    let mut id = person(&["developers", "ci-bots"]);
    id.granted_roles = vec!["web-ssh".into(), "web-all".into()];
    let perms: Vec<Permission> = permissions(&p, &id).into_iter().collect();
    assert_eq!(perms, vec![Permission::AuditRead]);
}

fn errors_of(extra: &str) -> Vec<(Option<usize>, String)> {
    let text = format!("{POLICY}{extra}");
    check(&text)
        .errors
        .into_iter()
        .map(|d| (d.line, d.message))
        .collect()
}

/// The line of the `n`-th (1-based) occurrence of `needle` in `extra`, in the whole file.
fn line_in(extra: &str, needle: &str) -> Option<usize> {
    let base = POLICY.lines().count();
    extra
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| base + i + 1)
}

#[test]
fn requestable_rules_are_compile_errors_with_lines() {
    let extra = r#"
[[role]]
name = "bad"
groups = ["developers"]
permissions = ["audit:read"]
[role.requestable]
approvals = 0
max_duration = "forever"
[role.requestable.break_glass]
max_duration = "5h"
"#;
    let errs = errors_of(extra);
    let has = |needle: &str, at: &str| {
        assert!(
            errs.iter()
                .any(|(l, m)| m.contains(needle) && *l == line_in(extra, at)),
            "{needle} at {at}: {errs:?}"
        )
    };
    has("needs at least one [[role.grant]]", "[role.requestable]");
    has("cannot hold permissions", "permissions =");
    has("needs `approvers`", "[role.requestable]");
    has("approvals must be at least 1", "approvals = 0");
    has("`forever` is not a duration", "\"forever\"");
    has("break_glass.max_duration may be at most 4h", "\"5h\"");
}

#[test]
fn break_glass_may_not_exceed_the_role_and_preapproved_stands_in_for_approvers() {
    let extra = r#"
[[role]]
name = "bots"
groups = ["ci-bots"]
[[role.grant]]
zones = ["WEB"]
services = ["ssh"]
[role.requestable]
preapproved = ["ci-bots"]
max_duration = "30m"
[role.requestable.break_glass]
max_duration = "1h"
"#;
    let errs = errors_of(extra);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, line_in(extra, "\"1h\""));
    assert_eq!(
        errs[0].1,
        "break_glass.max_duration (1h) may not exceed the role's max_duration (30m)"
    );
    let ok = extra.replace("\"1h\"", "\"30m\"");
    assert_eq!(errors_of(&ok), vec![]);
    let zero = ok.replace(
        "max_duration = \"30m\"\n[role",
        "max_duration = \"0s\"\n[role",
    );
    assert!(errors_of(&zero)
        .iter()
        .any(|(_, m)| m == "max_duration must be longer than 0"));
}

#[test]
fn the_seed_example_compiles_when_uncommented_and_dev_has_echo_oncall() {
    let seed = include_str!("../../../config/policy.toml");
    let start = seed
        .find("# [[role]]\n# name = \"workload-oncall\"")
        .unwrap();
    let end = start + seed[start..].find("\n\n").unwrap();
    let uncommented: String = seed[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").or(l.strip_prefix('#')).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{seed}\n{uncommented}\n");
    let report = check(&text);
    assert!(
        report.errors.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
    let p = Policy::parse(&text).unwrap();
    let terms = p.requestable("workload-oncall").unwrap();
    assert_eq!(terms.break_glass.map(|b| b.max_duration_secs), Some(3600));

    let dev = Policy::parse(include_str!("../../../config/policy-dev.toml")).unwrap();
    let terms = dev.requestable("echo-oncall").unwrap();
    assert_eq!(terms.approvers, vec!["admins".to_owned()]);
    // Admins request it from loopback; the echo target (any port on 127.0.0.1) is admitted.
    let admin = person(&["admins"]);
    let targets = [target("127.0.0.1", 7)];
    let a = RequestAsk {
        source: ip("127.0.0.1"),
        reason: Some("testing"),
        ..ask("echo-oncall", &admin, Scope::Targets(&targets))
    };
    assert_eq!(admit_request(&dev, &a, NOW).unwrap().approvals_needed, 1);
    // Standing, dev-admin is unchanged and echo-oncall is no member of anyone.
    let d = evaluate(
        &dev,
        &crate::Request {
            source: ip("127.0.0.1"),
            target: target("127.0.0.1", 7).1,
            identity: admin.clone(),
            via_broker: true,
        },
        NOW,
    );
    assert_eq!(d.roles, vec!["dev-admin".to_owned()]);
}
