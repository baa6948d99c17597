//! The plan's rules, one test each: what a guest or node becomes (here), how a sync merges
//! with what is stored (`tests/sync.rs`), and properties over arbitrary discoveries
//! (`tests/props.rs`).

mod props;
mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use portcullis_policy::Policy;

use super::*;
use crate::catalog::config::{ServerTrust, TokenSource};
use crate::catalog::{AddressOrigin, FoundAddress, Guest, GuestType, Node};

/// Zones with CIDRs, VMID ranges, tags and pools; one microsegmented; only LAB accepts
/// guest-reported addresses.
const POLICY: &str = r#"
[settings]
broker_zone = "BROKER"

[[zone]]
name = "BROKER"
trust = "high"
cidrs = ["10.9.0.0/16"]

[[zone]]
name = "LAB"
trust = "low"
cidrs = ["10.1.0.0/16", "fd00:1::/64"]
vmids = ["100-199"]
tags = ["lab"]
pools = ["lab-pool"]
guest_reported_addresses = true

[[zone]]
name = "PROD"
trust = "medium"
cidrs = ["10.2.0.0/16"]
vmids = ["200-299"]
tags = ["prod"]
pools = ["prod-pool"]

[[zone]]
name = "APPS"
trust = "medium"
cidrs = ["10.4.0.0/16"]
vmids = ["4000-4999"]
microsegments = { vmids_per_segment = 100, prefix_len = 24 }

[[zone]]
name = "MGMT"
trust = "high"
cidrs = ["10.20.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "rdp"
ports = [3389]

[[service]]
name = "proxmox-api"
ports = [8006]

[[service]]
name = "anything"
ports = "any"
"#;

const NOW: u64 = 1_800_000_000;

pub(super) fn policy() -> Policy {
    Policy::parse(POLICY).unwrap()
}

pub(super) fn cluster() -> ProxmoxCluster {
    ProxmoxCluster {
        name: "lab".into(),
        urls: vec![url::Url::parse("https://10.20.0.11:8006").unwrap()],
        token: TokenSource::File("/etc/portcullis/pve.token".into()),
        trust: ServerTrust::Fingerprint([0; 32]),
        interval: Duration::from_secs(300),
        timeout: Duration::from_secs(30),
        node_targets: true,
        guest_agent: true,
        sdn: true,
        name_suffix: String::new(),
        service_tag_prefix: String::new(),
        default_services: BTreeMap::from([("*".to_owned(), vec!["ssh".to_owned()])]),
    }
}

pub(super) fn address(ip: &str, origin: AddressOrigin) -> FoundAddress {
    FoundAddress {
        ip: ip.parse().unwrap(),
        origin,
        interface: Some("net0".into()),
    }
}

/// A running VM with a cloud-init address.
pub(super) fn vm(vmid: u32, name: &str, ip: &str) -> Guest {
    Guest {
        guest_type: GuestType::Qemu,
        vmid,
        name: name.into(),
        node: "pve1".into(),
        status: "running".into(),
        template: false,
        tags: Vec::new(),
        pool: None,
        addresses: vec![address(ip, AddressOrigin::CloudInit)],
    }
}

pub(super) fn node(name: &str, ip: Option<&str>, online: bool) -> Node {
    Node {
        name: name.into(),
        address: ip.map(|ip| ip.parse::<IpAddr>().unwrap()),
        online,
    }
}

/// Everything a plan reads, owned, so a test changes one thing and plans.
pub(super) struct Fixture {
    pub cluster: ProxmoxCluster,
    pub policy: Policy,
    pub found: Discovery,
    pub current: Vec<TargetRecord>,
    pub taken: BTreeSet<String>,
    pub refused_before: BTreeMap<String, String>,
    pub now: u64,
}

/// What a failing property shows: what varies between cases.
impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("guests", &self.found.guests)
            .field("nodes", &self.found.nodes)
            .field("taken", &self.taken)
            .field("name_suffix", &self.cluster.name_suffix)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    pub(super) fn new(guests: Vec<Guest>) -> Fixture {
        let mut cluster = cluster();
        cluster.node_targets = false;
        Fixture {
            cluster,
            policy: policy(),
            found: Discovery {
                cluster: "lab".into(),
                url: "https://10.20.0.11:8006".into(),
                nodes: Vec::new(),
                guests,
                notes: Vec::new(),
            },
            current: Vec::new(),
            taken: BTreeSet::new(),
            refused_before: BTreeMap::new(),
            now: NOW,
        }
    }

    pub(super) fn plan(&self) -> Plan {
        plan(&PlanInput {
            cluster: &self.cluster,
            found: &self.found,
            current: &self.current,
            taken_names: &self.taken,
            refused_before: &self.refused_before,
            policy: &self.policy,
            now: self.now,
            default_max_session_secs: 3600,
        })
    }

    /// Plans, then stores the result as the sync would: the next plan starts from it.
    pub(super) fn sync(&mut self) -> Plan {
        let plan = self.plan();
        self.current = apply(&self.current, &plan);
        self.refused_before = plan.refused.clone();
        plan
    }

    /// The stored target of `key`.
    pub(super) fn stored(&mut self, key: &str) -> &mut TargetRecord {
        self.current
            .iter_mut()
            .find(|t| t.source_key.as_deref() == Some(key))
            .unwrap()
    }
}

/// The targets after `plan` is applied to `current`.
pub(super) fn apply(current: &[TargetRecord], plan: &Plan) -> Vec<TargetRecord> {
    let mut out = current.to_vec();
    for change in &plan.changes {
        match change {
            Change::Add(t) => out.push(t.clone()),
            Change::Update { before, after, .. } => {
                let slot = out.iter_mut().find(|t| t.id == before.id).unwrap();
                *slot = after.clone();
            }
            Change::Remove { target, .. } => out.retain(|t| t.id != target.id),
            Change::Refuse { .. } => {}
        }
    }
    out
}

pub(super) fn added(plan: &Plan) -> Vec<&TargetRecord> {
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::Add(t) => Some(t),
            _ => None,
        })
        .collect()
}

pub(super) fn added_key<'p>(plan: &'p Plan, key: &str) -> &'p TargetRecord {
    added(plan)
        .into_iter()
        .find(|t| t.source_key.as_deref() == Some(key))
        .unwrap_or_else(|| panic!("no target {key} added: {plan:#?}"))
}

/// The reason `key` was refused in `plan` (and a `Refuse` change says it).
pub(super) fn refusal(plan: &Plan, key: &str) -> String {
    let reason = plan
        .refused
        .get(key)
        .unwrap_or_else(|| panic!("{key} not refused: {plan:#?}"));
    assert!(
        plan.changes.iter().any(
            |c| matches!(c, Change::Refuse { key: k, reason: r, .. } if k == key && r == reason)
        ),
        "no Refuse change for {key}"
    );
    reason.clone()
}

pub(super) fn names(plan: &Plan) -> BTreeMap<String, String> {
    added(plan)
        .into_iter()
        .map(|t| (t.source_key.clone().unwrap(), t.name.clone()))
        .collect()
}

fn only_key(plan: &Plan) -> Vec<String> {
    added(plan)
        .into_iter()
        .map(|t| t.source_key.clone().unwrap())
        .collect()
}

#[test]
fn a_running_vm_becomes_an_ssh_target_in_the_zone_of_its_address() {
    let plan = Fixture::new(vec![vm(150, "Web", "10.1.0.5")]).plan();
    assert_eq!(plan.unchanged, 0);
    assert!(plan.refused.is_empty());
    let t = added_key(&plan, "qemu/150");
    assert!(crate::ids::looks_like(crate::ids::IdKind::Target, &t.id));
    assert_eq!(t.name, "web");
    assert_eq!(t.address, "10.1.0.5:22");
    assert_eq!(t.zone.as_deref(), Some("LAB"));
    assert_eq!(t.service.as_deref(), Some("ssh"));
    assert_eq!(t.vmid, Some(150));
    assert_eq!(t.source.as_deref(), Some("lab"));
    assert!(t.available);
    assert_eq!((t.max_session_secs, t.connection_limit), (3600, 0));
    assert!(t.ssh_host_keys.is_empty() && t.vault_ssh_mount.is_none());
    assert_eq!((t.created_at, t.updated_at), (NOW as i64, NOW as i64));
    let seen = Seen::of(t).unwrap();
    assert_eq!(
        seen,
        Seen {
            name: "web".into(),
            address: "10.1.0.5:22".into(),
            zone: "LAB".into(),
            service: Some("ssh".into()),
            vmid: Some(150),
            tags: Vec::new(),
            pool: None,
            node: Some("pve1".into()),
            guest_type: "qemu".into(),
            status: "running".into(),
            address_origin: Some("cloud-init".into()),
            available: true,
            seen_at: NOW,
        }
    );
}

#[test]
fn a_container_is_keyed_lxc_and_keeps_its_tags_and_pool() {
    let mut ct = vm(151, "db", "10.1.0.6");
    ct.guest_type = GuestType::Lxc;
    ct.tags = vec!["lab".into(), "backup".into()];
    ct.pool = Some("lab-pool".into());
    ct.addresses = vec![address("10.1.0.6", AddressOrigin::LxcConfig)];
    let plan = Fixture::new(vec![ct]).plan();
    let t = added_key(&plan, "lxc/151");
    assert_eq!(t.tags, vec!["lab", "backup"]);
    assert_eq!(t.pool.as_deref(), Some("lab-pool"));
    assert_eq!(Seen::of(t).unwrap().guest_type, "lxc");
}

#[test]
fn tagged_services_give_one_target_each_in_tag_order() {
    let mut g = vm(150, "win", "10.1.0.5");
    g.tags = vec!["rdp".into(), "lab".into(), "ssh".into(), "rdp".into()];
    let plan = Fixture::new(vec![g]).plan();
    let first = added_key(&plan, "qemu/150");
    assert_eq!(first.service.as_deref(), Some("rdp"));
    assert_eq!(first.address, "10.1.0.5:3389");
    assert_eq!(first.name, "win");
    let second = added_key(&plan, "qemu/150#ssh");
    assert_eq!(second.service.as_deref(), Some("ssh"));
    assert_eq!(second.address, "10.1.0.5:22");
    assert_eq!(second.name, "win-ssh");
    assert_eq!(added(&plan).len(), 2);
}

#[test]
fn a_service_tag_needs_the_cluster_prefix() {
    let mut fx = Fixture::new(vec![vm(150, "win", "10.1.0.5")]);
    fx.found.guests[0].tags = vec!["rdp".into(), "svc-rdp".into()];
    fx.cluster.service_tag_prefix = "svc-".into();
    let plan = fx.plan();
    assert_eq!(only_key(&plan), vec!["qemu/150"]);
    assert_eq!(added_key(&plan, "qemu/150").service.as_deref(), Some("rdp"));
}

#[test]
fn untagged_guests_take_their_zones_default_services_else_the_star() {
    let mut fx = Fixture::new(vec![vm(150, "a", "10.1.0.5"), vm(250, "b", "10.2.0.5")]);
    fx.cluster.default_services = BTreeMap::from([
        ("*".to_owned(), vec!["ssh".to_owned()]),
        ("PROD".to_owned(), vec!["rdp".to_owned(), "ssh".to_owned()]),
    ]);
    let plan = fx.plan();
    assert_eq!(
        only_key(&plan),
        vec!["qemu/150", "qemu/250", "qemu/250#ssh"]
    );
    assert_eq!(added_key(&plan, "qemu/150").service.as_deref(), Some("ssh"));
    assert_eq!(added_key(&plan, "qemu/250").service.as_deref(), Some("rdp"));
}

#[test]
fn services_the_policy_does_not_know_are_skipped() {
    let mut fx = Fixture::new(vec![vm(150, "a", "10.1.0.5")]);
    fx.found.guests[0].tags = vec!["telnet".into()];
    fx.cluster.default_services =
        BTreeMap::from([("*".to_owned(), vec!["telnet".to_owned(), "ssh".to_owned()])]);
    let plan = fx.plan();
    assert_eq!(only_key(&plan), vec!["qemu/150"]);
    assert_eq!(added_key(&plan, "qemu/150").service.as_deref(), Some("ssh"));
}

#[test]
fn a_guest_with_no_service_is_refused() {
    let mut fx = Fixture::new(vec![vm(250, "b", "10.2.0.5"), vm(150, "a", "10.1.0.5")]);
    fx.cluster.default_services = BTreeMap::from([
        ("*".to_owned(), vec!["ssh".to_owned()]),
        ("PROD".to_owned(), Vec::new()),
    ]);
    let plan = fx.plan();
    assert!(refusal(&plan, "qemu/250").starts_with("no service"));
    assert_eq!(only_key(&plan), vec!["qemu/150"]);

    fx.cluster.default_services = BTreeMap::from([("*".to_owned(), vec!["telnet".to_owned()])]);
    let reason = refusal(&fx.plan(), "qemu/150");
    assert!(
        reason.contains("(telnet) are not in the policy"),
        "{reason}"
    );
}

#[test]
fn a_service_of_any_port_is_refused_for_want_of_a_single_port() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.tags = vec!["ssh".into(), "anything".into()];
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(only_key(&plan), vec!["qemu/150"]);
    assert!(refusal(&plan, "qemu/150#anything").contains("has no single port"));
}

#[test]
fn an_address_in_no_zone_is_refused() {
    let plan = Fixture::new(vec![vm(150, "a", "192.168.1.5")]).plan();
    assert!(added(&plan).is_empty());
    assert_eq!(
        refusal(&plan, "qemu/150"),
        "the address 192.168.1.5 is in no zone"
    );
}

#[test]
fn a_tag_of_another_zone_is_refused_not_remapped() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.tags = vec!["prod".into()];
    let plan = Fixture::new(vec![g]).plan();
    assert!(added(&plan).is_empty(), "no target in any zone");
    assert_eq!(
        refusal(&plan, "qemu/150"),
        "the target's tag `prod` puts it in zone PROD, but its address 10.1.0.5 is in zone LAB"
    );
    let Some(Change::Refuse {
        vmid,
        node,
        address,
        address_origin,
        name,
        ..
    }) = plan.changes.first()
    else {
        panic!("{plan:#?}")
    };
    assert_eq!((name.as_str(), *vmid), ("a", Some(150)));
    assert_eq!(node.as_deref(), Some("pve1"));
    assert_eq!(address.as_deref(), Some("10.1.0.5"));
    assert_eq!(address_origin.as_deref(), Some("cloud-init"));
}

#[test]
fn a_vmid_range_that_disagrees_with_the_address_is_refused() {
    let plan = Fixture::new(vec![vm(250, "a", "10.1.0.5")]).plan();
    assert!(added(&plan).is_empty());
    assert!(refusal(&plan, "qemu/250").contains("VMID 250 puts it in zone PROD"));
}

#[test]
fn a_pool_that_disagrees_with_the_address_is_refused() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.pool = Some("prod-pool".into());
    let plan = Fixture::new(vec![g]).plan();
    assert!(refusal(&plan, "qemu/150").contains("pool `prod-pool` puts it in zone PROD"));
}

#[test]
fn a_microsegment_that_disagrees_with_the_address_is_refused() {
    let plan = Fixture::new(vec![vm(4000, "a", "10.4.1.5"), vm(4100, "b", "10.4.1.6")]).plan();
    assert!(refusal(&plan, "qemu/4000").contains("microsegment"));
    assert_eq!(added_key(&plan, "qemu/4100").zone.as_deref(), Some("APPS"));
}

#[test]
fn the_first_address_whose_zone_checks_pass_is_used() {
    let mut g = vm(150, "a", "192.168.1.5");
    g.addresses
        .push(address("10.2.0.5", AddressOrigin::CloudInit));
    g.addresses
        .push(address("10.1.0.5", AddressOrigin::CloudInit));
    g.addresses
        .push(address("10.1.0.6", AddressOrigin::CloudInit));
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(added_key(&plan, "qemu/150").address, "10.1.0.5:22");
}

#[test]
fn every_address_refused_says_why_for_each() {
    let mut g = vm(150, "a", "192.168.1.5");
    g.addresses
        .push(address("10.2.0.5", AddressOrigin::CloudInit));
    let reason = refusal(&Fixture::new(vec![g]).plan(), "qemu/150");
    assert!(reason.starts_with("none of its 2 addresses is usable: the address 192.168.1.5 is in no zone; the target's VMID 150"), "{reason}");
}

#[test]
fn an_agent_address_is_refused_in_a_zone_without_the_setting() {
    let mut g = vm(250, "a", "10.2.0.5");
    g.addresses = vec![address("10.2.0.5", AddressOrigin::GuestAgent)];
    let plan = Fixture::new(vec![g]).plan();
    assert!(added(&plan).is_empty());
    let reason = refusal(&plan, "qemu/250");
    assert!(
        reason.contains("reported by the guest (guest-agent)"),
        "{reason}"
    );
    assert!(reason.contains("zone PROD does not accept guest-reported addresses"));
    assert!(reason.contains("guest_reported_addresses = true"));
}

#[test]
fn an_agent_address_is_accepted_in_a_zone_with_the_setting() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.addresses = vec![address("10.1.0.5", AddressOrigin::GuestAgent)];
    let plan = Fixture::new(vec![g]).plan();
    let t = added_key(&plan, "qemu/150");
    assert_eq!(t.zone.as_deref(), Some("LAB"));
    assert_eq!(
        Seen::of(t).unwrap().address_origin.as_deref(),
        Some("guest-agent")
    );
}

#[test]
fn a_guest_reported_address_is_skipped_for_a_configured_one() {
    let mut g = vm(250, "a", "10.2.0.9");
    g.addresses = vec![
        address("10.2.0.9", AddressOrigin::LxcInterfaces),
        address("10.2.0.5", AddressOrigin::LxcConfig),
    ];
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(added_key(&plan, "qemu/250").address, "10.2.0.5:22");
}

#[test]
fn a_guest_without_an_address_is_refused() {
    let mut g = vm(150, "a", "10.1.0.5");
    g.addresses.clear();
    let plan = Fixture::new(vec![g]).plan();
    assert_eq!(
        refusal(&plan, "qemu/150"),
        "no address: give it a cloud-init ipconfig0 / lxc net0 ip=, or enable the agent"
    );
}

#[test]
fn an_ipv6_address_is_written_in_brackets_and_a_mapped_ipv4_as_ipv4() {
    let plan = Fixture::new(vec![
        vm(150, "a", "fd00:1::5"),
        vm(151, "b", "::ffff:10.1.0.7"),
    ])
    .plan();
    assert_eq!(added_key(&plan, "qemu/150").address, "[fd00:1::5]:22");
    assert_eq!(added_key(&plan, "qemu/151").address, "10.1.0.7:22");
}

#[test]
fn templates_and_guests_not_running_are_unavailable() {
    let mut template = vm(150, "tpl", "10.1.0.5");
    template.template = true;
    template.status = "stopped".into();
    let mut stopped = vm(151, "off", "10.1.0.6");
    stopped.status = "stopped".into();
    let mut paused = vm(152, "paused", "10.1.0.7");
    paused.status = "paused".into();
    let plan = Fixture::new(vec![template, stopped, paused, vm(153, "on", "10.1.0.8")]).plan();
    let t = added_key(&plan, "qemu/150");
    assert!(!t.available);
    assert_eq!(Seen::of(t).unwrap().status, "template");
    assert!(!added_key(&plan, "qemu/151").available);
    assert!(!added_key(&plan, "qemu/152").available);
    assert!(added_key(&plan, "qemu/153").available);
}

#[test]
fn nodes_become_proxmox_api_targets_on_8006() {
    let mut fx = Fixture::new(Vec::new());
    fx.cluster.node_targets = true;
    fx.found.nodes = vec![
        node("pve1", Some("10.20.0.11"), true),
        node("pve2", Some("10.20.0.12"), false),
    ];
    let plan = fx.plan();
    let t = added_key(&plan, "node/pve1");
    assert_eq!(t.name, "pve1");
    assert_eq!(t.address, "10.20.0.11:8006");
    assert_eq!(t.zone.as_deref(), Some("MGMT"));
    assert_eq!(t.service.as_deref(), Some("proxmox-api"));
    assert_eq!(t.vmid, None);
    assert!(t.available);
    let seen = Seen::of(t).unwrap();
    assert_eq!(
        (seen.guest_type.as_str(), seen.status.as_str()),
        ("node", "online")
    );
    assert_eq!(seen.address_origin.as_deref(), Some("cluster-status"));
    assert!(!added_key(&plan, "node/pve2").available);

    fx.cluster.node_targets = false;
    assert!(fx.plan().changes.is_empty());
}

#[test]
fn a_node_without_an_address_is_refused() {
    let mut fx = Fixture::new(Vec::new());
    fx.cluster.node_targets = true;
    fx.found.nodes = vec![node("pve1", None, true)];
    assert_eq!(
        refusal(&fx.plan(), "node/pve1"),
        "no address: give the discovery token Sys.Audit for /cluster/status"
    );
}

#[test]
fn nodes_are_refused_when_the_policy_has_no_proxmox_api_service() {
    let mut fx = Fixture::new(Vec::new());
    fx.cluster.node_targets = true;
    fx.policy = Policy::parse(&POLICY.replace("proxmox-api", "pve-web")).unwrap();
    fx.found.nodes = vec![node("pve1", Some("10.20.0.11"), true)];
    let reason = refusal(&fx.plan(), "node/pve1");
    assert!(
        reason.starts_with("the policy has no service `proxmox-api`"),
        "{reason}"
    );
}

#[test]
fn names_are_sanitised_to_the_target_name_rules() {
    let mut ct = vm(154, "", "10.1.0.9");
    ct.guest_type = GuestType::Lxc;
    let plan = Fixture::new(vec![
        vm(150, "My Web__Server!!", "10.1.0.5"),
        vm(151, "--Über  café--", "10.1.0.6"),
        vm(152, "", "10.1.0.7"),
        vm(153, "!!!", "10.1.0.8"),
        ct,
        vm(155, "db.internal", "10.1.0.10"),
    ])
    .plan();
    let names = names(&plan);
    assert_eq!(names["qemu/150"], "my-web__server");
    assert_eq!(names["qemu/151"], "ber-caf");
    assert_eq!(names["qemu/152"], "vm-152");
    assert_eq!(names["qemu/153"], "vm-153");
    assert_eq!(names["lxc/154"], "ct-154");
    assert_eq!(names["qemu/155"], "db.internal");
}

#[test]
fn the_cluster_suffix_ends_every_name_and_long_names_are_cut_to_64() {
    let long = "x".repeat(80);
    let mut g = vm(150, &long, "10.1.0.5");
    g.tags = vec!["ssh".into(), "rdp".into()];
    let mut fx = Fixture::new(vec![g, vm(151, "web", "10.1.0.6")]);
    fx.cluster.name_suffix = ".lab".into();
    let plan = fx.plan();
    let names = names(&plan);
    assert_eq!(names["qemu/151"], "web.lab");
    assert_eq!(names["qemu/150"], format!("{}.lab", "x".repeat(60)));
    assert_eq!(names["qemu/150#rdp"], format!("{}-rdp.lab", "x".repeat(56)));
}

#[test]
fn a_name_shaped_like_a_target_id_is_refused() {
    let plan = Fixture::new(vec![vm(150, "t_0123456789abcdef01234567", "10.1.0.5")]).plan();
    assert!(added(&plan).is_empty());
    assert!(refusal(&plan, "qemu/150").contains("not a valid target name"));
}

#[test]
fn namesakes_in_the_cluster_the_lowest_key_keeps_the_name() {
    let mut ct = vm(170, "web", "10.1.0.7");
    ct.guest_type = GuestType::Lxc;
    let mut fx = Fixture::new(vec![
        vm(160, "web", "10.1.0.6"),
        vm(150, "WEB", "10.1.0.5"),
        ct,
    ]);
    fx.cluster.node_targets = true;
    fx.found.nodes = vec![node("web", Some("10.20.0.11"), true)];
    let names = names(&fx.plan());
    assert_eq!(names["lxc/170"], "web");
    assert_eq!(names["node/web"], "web-node");
    assert_eq!(names["qemu/150"], "web-150");
    assert_eq!(names["qemu/160"], "web-160");
}

#[test]
fn a_namesake_whose_fallback_is_taken_too_is_refused() {
    let plan = Fixture::new(vec![
        vm(150, "web", "10.1.0.5"),
        vm(151, "web-152", "10.1.0.6"),
        vm(152, "web", "10.1.0.7"),
    ])
    .plan();
    assert_eq!(names(&plan).len(), 2);
    let reason = refusal(&plan, "qemu/152");
    assert!(
        reason.contains("`web` and `web-152` are taken by qemu/150 and qemu/151"),
        "{reason}"
    );
}

#[test]
fn a_name_another_sources_target_holds_is_refused_not_renamed() {
    let mut fx = Fixture::new(vec![vm(150, "web", "10.1.0.5"), vm(151, "db", "10.1.0.6")]);
    fx.taken = BTreeSet::from(["web".to_owned()]);
    let plan = fx.plan();
    assert_eq!(only_key(&plan), vec!["qemu/151"]);
    let reason = refusal(&plan, "qemu/150");
    assert!(
        reason.contains("the name `web` is taken by another target named `web`"),
        "{reason}"
    );
}
