use std::net::IpAddr;

use super::*;

const SEED: &str = include_str!("../../../config/policy.toml");
const DEV: &str = include_str!("../../../config/policy-dev.toml");

fn options() -> ExportOptions {
    ExportOptions {
        worker_addrs: vec!["10.10.5.10".parse::<IpAddr>().unwrap()],
        targets: vec![
            (4012, "WORKLOADS".into()),
            (4150, "WORKLOADS".into()),
            (1001, "CORE-INFRA".into()),
            (9999, "MARS".into()),
        ],
    }
}

#[test]
fn markdown_is_the_seed_table() {
    let md = markdown(&Policy::parse(SEED).unwrap());
    let row = md
        .lines()
        .find(|l| l.starts_with("| **ON-PREM-ADMIN** |") && l.contains("0 proxmox-api"))
        .unwrap_or_else(|| panic!("no matrix row for ON-PREM-ADMIN in\n{md}"));
    assert!(
        row.contains("0 iam-token") && row.contains("0 ssh, rdp, winrm"),
        "{row}"
    );
    assert!(md.contains("| **WORKLOADS** |"));
    assert!(md.contains("-> ssh, rdp, winrm, app-traffic (same microsegment)"));
    assert!(md.contains("| **games** | games (exact) | nothing |"));
}

#[test]
fn nested_zones_are_cut_out_of_their_parents() {
    let policy = Policy::parse(SEED).unwrap();
    let admin = policy.zone_id("ON-PREM-ADMIN").unwrap();
    let cidrs = effective_cidrs(&policy, admin);
    let broker: IpNet = "10.10.5.0/24".parse().unwrap();
    assert!(cidrs
        .iter()
        .all(|c| !c.contains(&broker) && !broker.contains(c)));
    let total: u64 = cidrs.iter().map(|c| 1u64 << (32 - c.prefix_len())).sum();
    assert_eq!(total, 65536 - 512);
}

#[test]
fn nftables_admits_broker_only_services_from_the_workers_only() {
    let nft = nftables(&Policy::parse(SEED).unwrap(), &options());
    assert!(
        nft.contains("chain forward {\n\t\ttype filter hook forward priority filter; policy drop;")
    );
    assert!(nft.contains(
        "ip saddr @workers_v4 ip daddr @zone_proxmox_mgmt_v4 meta l4proto tcp th dport { 8006 } accept"
    ));
    assert!(
        !nft.contains("ip saddr @zone_on_prem_admin_v4"),
        "on-prem reaches the cloud only via workers"
    );
    assert!(nft.contains("ip saddr 10.40.9.0/24 ip daddr 10.40.9.0/24"));
    assert!(
        !nft.contains("10.40.10.0/24"),
        "ten microsegments, from the VMID blocks"
    );
}

/// Where `nft` cannot run, set this to `1` to skip `nftables_output_passes_nft_check`;
/// unset, that test fails and says why. `nft -c` checks a ruleset against the kernel, so it
/// needs nftables installed and `CAP_NET_ADMIN` (root). CI runs as root with nftables
/// installed (`scripts/test` installs it) and does not set this.
#[cfg(feature = "real-peers")]
const SKIP_NFT: &str = "PORTCULLIS_TEST_SKIP_NFT";

/// `nft` is a real peer (the kernel's nftables, and root): this test is in the tier
/// `scripts/test` runs (the crate's `real-peers` feature), not in plain `cargo test`.
#[cfg(feature = "real-peers")]
#[test]
fn nftables_output_passes_nft_check() {
    for (name, text) in [("seed", SEED), ("dev", DEV)] {
        let ruleset = nftables(&Policy::parse(text).unwrap(), &options());
        let file =
            std::env::temp_dir().join(format!("portcullis-nft-{}-{name}", std::process::id()));
        std::fs::write(&file, &ruleset).unwrap();
        let out = std::process::Command::new("nft")
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output();
        let _ = std::fs::remove_file(&file);
        let unavailable = match out {
            Ok(out) if out.status.success() => continue,
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("Operation not permitted"),
                    "nft -c rejected the {name} ruleset: {stderr}"
                );
                format!(
                    "nft -c is not permitted here (it needs CAP_NET_ADMIN: run as root): {}",
                    stderr.trim()
                )
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                "nft is not installed (Debian: apt-get install nftables; scripts/test installs it)"
                    .to_owned()
            }
            Err(err) => format!("nft could not be started: {err}"),
        };
        if std::env::var_os(SKIP_NFT).is_some_and(|v| v == "1") {
            eprintln!("{SKIP_NFT}=1: not checking the {name} ruleset with nft -c: {unavailable}");
            continue;
        }
        panic!(
            "cannot check the {name} ruleset with nft -c: {unavailable}; \
             where nft cannot run, set {SKIP_NFT}=1 to skip this check"
        );
    }
}

#[test]
fn proxmox_has_ipsets_groups_and_a_group_line_per_target() {
    let fw = proxmox(&Policy::parse(SEED).unwrap(), &options());
    assert!(fw.cluster_fw.contains(
        "[IPSET zone-on-prem-admin] # ON-PREM-ADMIN\n10.10.0.0/16\n!10.10.5.0/24\n!10.10.6.0/24\n"
    ));
    assert!(fw.cluster_fw.contains("[IPSET portcullis-workers]"));
    assert!(fw.cluster_fw.contains(
        "IN ACCEPT -source +portcullis-workers -p tcp -dport 8006 # proxmox-api: ON-PREM-ADMIN -> PROXMOX-MGMT"
    ));
    assert!(fw
        .cluster_fw
        .contains("IN ACCEPT -source +zone-workloads-s1 -p tcp -dport 22"));
    for line in fw.cluster_fw.lines().filter(|l| l.starts_with("[group ")) {
        let name = line
            .trim_start_matches("[group ")
            .split(']')
            .next()
            .unwrap();
        assert!(
            name.len() <= 18,
            "Proxmox group names are at most 18 characters: {name}"
        );
    }
    let vm = |id: u32| fw.vm_fw.get(&id).cloned().unwrap_or_default();
    assert!(
        vm(4012).contains("\nGROUP pc-workloads-s0\n"),
        "{}",
        vm(4012)
    );
    assert!(vm(4150).contains("\nGROUP pc-workloads-s1\n"));
    assert!(vm(1001).contains("\nGROUP pc-core-infra\n"));
    assert!(vm(9999).contains("not in the policy") && !vm(9999).contains("GROUP"));
    assert!(vm(4012).contains("policy_in: DROP"));
}

/// A broker-only cell whose services the broker's own leg admits only in part: the ADMIN
/// zone may reach VAULT through a session, but BROKER -> VAULT is not open, and `dns` is
/// TCP and UDP while sessions carry TCP only.
const HALF_OPEN_LEG: &str = r#"
[settings]
broker_zone = "BROKER"

[[zone]]
name = "ADMIN"
cidrs = ["10.10.0.0/16"]

[[zone]]
name = "BROKER"
cidrs = ["10.10.5.0/24"]

[[zone]]
name = "VAULT"
cidrs = ["10.10.6.0/24"]

[[zone]]
name = "APPS"
cidrs = ["10.40.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "rdp"
ports = [3389]

[[service]]
name = "vault-api"
ports = [8200]

[[service]]
name = "dns"
protocol = "both"
ports = [53]

[[cell]]
from = "ADMIN"
to = "VAULT"
access = "broker-only"
services = ["vault-api"]

[[cell]]
from = "ADMIN"
to = "APPS"
access = "broker-only"
services = ["ssh", "rdp", "dns"]

[[cell]]
from = "BROKER"
to = "APPS"
access = "allow"
services = ["ssh", "dns"]
"#;

#[test]
fn broker_only_cells_open_to_the_workers_only_what_a_session_can_carry() {
    let policy = Policy::parse(HALF_OPEN_LEG).unwrap();
    let nft = nftables(&policy, &options());
    let from_workers: Vec<&str> = nft
        .lines()
        .filter(|l| l.contains("saddr @workers_v4"))
        .collect();
    assert_eq!(
        from_workers,
        [
            "\t\tip saddr @workers_v4 ip daddr @zone_apps_v4 meta l4proto tcp th dport { 22 } accept comment \"ssh\"",
            "\t\tip saddr @workers_v4 ip daddr @zone_apps_v4 meta l4proto tcp th dport { 53 } accept comment \"dns\"",
        ],
        "the workers may reach what the broker's leg admits, over TCP, and nothing else:\n{nft}"
    );
    // The broker zone's own allow cell is a network path of its own, as declared.
    assert!(nft.contains(
        "ip saddr @zone_broker_v4 ip daddr @zone_apps_v4 meta l4proto { tcp, udp } th dport { 53 } accept"
    ));

    let fw = proxmox(&policy, &options()).cluster_fw;
    let from_workers: Vec<&str> = fw
        .lines()
        .filter(|l| l.contains("-source +portcullis-workers"))
        .collect();
    assert_eq!(
        from_workers,
        [
            "IN ACCEPT -source +portcullis-workers -p tcp -dport 22 # ssh: ADMIN -> APPS: broker-only [ssh, rdp, dns]: from the workers only",
            "IN ACCEPT -source +portcullis-workers -p tcp -dport 53 # dns: ADMIN -> APPS: broker-only [ssh, rdp, dns]: from the workers only",
        ],
        "{fw}"
    );
}

/// The policies the golden files export.
const GOLDEN_POLICIES: [(&str, &str); 3] = [
    ("seed", SEED),
    ("dev", DEV),
    ("half-open-leg", HALF_OPEN_LEG),
];

/// The export cases the golden files hold: the seed, the dev policy and [`HALF_OPEN_LEG`],
/// each with IPv4 workers and known targets, with workers of both families, and with no
/// workers (the broker zone's CIDRs stand in for them).
fn golden_cases() -> Vec<(String, Policy, ExportOptions)> {
    let both_families = ExportOptions {
        worker_addrs: vec![
            "10.10.5.10".parse().unwrap(),
            "fd00::5".parse().unwrap(),
            "::ffff:127.0.0.2".parse().unwrap(),
        ],
        targets: vec![
            (4000, "WORKLOADS".into()),
            (4999, "WORKLOADS".into()),
            (5001, "OBSERVABILITY".into()),
            (1, "LOCAL".into()),
        ],
    };
    let mut cases = Vec::new();
    for (name, text) in GOLDEN_POLICIES {
        let policy = Policy::parse(text).unwrap();
        for (label, opts) in [
            ("ipv4 workers", options()),
            ("workers of both families", both_families.clone()),
            ("no workers", ExportOptions::default()),
        ] {
            cases.push((format!("{name}, {label}"), policy.clone(), opts));
        }
    }
    cases
}

/// Compares `actual` with the checked-in `golden/<file>`. After an intended change of an
/// exporter's output, rewrite the file with `PORTCULLIS_BLESS=1 cargo test -p
/// portcullis-policy golden` and review its diff.
fn assert_golden(file: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/export/golden")
        .join(file);
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    if let Some((n, (want, got))) = expected
        .lines()
        .zip(actual.lines())
        .enumerate()
        .find(|(_, (want, got))| want != got)
    {
        panic!(
            "{file} differs at line {}:\nexpected: {want}\n  actual: {got}\n\
             (if intended, rerun with PORTCULLIS_BLESS=1 and review the diff)",
            n + 1
        );
    }
    assert_eq!(
        expected.len(),
        actual.len(),
        "{file}: one output is a prefix of the other (if intended, rerun with PORTCULLIS_BLESS=1)"
    );
}

#[test]
fn markdown_matches_its_golden_file() {
    let mut out = String::new();
    for (name, text) in GOLDEN_POLICIES {
        out.push_str(&format!("==== {name} ====\n"));
        out.push_str(&markdown(&Policy::parse(text).unwrap()));
    }
    // Roles with Proxmox identities and a declared Proxmox role.
    out.push_str("==== proxmox-identities ====\n");
    out.push_str(&markdown(
        &Policy::parse(crate::proxmox_access::tests::PVE_POLICY).unwrap(),
    ));
    assert_golden("markdown.md", &out);
}

#[test]
fn nftables_matches_its_golden_file() {
    let mut out = String::new();
    for (case, policy, options) in golden_cases() {
        out.push_str(&format!("==== {case} ====\n"));
        out.push_str(&nftables(&policy, &options));
    }
    assert_golden("nftables.nft", &out);
}

#[test]
fn proxmox_matches_its_golden_file() {
    let mut out = String::new();
    for (case, policy, options) in golden_cases() {
        let export = proxmox(&policy, &options);
        out.push_str(&format!(
            "==== {case}: cluster.fw ====\n{}",
            export.cluster_fw
        ));
        for (vmid, text) in &export.vm_fw {
            out.push_str(&format!("==== {case}: {vmid}.fw ====\n{text}"));
        }
    }
    assert_golden("proxmox.fw", &out);
}

#[test]
fn markdown_names_the_ssh_mode_of_zones_roles_and_grants_where_set() {
    let text = DEV
        .replace(
            "cidrs = [\"127.0.0.0/8\", \"::1/128\"]",
            "cidrs = [\"127.0.0.0/8\", \"::1/128\"]\nssh_mode = \"gateway\"",
        )
        .replace(
            "services = [\"echo\"]\nlogins = [\"{{preferred_username}}\"]\n\n[[role]]\nname = \"dev-gateway\"",
            "services = [\"echo\"]\nlogins = [\"{{preferred_username}}\"]\nssh_mode = \"gateway\"\n\n[[role]]\nname = \"dev-gateway\"",
        );
    let md = markdown(&Policy::parse(&text).unwrap());
    assert!(
        md.contains("SSH sessions into **LOCAL** use the gateway"),
        "{md}"
    );
    let user = md
        .lines()
        .find(|l| l.starts_with("| **dev-user**"))
        .unwrap();
    assert!(
        user.contains("LOCAL: echo as {{preferred_username}} (SSH through the gateway)"),
        "{user}"
    );
    let gateway = md
        .lines()
        .find(|l| l.starts_with("| **dev-gateway**"))
        .unwrap();
    assert!(
        gateway.contains("SSH through the gateway; SSH channels: shell, exec, sftp, forward_local"),
        "{gateway}"
    );
    // Where nothing is set, nothing is said.
    let admin = md
        .lines()
        .find(|l| l.starts_with("| **dev-admin**"))
        .unwrap();
    assert!(!admin.contains("SSH"), "{admin}");
    assert!(!markdown(&Policy::parse(SEED).unwrap()).contains("(SSH through the gateway)"));
}
