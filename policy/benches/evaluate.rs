//! `evaluate` on a generated policy of 50 zones and 500 roles. Target: p50 under 5 µs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_policy::{evaluate, Identity, Outcome, Policy, Request, TargetFacts};

const ZONES: usize = 50;
const ROLES: usize = 500;

/// Zone `Zi` is 10.i.0.0/16 (zone 0 is the broker); every zone reaches every other through
/// the broker for ssh and https; role `r<j>` grants ssh in zone `j % 50` to group `g<j>`.
fn generated_policy() -> String {
    let mut t = String::from("[settings]\nbroker_zone = \"Z0\"\n\n");
    for z in 0..ZONES {
        let _ = writeln!(t, "[[zone]]\nname = \"Z{z}\"\ncidrs = [\"10.{z}.0.0/16\", \"fd00:{z:x}::/32\"]\nvmids = [\"{}-{}\"]\n", 1000 + z * 100, 1099 + z * 100);
    }
    t.push_str("[[service]]\nname = \"ssh\"\nports = [22]\n\n[[service]]\nname = \"https\"\nports = [443, 8443]\n\n");
    for src in 0..ZONES {
        for dst in 0..ZONES {
            let access = if src == 0 { "allow" } else { "broker-only" };
            let _ = writeln!(t, "[[cell]]\nfrom = \"Z{src}\"\nto = \"Z{dst}\"\naccess = \"{access}\"\nservices = [\"ssh\", \"https\"]\n");
        }
    }
    for r in 0..ROLES {
        let _ = writeln!(
            t,
            "[[role]]\nname = \"r{r}\"\ngroups = [\"g{r}\", \"/org/team{r}\"]\ngroup_match = \"path\"\n[[role.grant]]\nzones = [\"Z{}\"]\nservices = [\"ssh\"]\nlogins = [\"{{{{preferred_username}}}}\"]\n[role.constraints]\nmax_session_secs = 3600\nmfa = {{ amr = [\"mfa\"], max_auth_age_secs = 3600 }}\n",
            r % ZONES
        );
    }
    t
}

fn request(groups: Vec<String>) -> Request {
    Request {
        source: IpAddr::V4(Ipv4Addr::new(10, 7, 1, 2)),
        target: TargetFacts {
            ip: IpAddr::V4(Ipv4Addr::new(10, 42, 3, 4)),
            port: 22,
            vmid: Some(5_250),
            tags: vec![],
            pool: None,
            declared_zone: Some("Z42".into()),
            service: Some("ssh".into()),
        },
        identity: Identity {
            subject: "s-1".into(),
            preferred_username: Some("alice".into()),
            email: None,
            groups,
            amr: vec!["pwd".into(), "mfa".into()],
            acr: None,
            auth_time: Some(1_000),
            granted_roles: Vec::new(),
        },
        via_broker: true,
    }
}

fn bench(c: &mut Criterion) {
    let policy = Policy::parse(&generated_policy()).unwrap();
    // A user in eight groups; role r442 (zone 42) grants the request.
    let mut groups: Vec<String> = (0..7).map(|i| format!("/org/team{}", i * 13)).collect();
    groups.push("g442".into());
    let allowed = request(groups.clone());
    assert_eq!(evaluate(&policy, &allowed, 2_000).outcome, Outcome::Allow);
    let denied = request(groups[..7].to_vec());
    assert_eq!(evaluate(&policy, &denied, 2_000).outcome, Outcome::Deny);

    c.bench_function("evaluate allow (50 zones, 500 roles)", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&allowed), black_box(2_000)))
    });
    c.bench_function("evaluate deny by roles (50 zones, 500 roles)", |b| {
        b.iter(|| evaluate(black_box(&policy), black_box(&denied), black_box(2_000)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
