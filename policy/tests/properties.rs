//! Properties of evaluation: total and deterministic; roles never widen the matrix; adding
//! a deny never allows more; marking an identity as a service account never allows more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use portcullis_policy::{
    evaluate, Identity, Outcome, Policy, Request, TargetFacts, SERVICE_ACCOUNT_AMR,
};
use proptest::prelude::*;

const SEED: &str = include_str!("../../config/policy.toml");

fn seed() -> &'static Policy {
    static SEED_POLICY: OnceLock<Policy> = OnceLock::new();
    SEED_POLICY.get_or_init(|| Policy::parse(SEED).unwrap())
}

const GROUPS: &[&str] = &[
    "admins",
    "/org/admins",
    "infrastructure",
    "projects",
    "games",
    "security",
    "x",
];
const SERVICES: &[&str] = &[
    "proxmox-api",
    "ssh",
    "rdp",
    "winrm",
    "iam-token",
    "dns",
    "dashboards",
    "app-traffic",
    "nope",
];

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // Mostly inside the seed's zones (10.10-10.60), sometimes anywhere.
        (
            prop::sample::select(vec![10u8, 20, 30, 40, 50, 60, 5, 6]),
            0u8..3,
            any::<u8>()
        )
            .prop_map(|(b, c, d)| IpAddr::V4(Ipv4Addr::new(10, b, c, d))),
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(v.into())),
    ]
}

prop_compose! {
    fn request()(
        source in addr(),
        ip in addr(),
        port in prop_oneof![Just(22u16), Just(443), Just(8006), Just(3389), any::<u16>()],
        vmid in prop::option::of(prop_oneof![900u32..6100, any::<u32>()]),
        service in prop::option::of(prop::sample::select(SERVICES)),
        declared in prop::option::of(prop::sample::select(vec!["WORKLOADS", "CORE-INFRA", "X"])),
        groups in prop::collection::vec(prop::sample::select(GROUPS), 0..4),
        amr in prop::collection::vec(prop::sample::select(vec!["pwd", "otp", "mfa"]), 0..3),
        auth_time in prop::option::of(any::<u64>()),
        via_broker in any::<bool>(),
        tags in prop::collection::vec(prop::sample::select(vec!["pve-mgmt", "web", ""]), 0..2),
    ) -> Request {
        Request {
            source,
            target: TargetFacts {
                ip,
                port,
                vmid,
                tags: tags.into_iter().map(String::from).collect(),
                pool: None,
                declared_zone: declared.map(String::from),
                service: service.map(String::from),
            },
            identity: Identity {
                subject: "s".into(),
                preferred_username: Some("u".into()),
                email: None,
                groups: groups.into_iter().map(String::from).collect(),
                amr: amr.into_iter().map(String::from).collect(),
                acr: None,
                auth_time,
                granted_roles: Vec::new(),
            },
            via_broker,
        }
    }
}

/// What the seed's matrix opens, one service of one allow or broker-only cell at a time: the
/// two zones' first CIDRs, the service and one of its ports.
#[derive(Debug, Clone)]
struct Opening {
    from: (Ipv4Addr, u32),
    to: (Ipv4Addr, u32),
    service: String,
    port: u16,
    broker_only: bool,
}

/// Read from the seed file itself, so the generator follows the seed as it changes.
fn openings() -> &'static [Opening] {
    static OPENINGS: OnceLock<Vec<Opening>> = OnceLock::new();
    OPENINGS.get_or_init(|| {
        let seed: toml::Table = SEED.parse().unwrap();
        let list = |key: &str| seed[key].as_array().unwrap().clone();
        let name_of = |t: &toml::Value| t["name"].as_str().unwrap().to_owned();
        let cidr = |zone: &str| {
            let z = list("zone")
                .into_iter()
                .find(|z| name_of(z) == zone)
                .unwrap();
            let (net, prefix) = z["cidrs"][0].as_str().unwrap().split_once('/').unwrap();
            (
                net.parse::<Ipv4Addr>().unwrap(),
                prefix.parse::<u32>().unwrap(),
            )
        };
        let port = |service: &str| {
            let s = list("service")
                .into_iter()
                .find(|s| name_of(s) == service)
                .unwrap();
            match &s["ports"] {
                toml::Value::Array(ports) => match &ports[0] {
                    toml::Value::Integer(p) => u16::try_from(*p).unwrap(),
                    range => range
                        .as_str()
                        .unwrap()
                        .split('-')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap(),
                },
                _ => 443, // "any"
            }
        };
        let sets = list("service_set");
        let mut openings = Vec::new();
        for cell in list("cell") {
            let access = cell["access"].as_str().unwrap();
            if access != "allow" && access != "broker-only" {
                continue;
            }
            for named in cell["services"].as_array().unwrap() {
                let named = named.as_str().unwrap();
                let members = match sets.iter().find(|set| name_of(set) == named) {
                    Some(set) => set["services"].as_array().unwrap().clone(),
                    None => vec![toml::Value::from(named)],
                };
                for service in members {
                    let service = service.as_str().unwrap();
                    openings.push(Opening {
                        from: cidr(cell["from"].as_str().unwrap()),
                        to: cidr(cell["to"].as_str().unwrap()),
                        service: service.to_owned(),
                        port: port(service),
                        broker_only: access == "broker-only",
                    });
                }
            }
        }
        openings
    })
}

/// An address in `net`.
fn within((base, prefix): (Ipv4Addr, u32), host: u32) -> IpAddr {
    let hosts = u32::MAX.checked_shr(prefix).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::from(u32::from(base) | (host & hosts)))
}

prop_compose! {
    /// A request for something the seed's matrix opens, from and to its zones; whether it is
    /// allowed is then up to the identity (groups, MFA) and the broker's leg.
    fn plausible_request()(
        opening in prop::sample::select(openings()),
        hosts in (any::<u32>(), any::<u32>()),
        direct in any::<bool>(),
        groups in prop::collection::vec(prop::sample::select(GROUPS), 0..4),
        amr in prop::collection::vec(prop::sample::select(vec!["pwd", "otp", "mfa"]), 0..3),
        auth_time in prop::option::of(any::<u64>()),
    ) -> Request {
        Request {
            source: within(opening.from, hosts.0),
            target: TargetFacts {
                ip: within(opening.to, hosts.1),
                port: opening.port,
                vmid: None,
                tags: Vec::new(),
                pool: None,
                declared_zone: None,
                service: Some(opening.service.clone()),
            },
            identity: Identity {
                subject: "s".into(),
                preferred_username: Some("u".into()),
                email: None,
                groups: groups.into_iter().map(String::from).collect(),
                amr: amr.into_iter().map(String::from).collect(),
                acr: None,
                auth_time,
                granted_roles: Vec::new(),
            },
            via_broker: opening.broker_only || !direct,
        }
    }
}

/// Half anything at all, half what the matrix opens: the conditional properties below need
/// requests that are allowed.
fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![request(), plausible_request()]
}

/// The seed policy with every role granting everything (`*`), and no constraints.
fn all_powerful_roles() -> &'static Policy {
    static GOD: OnceLock<Policy> = OnceLock::new();
    GOD.get_or_init(build_all_powerful)
}

fn build_all_powerful() -> Policy {
    let text = SEED.split("\n[[role]]").next().unwrap().to_owned()
        + r#"
[[role]]
name = "god"
groups = ["admins", "/org/admins", "infrastructure", "projects", "games", "security", "x"]
[[role.grant]]
zones = ["*"]
services = ["*"]
"#;
    Policy::parse(&text).unwrap()
}

/// Cases per property.
const CASES: u32 = 2000;

/// A property that holds only under a condition checks nothing on the cases that miss the
/// condition: each such property counts the cases that reached its assertion and requires at
/// least this share of them (a generator that drifted away from the condition fails here
/// instead of passing on nothing).
const MIN_REACHED: u32 = CASES / 10;

/// Runs `property` on [`CASES`] generated cases; it returns whether the case reached its
/// assertion. Returns how many did.
fn run_counting<S: Strategy>(
    strategy: S,
    property: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) -> u32 {
    let reached = std::sync::atomic::AtomicU32::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(CASES));
    let result = runner.run(&strategy, |value| {
        if property(value)? {
            reached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    reached.into_inner()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn evaluation_is_total_and_deterministic(req in request(), now in any::<u64>()) {
        let policy = seed();
        let a = evaluate(policy, &req, now);
        let b = evaluate(policy, &req, now);
        prop_assert_eq!(&a, &b);
        prop_assert!(!a.reason.is_empty());
        prop_assert_eq!(a.policy_hash.as_str(), policy.hash());
    }
}

#[test]
fn no_role_widens_the_matrix() {
    let reached = run_counting((any_request(), any::<u64>()), |(req, now)| {
        // With roles granting everything, whatever is allowed must still be admitted by
        // the matrix: both cells for a session, an allow cell for a direct flow.
        let god = all_powerful_roles();
        let d = evaluate(god, &req, now);
        let allowed = d.outcome == Outcome::Allow;
        if allowed {
            let src = d.source_zone.clone().unwrap();
            let dst = d.target_zone.clone().unwrap();
            let svc = d.service.clone().unwrap();
            let first = d.cells.first().unwrap();
            let prefix = format!("{src} -> {dst}: ");
            prop_assert!(
                first.starts_with(&prefix),
                "{} does not start with {}",
                first,
                prefix
            );
            let kind_ok = first.contains(": allow [")
                || (req.via_broker && first.contains(": broker-only ["));
            prop_assert!(kind_ok, "{first}");
            prop_assert!(first.contains(&svc));
            if req.via_broker {
                let broker = format!("BROKER -> {dst}: allow [");
                prop_assert!(d.cells.get(1).unwrap().starts_with(&broker));
            }
        }
        // And the real roles never allow what the all-powerful ones deny.
        let real = evaluate(seed(), &req, now);
        if real.outcome == Outcome::Allow {
            prop_assert_eq!(d.outcome, Outcome::Allow);
        }
        Ok(allowed)
    });
    assert!(
        reached >= MIN_REACHED,
        "only {reached} of {CASES} requests were allowed: the property checked too few"
    );
}

/// The seed's matrix with one requestable role granting everything, no constraints: the
/// all-powerful role of [`all_powerful_roles`], held only on request.
fn all_powerful_on_request() -> &'static Policy {
    static ON_REQUEST: OnceLock<Policy> = OnceLock::new();
    ON_REQUEST.get_or_init(|| {
        let text = SEED.split("\n[[role]]").next().unwrap().to_owned()
            + r#"
[[role]]
name = "on-call"
groups = ["admins", "/org/admins", "infrastructure", "projects", "games", "security", "x"]
[[role.grant]]
zones = ["*"]
services = ["*"]
[role.requestable]
approvers = ["security"]
max_duration = "1h"
"#;
        Policy::parse(&text).unwrap()
    })
}

#[test]
fn a_granted_role_never_widens_the_matrix() {
    let reached = run_counting((any_request(), any::<u64>()), |(req, now)| {
        let on_request = all_powerful_on_request();
        // Standing, the requestable role's groups make nobody a member.
        let standing = evaluate(on_request, &req, now);
        if req.via_broker {
            prop_assert_eq!(standing.outcome, Outcome::Deny, "{}", standing.reason);
        }
        // Granted, it decides as the same role held standing, so no more than the matrix
        // admits (`no_role_widens_the_matrix`).
        let mut granted = req.clone();
        granted.identity.groups.clear();
        granted.identity.granted_roles = vec!["on-call".into()];
        let mut held = req.clone();
        held.identity.groups = vec!["x".into()];
        let a = evaluate(on_request, &granted, now);
        let b = evaluate(all_powerful_roles(), &held, now);
        prop_assert_eq!(a.outcome, b.outcome, "{} / {}", a.reason, b.reason);
        prop_assert_eq!(a.cells.len(), b.cells.len());
        prop_assert_eq!(
            a.cells.iter().take(2).collect::<Vec<_>>(),
            b.cells.iter().take(2).collect::<Vec<_>>()
        );
        Ok(a.outcome == Outcome::Allow)
    });
    assert!(
        reached >= MIN_REACHED,
        "only {reached} of {CASES} requests were allowed: the property checked too few"
    );
}

#[test]
fn adding_a_deny_never_allows_more() {
    let strategy = (any_request(), any::<u64>(), 0usize..64);
    let reached = run_counting(strategy, |(req, now, pick)| {
        // Turn one declared cell of the seed into a deny.
        let cells: Vec<usize> = SEED.match_indices("\n[[cell]]").map(|(i, _)| i).collect();
        let at = cells[pick % cells.len()];
        let rest = &SEED[at + 1..];
        let access_line = rest.find("\naccess = ").unwrap() + at + 1;
        let end = SEED[access_line + 1..].find('\n').unwrap() + access_line + 1;
        let denied = format!(
            "{}\naccess = \"deny\"{}",
            &SEED[..access_line],
            &SEED[end..]
        );
        let Ok(stricter) = Policy::parse(&denied) else {
            // The deny made a role grant something unreachable: refused, so nothing widens.
            return Ok(false);
        };
        let before = evaluate(seed(), &req, now);
        let after = evaluate(&stricter, &req, now);
        let allowed = after.outcome == Outcome::Allow;
        if allowed {
            prop_assert_eq!(before.outcome, Outcome::Allow);
        }
        Ok(allowed)
    });
    assert!(
        reached >= MIN_REACHED,
        "only {reached} of {CASES} requests were allowed under the stricter policy: the \
         property checked too few"
    );
}

#[test]
fn marking_an_identity_as_a_service_account_never_allows_more() {
    let strategy = (any_request(), 1_000u64..u64::MAX / 2, any::<bool>());
    let reached = run_counting(strategy, |(mut req, now, fresh)| {
        // Half the cases authenticated a minute ago, so that MFA roles' age limits pass.
        if fresh {
            req.identity.auth_time = Some(now - 60);
        }
        let mut service = req.clone();
        service.identity.amr.push(SERVICE_ACCOUNT_AMR.into());
        let before = evaluate(seed(), &req, now);
        let after = evaluate(seed(), &service, now);
        let allowed = after.outcome == Outcome::Allow;
        if allowed {
            prop_assert_eq!(before.outcome, Outcome::Allow);
            // `admin`, the seed's one role that requires MFA, does not admit service accounts.
            prop_assert!(
                !after.roles.iter().any(|r| r == "admin"),
                "{:?}",
                after.roles
            );
        }
        Ok(allowed)
    });
    assert!(
        reached >= MIN_REACHED,
        "only {reached} of {CASES} service-account requests were allowed: the property checked \
         too few"
    );
}

/// The seed with Proxmox identities on both roles that grant `proxmox-api`: a service user
/// for `admin`, a template over the subject for `infrastructure`.
fn with_proxmox_identities() -> &'static Policy {
    static WITH: OnceLock<Policy> = OnceLock::new();
    WITH.get_or_init(|| {
        let text = SEED
            .replace(
                "name = \"admin\"\n",
                "name = \"admin\"\nproxmox = { user = \"svc-admin\", roles = [\"PVEAuditor\"], paths = [\"/\"] }\n",
            )
            .replace(
                "name = \"infrastructure\"\n",
                "name = \"infrastructure\"\nproxmox = { user_template = \"pc-{{subject}}\", roles = [\"PVEVMUser\"], paths = [\"/vms\", \"/pool/prod\"] }\n",
            );
        assert_ne!(text, SEED);
        Policy::parse(&text).unwrap()
    })
}

fn subject() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["s", "f1e2-33", "a_b", "a/b", "", "auth0|x", "x@pam"])
            .prop_map(String::from),
        3 => "[A-Za-z0-9._-]{1,40}",
        1 => "\\PC{0,70}",
    ]
}

prop_compose! {
    /// A session the seed's matrix opens for `proxmox-api`, by a member of any groups, with a
    /// fresh authentication (MFA or not), at `now`.
    fn proxmox_request()(
        opening in prop::sample::select(
            openings().iter().filter(|o| o.service == "proxmox-api").cloned().collect::<Vec<_>>()
        ),
        hosts in (any::<u32>(), any::<u32>()),
        groups in prop::collection::vec(prop::sample::select(GROUPS), 1..3),
        amr in prop::collection::vec(prop::sample::select(vec!["pwd", "otp", "mfa"]), 0..3),
        now in 1_000u64..u64::MAX / 2,
        age in 0u64..600,
    ) -> (Request, u64) {
        let request = Request {
            source: within(opening.from, hosts.0),
            target: TargetFacts {
                ip: within(opening.to, hosts.1),
                port: opening.port,
                vmid: None,
                tags: Vec::new(),
                pool: None,
                declared_zone: None,
                service: Some(opening.service.clone()),
            },
            identity: Identity {
                subject: "s".into(),
                preferred_username: Some("u".into()),
                email: None,
                groups: groups.into_iter().map(String::from).collect(),
                amr: amr.into_iter().map(String::from).collect(),
                acr: None,
                auth_time: Some(now - age),
                granted_roles: Vec::new(),
            },
            via_broker: true,
        };
        (request, now)
    }
}

#[test]
fn proxmox_identities_only_ever_narrow_and_are_well_formed() {
    let requests = prop_oneof![
        1 => (any_request(), any::<u64>()),
        4 => proxmox_request(),
    ];
    let reached = run_counting((requests, subject()), |((mut req, now), subject)| {
        req.identity.subject = subject;
        let with = evaluate(with_proxmox_identities(), &req, now);
        let without = evaluate(seed(), &req, now);
        // Naming identities never allows what the seed denies.
        if with.outcome == Outcome::Allow {
            prop_assert_eq!(without.outcome, Outcome::Allow);
        }
        let Some(grant) = &with.proxmox else {
            return Ok(false);
        };
        // A grant comes only with an allowed proxmox-api session, and is well formed.
        prop_assert_eq!(with.outcome, Outcome::Allow);
        prop_assert_eq!(with.service.as_deref(), Some("proxmox-api"));
        prop_assert!(!grant.user.is_empty() && !grant.user.contains('@'));
        prop_assert!(grant.user.len() <= portcullis_policy::MAX_USER_NAME_LEN);
        prop_assert!(grant
            .user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        if grant.user != "svc-admin" {
            // Rendered from the subject, never mapped: the subject is in the name as is.
            prop_assert_eq!(&grant.user, &format!("pc-{}", req.identity.subject));
        }
        prop_assert!(grant.paths.iter().all(|p| !p.starts_with("/access")));
        Ok(true)
    });
    assert!(
        reached >= MIN_REACHED,
        "only {reached} of {CASES} requests carried a Proxmox grant: the property checked too few"
    );
}
