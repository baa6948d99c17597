//! The plan's rules, one test each: what a guest or node becomes (`tests/found.rs`), its
//! name (`tests/names.rs`), how a sync merges with what is stored (`tests/sync.rs`), and
//! properties over arbitrary discoveries (`tests/props.rs`). Here: the fixture.

mod found;
mod names;
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
        sessions: None,
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

pub(super) fn only_key(plan: &Plan) -> Vec<String> {
    added(plan)
        .into_iter()
        .map(|t| t.source_key.clone().unwrap())
        .collect()
}
