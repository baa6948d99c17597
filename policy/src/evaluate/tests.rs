use std::net::IpAddr;

use super::grant::most_generous;
use super::*;
use crate::request::TargetFacts;
use crate::ssh::{SshAccess, SshMode, SshRights};

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

/// Zones T and G (G requires the SSH gateway); the client and the broker in B. Role `plain`
/// sets nothing about SSH; `fwd` allows forwards and says certificate; `agent` requires the
/// gateway; `per-grant` requires it only for `ssh-alt`.
const SSH_MODES: &str = r#"
[settings]
broker_zone = "B"

[[zone]]
name = "B"
cidrs = ["10.0.5.0/24"]

[[zone]]
name = "T"
cidrs = ["10.1.0.0/16"]

[[zone]]
name = "G"
cidrs = ["10.2.0.0/16"]
ssh_mode = "gateway"

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "ssh-alt"
ports = [2222]

[[cell]]
from = "B"
to = "T"
access = "allow"
services = ["ssh", "ssh-alt"]

[[cell]]
from = "B"
to = "G"
access = "allow"
services = ["ssh"]

[[role]]
name = "plain"
groups = ["plain"]
[[role.grant]]
zones = ["T", "G"]
services = ["ssh"]

[[role]]
name = "fwd"
groups = ["fwd"]
ssh = { forward_local = true, shell = false }
ssh_mode = "certificate"
[[role.grant]]
zones = ["T", "G"]
services = ["ssh"]

[[role]]
name = "agent"
groups = ["agent"]
ssh = { agent = true, shell = false, exec = false, sftp = false }
ssh_mode = "gateway"
[[role.grant]]
zones = ["T"]
services = ["ssh"]

[[role]]
name = "per-grant"
groups = ["per-grant"]
[[role.grant]]
zones = ["T"]
services = ["ssh-alt"]
ssh_mode = "gateway"
[[role.grant]]
zones = ["T"]
services = ["ssh"]
"#;

fn ssh_request(groups: &[&str], target: &str, port: u16) -> Request {
    let mut req = request(groups, port);
    req.source = ip("10.0.5.9");
    req.target.ip = ip(target);
    req
}

fn ssh_access(policy: &Policy, groups: &[&str], target: &str, port: u16) -> SshAccess {
    let d = evaluate(policy, &ssh_request(groups, target, port), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    d.constraints.ssh
}

#[test]
fn without_any_ssh_mode_a_session_uses_certificates_with_the_default_rights() {
    let policy = Policy::parse(SSH_MODES).unwrap();
    let access = ssh_access(&policy, &["plain"], "10.1.0.7", 22);
    assert_eq!(access.mode, SshMode::Certificate);
    assert_eq!(access.rights, SshRights::default());
}

#[test]
fn the_strictest_mode_of_zone_role_and_grant_wins() {
    let policy = Policy::parse(SSH_MODES).unwrap();
    // The zone requires the gateway, though the role says certificate.
    let access = ssh_access(&policy, &["fwd"], "10.2.0.7", 22);
    assert_eq!(access.mode, SshMode::Gateway);
    assert_eq!(
        ssh_access(&policy, &["fwd"], "10.1.0.7", 22).mode,
        SshMode::Certificate
    );
    // A role that requires it.
    assert_eq!(
        ssh_access(&policy, &["agent"], "10.1.0.7", 22).mode,
        SshMode::Gateway
    );
    // A grant that requires it, for its own services only.
    assert_eq!(
        ssh_access(&policy, &["per-grant"], "10.1.0.7", 2222).mode,
        SshMode::Gateway
    );
    assert_eq!(
        ssh_access(&policy, &["per-grant"], "10.1.0.7", 22).mode,
        SshMode::Certificate
    );
    // Any granting role that requires it decides for all of them.
    assert_eq!(
        ssh_access(&policy, &["plain", "agent"], "10.1.0.7", 22).mode,
        SshMode::Gateway
    );
}

#[test]
fn the_rights_are_the_union_of_the_granting_roles() {
    let policy = Policy::parse(SSH_MODES).unwrap();
    let access = ssh_access(&policy, &["fwd", "agent"], "10.1.0.7", 22);
    assert_eq!(
        access.rights,
        SshRights {
            shell: false,
            exec: true,
            sftp: true,
            forward_local: true,
            forward_remote: false,
            agent: true,
            x11: false,
        }
    );
    assert_eq!(access.mode, SshMode::Gateway);
    // A role without `ssh` counts with the defaults.
    let access = ssh_access(&policy, &["plain", "agent"], "10.1.0.7", 22);
    assert_eq!(
        access.rights,
        SshRights {
            agent: true,
            ..SshRights::default()
        }
    );
    // Only granting roles count: `agent` grants nothing in G.
    let access = ssh_access(&policy, &["fwd", "agent"], "10.2.0.7", 22);
    assert!(
        !access.rights.agent && access.rights.forward_local,
        "{access:?}"
    );
}

#[test]
fn explain_shows_the_ssh_mode_and_the_channels_when_allowed() {
    let policy = Policy::parse(SSH_MODES).unwrap();
    let d = evaluate(&policy, &ssh_request(&["fwd", "agent"], "10.1.0.7", 22), 0);
    let text = crate::explain::render(&d);
    assert!(
        text.contains("  ssh: gateway mode, channels: exec, sftp, forward_local, agent\n"),
        "{text}"
    );
    let d = evaluate(&policy, &ssh_request(&["plain"], "10.1.0.7", 22), 0);
    let text = crate::explain::render(&d);
    assert!(
        text.contains("ssh: certificate mode (OpenSSH end to end); in gateway mode, channels: shell, exec, sftp\n"),
        "{text}"
    );
    let d = evaluate(&policy, &ssh_request(&["nobody"], "10.1.0.7", 22), 0);
    assert!(!crate::explain::render(&d).contains("ssh:"));
}

mod service_accounts {
    use super::*;
    use crate::request::SERVICE_ACCOUNT_AMR;

    const SEED: &str = include_str!("../../../config/policy.toml");
    const NOW: u64 = 1_800_000_000;
    /// The seed's `admin` role requires MFA and the ON-PREM-ADMIN source zone.
    const ADMIN_MFA: &str = r#"mfa = { amr = ["mfa", "otp", "hwk"], max_auth_age_secs = 43200 }"#;

    fn seed(admit_service_accounts: bool) -> Policy {
        assert!(SEED.contains(ADMIN_MFA));
        let text = if admit_service_accounts {
            SEED.replace(
                ADMIN_MFA,
                r#"mfa = { amr = ["mfa", "otp", "hwk"], max_auth_age_secs = 43200, service_accounts = true }"#,
            )
        } else {
            SEED.to_owned()
        };
        Policy::parse(&text).unwrap()
    }

    /// A Proxmox API session to PROXMOX-MGMT from `source` by a member of `admins` with `amr`,
    /// authenticated a minute ago.
    fn admin_request(source: &str, amr: &[&str]) -> Request {
        Request {
            source: ip(source),
            target: TargetFacts {
                ip: ip("10.20.0.11"),
                port: 8006,
                vmid: None,
                tags: vec![],
                pool: None,
                declared_zone: None,
                service: None,
            },
            identity: Identity {
                subject: "terraform-ci".into(),
                preferred_username: Some("terraform-ci".into()),
                groups: vec!["admins".into()],
                amr: amr.iter().map(|a| a.to_string()).collect(),
                auth_time: Some(NOW - 60),
                ..Identity::default()
            },
            via_broker: true,
        }
    }

    const ON_PREM_ADMIN: &str = "10.10.1.10";

    #[test]
    fn an_mfa_role_refuses_a_service_account_by_default() {
        let policy = seed(false);
        let person = evaluate(&policy, &admin_request(ON_PREM_ADMIN, &["otp"]), NOW);
        assert_eq!(person.outcome, Outcome::Allow, "{}", person.reason);
        let d = evaluate(
            &policy,
            &admin_request(ON_PREM_ADMIN, &[SERVICE_ACCOUNT_AMR]),
            NOW,
        );
        assert_eq!(d.outcome, Outcome::Deny);
        assert!(d.reason.contains("service_accounts = true"), "{}", d.reason);
        // Whatever else a service account's amr says, it is not a second factor.
        let d = evaluate(
            &policy,
            &admin_request(ON_PREM_ADMIN, &[SERVICE_ACCOUNT_AMR, "otp", "mfa"]),
            NOW,
        );
        assert_eq!(d.outcome, Outcome::Deny, "{}", d.reason);
    }

    #[test]
    fn a_role_that_admits_service_accounts_lets_them_through() {
        let policy = seed(true);
        let d = evaluate(
            &policy,
            &admin_request(ON_PREM_ADMIN, &[SERVICE_ACCOUNT_AMR]),
            NOW,
        );
        assert_eq!(d.outcome, Outcome::Allow, "{}", d.reason);
        assert_eq!(d.roles, vec!["admin"]);
        // People still need their second factor.
        let d = evaluate(&policy, &admin_request(ON_PREM_ADMIN, &["pwd"]), NOW);
        assert_eq!(d.outcome, Outcome::Deny);
        assert!(d.reason.contains("requires MFA"), "{}", d.reason);
        // The age limit still applies to the service account's authentication.
        let d = evaluate(
            &policy,
            &admin_request(ON_PREM_ADMIN, &[SERVICE_ACCOUNT_AMR]),
            NOW + 86_400,
        );
        assert_eq!(d.outcome, Outcome::Deny);
        assert!(d.reason.contains("sign in again"), "{}", d.reason);
    }

    #[test]
    fn source_zones_restrict_service_accounts_too() {
        let policy = seed(true);
        // BROKER reaches PROXMOX-MGMT in the matrix, but `admin` admits only ON-PREM-ADMIN.
        let d = evaluate(
            &policy,
            &admin_request("10.10.5.10", &[SERVICE_ACCOUNT_AMR]),
            NOW,
        );
        assert_eq!(d.outcome, Outcome::Deny);
        let rule = d.role_rule.unwrap_or_default();
        assert!(rule.contains("only from its source zones"), "{rule}");
    }

    #[test]
    fn a_decision_denied_only_for_mfa_says_what_a_step_up_must_show() {
        let policy = seed(false);
        // A password login: the admin role's only unmet constraint is MFA.
        let d = evaluate(&policy, &admin_request(ON_PREM_ADMIN, &["pwd"]), NOW);
        assert_eq!(d.outcome, Outcome::Deny);
        let text = crate::explain::render(&d);
        assert!(
            text.contains("step-up: a fresh login with amr mfa|otp|hwk lets role admin grant it"),
            "{text}"
        );
        let step_up = d.step_up.expect("a step-up for an MFA-only denial");
        assert_eq!(step_up.role, "admin");
        assert_eq!(step_up.amr, vec!["mfa", "otp", "hwk"]);
        assert_eq!(step_up.max_auth_age_secs, Some(43200));
        // An MFA login that is too old: a step-up too.
        let d = evaluate(
            &policy,
            &admin_request(ON_PREM_ADMIN, &["otp"]),
            NOW + 86_400,
        );
        assert!(d.step_up.is_some(), "{}", d.reason);
        // From outside the role's source zones no login helps: no step-up.
        let d = evaluate(&policy, &admin_request("10.10.5.10", &["pwd"]), NOW);
        assert_eq!(d.outcome, Outcome::Deny);
        assert_eq!(d.step_up, None, "{}", d.reason);
        // A service account cannot log in again: no step-up.
        let d = evaluate(
            &policy,
            &admin_request(ON_PREM_ADMIN, &[SERVICE_ACCOUNT_AMR]),
            NOW,
        );
        assert_eq!(d.step_up, None);
        // Allowed: nothing to step up.
        let d = evaluate(&policy, &admin_request(ON_PREM_ADMIN, &["otp"]), NOW);
        assert_eq!(d.outcome, Outcome::Allow);
        assert_eq!(d.step_up, None);
    }

    #[test]
    fn svc_is_not_an_mfa_method() {
        let text = SEED.replace(ADMIN_MFA, r#"mfa = { amr = ["svc"] }"#);
        let err = Policy::parse(&text).unwrap_err().to_string();
        assert!(err.contains("service_accounts = true"), "{err}");
    }
}
