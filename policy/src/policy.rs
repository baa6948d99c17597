//! The compiled policy: validated, indexed, and ready to evaluate.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use crate::diagnostic::PolicyError;
use crate::model::{Access, GroupMatch, Protocol, Trust};
use crate::permission::Permission;
use crate::proxmox_access::{ProxmoxIdentity, ProxmoxRole};
use crate::recording::{RecordingRule, ZoneRecording};
use crate::roles::{GroupIndex, Template};
use crate::ssh::{SshMode, SshRights};
use crate::zones::PrefixTable;

pub(crate) type ZoneId = usize;
pub(crate) type ServiceId = usize;
pub(crate) type RoleId = usize;

/// A validated policy. Build one with [`Policy::parse`]; it never changes afterwards.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) hash: String,
    pub(crate) description: Option<String>,
    pub(crate) zones: Vec<Zone>,
    pub(crate) zone_by_name: HashMap<String, ZoneId>,
    pub(crate) services: Vec<Service>,
    pub(crate) service_by_name: HashMap<String, ServiceId>,
    pub(crate) service_sets: Vec<(String, Vec<ServiceId>)>,
    pub(crate) broker: ZoneId,
    /// Row-major `zones.len() × zones.len()` cells; an undeclared cell is a deny.
    pub(crate) matrix: Vec<Cell>,
    pub(crate) roles: Vec<Role>,
    pub(crate) groups: GroupIndex,
    pub(crate) addresses: PrefixTable,
    /// Inclusive VMID ranges sorted by start; ranges never overlap.
    pub(crate) vmids: Vec<(u32, u32, ZoneId)>,
    pub(crate) tags: HashMap<String, ZoneId>,
    pub(crate) pools: HashMap<String, ZoneId>,
    /// The Proxmox roles the file declares (`[[proxmox_role]]`), in file order.
    pub(crate) proxmox_roles: Vec<ProxmoxRole>,
}

impl Policy {
    /// Parses and validates a policy file. The error carries every problem with its line.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let (policy, report) = crate::compile::compile(text);
        match policy {
            Some(policy) if report.errors.is_empty() => Ok(policy),
            _ => Err(PolicyError {
                diagnostics: report.errors,
            }),
        }
    }

    /// Hex SHA-256 of the policy file's bytes, recorded with every decision.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The `[settings] description`, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Zone names in file order.
    pub fn zone_names(&self) -> impl Iterator<Item = &str> {
        self.zones.iter().map(|z| z.name.as_str())
    }

    /// Service names in file order.
    pub fn service_names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|s| s.name.as_str())
    }

    /// Role names in file order.
    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.iter().map(|r| r.name.as_str())
    }

    /// The zone that brokered sessions leave from: the workers' network leg.
    pub fn broker_zone(&self) -> &str {
        self.zones
            .get(self.broker)
            .map(|z| z.name.as_str())
            .unwrap_or_default()
    }

    /// The CIDRs of a zone, if the zone exists.
    pub fn zone_cidrs(&self, zone: &str) -> Option<&[IpNet]> {
        let id = *self.zone_by_name.get(zone)?;
        self.zones.get(id).map(|z| z.cidrs.as_slice())
    }

    /// Whether `zone` lets the host catalog place a guest by an address the guest itself
    /// reported (`guest_reported_addresses`); `false` for a zone the policy does not know.
    pub fn zone_accepts_guest_reported_addresses(&self, zone: &str) -> bool {
        self.zone_id(zone)
            .and_then(|id| self.zones.get(id))
            .is_some_and(|z| z.guest_reported_addresses)
    }

    /// The port a discovered target of `service` is given: the service's first port;
    /// `None` for a service the policy does not know or one of `any` ports.
    pub fn service_port(&self, service: &str) -> Option<u16> {
        let s = self.services.iter().find(|s| s.name == service)?;
        match &s.ports {
            Ports::Any => None,
            Ports::List(ranges) => ranges.first().map(|(lo, _)| *lo),
        }
    }

    pub(crate) fn zone_id(&self, name: &str) -> Option<ZoneId> {
        self.zone_by_name.get(name).copied()
    }

    pub(crate) fn zone_name(&self, id: ZoneId) -> &str {
        self.zones.get(id).map(|z| z.name.as_str()).unwrap_or("?")
    }

    pub(crate) fn service_name(&self, id: ServiceId) -> &str {
        self.services
            .get(id)
            .map(|s| s.name.as_str())
            .unwrap_or("?")
    }

    /// The cell from `src` to `dst`; out-of-range ids read as the default deny.
    pub(crate) fn cell(&self, src: ZoneId, dst: ZoneId) -> &Cell {
        let n = self.zones.len();
        if src >= n || dst >= n {
            return &DENY_CELL;
        }
        self.matrix.get(src * n + dst).unwrap_or(&DENY_CELL)
    }
}

static DENY_CELL: Cell = Cell {
    access: Access::Deny,
    services: IdSet::EMPTY,
    same_microsegment: false,
    declared: false,
    note: None,
};

#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub name: String,
    pub description: Option<String>,
    pub trust: Option<Trust>,
    pub cidrs: Vec<IpNet>,
    pub vmids: Vec<(u32, u32)>,
    pub tags: Vec<String>,
    pub pools: Vec<String>,
    pub microsegments: Option<Microsegments>,
    /// The mode SSH sessions into the zone need at least: `Gateway` when the zone requires it.
    pub ssh_mode: SshMode,
    /// Whether sessions into the zone are recorded, and how.
    pub recording: ZoneRecording,
    /// Whether the host catalog may place a guest here by an address the guest reported.
    pub guest_reported_addresses: bool,
}

/// Microsegments of a zone: the n-th block of `vmids_per_segment` VMIDs (counting through
/// the zone's VMID ranges in order) and the n-th `/prefix_len` block of addresses (counting
/// through the zone's CIDRs in order) form microsegment n.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Microsegments {
    pub vmids_per_segment: u32,
    pub prefix_len: u8,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub name: String,
    pub description: Option<String>,
    pub protocol: Protocol,
    pub ports: Ports,
    /// The target zones the service exists in; `None` means every zone.
    pub zones: Option<IdSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ports {
    Any,
    /// Inclusive ranges; a single port is `(p, p)`.
    List(Vec<(u16, u16)>),
}

impl Ports {
    pub(crate) fn contains(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::List(ranges) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port)),
        }
    }

    /// `22, 8000-8010` or `any`.
    pub(crate) fn render(&self, range_sep: &str) -> String {
        match self {
            Ports::Any => "any".into(),
            Ports::List(ranges) => ranges
                .iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}{range_sep}{hi}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub access: Access,
    pub services: IdSet,
    pub same_microsegment: bool,
    /// Whether the file declares this cell (an undeclared cell is an implicit deny).
    pub declared: bool,
    pub note: Option<String>,
}

impl Cell {
    pub(crate) fn deny() -> Cell {
        DENY_CELL.clone()
    }

    /// Whether the network lets `service` through this cell, in either allowing kind.
    pub(crate) fn admits(&self, service: ServiceId) -> bool {
        matches!(self.access, Access::Allow | Access::BrokerOnly) && self.services.contains(service)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub name: String,
    pub description: Option<String>,
    pub groups: Vec<String>,
    pub group_match: GroupMatch,
    pub permissions: BTreeSet<Permission>,
    pub grants: Vec<Grant>,
    pub constraints: RoleConstraints,
    /// The SSH channels the role allows in gateway mode; `None`: it sets none, and gets the
    /// defaults ([`SshRights::default`]).
    pub ssh: Option<SshRights>,
    /// The mode the role's SSH sessions need at least.
    pub ssh_mode: SshMode,
    /// Whether the role's sessions are recorded, and with typed input.
    pub recording: RecordingRule,
    /// The Proxmox identity the role's `proxmox-api` sessions act as, if it names one.
    pub proxmox: Option<ProxmoxIdentity>,
    /// `[role.requestable]`: held only through an approved access request; its `groups`
    /// are who may request it, never standing members.
    pub requestable: Option<crate::access::Requestable>,
}

#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub zones: IdSet,
    pub services: IdSet,
    pub logins: Vec<Template>,
    /// `zones = ["*"]` / `services = ["*"]`, kept for display.
    pub all_zones: bool,
    pub all_services: bool,
    /// The mode SSH sessions through this grant need at least.
    pub ssh_mode: SshMode,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RoleConstraints {
    pub max_session_secs: Option<u64>,
    pub connection_limit: Option<u32>,
    pub source_zones: Option<IdSet>,
    pub mfa: Option<Mfa>,
}

#[derive(Debug, Clone)]
pub(crate) struct Mfa {
    pub amr: Vec<String>,
    pub acr: Vec<String>,
    pub max_auth_age_secs: Option<u64>,
    /// Service accounts pass the amr/acr requirement (their key is their proof); the
    /// `auth_time` age still applies.
    pub service_accounts: bool,
}

/// A small set of dense ids (zones, services, roles) as a bit vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IdSet {
    words: Vec<u64>,
}

impl IdSet {
    pub(crate) const EMPTY: IdSet = IdSet { words: Vec::new() };

    pub(crate) fn with_capacity(ids: usize) -> IdSet {
        IdSet {
            words: Vec::with_capacity(ids.div_ceil(64)),
        }
    }

    pub(crate) fn full(len: usize) -> IdSet {
        let mut set = IdSet::with_capacity(len);
        for id in 0..len {
            set.insert(id);
        }
        set
    }

    pub(crate) fn insert(&mut self, id: usize) {
        let word = id / 64;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        if let Some(w) = self.words.get_mut(word) {
            *w |= 1u64 << (id % 64);
        }
    }

    pub(crate) fn contains(&self, id: usize) -> bool {
        self.words
            .get(id / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Ids in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, w)| {
            (0..64)
                .filter(move |bit| w & (1u64 << bit) != 0)
                .map(move |bit| i * 64 + bit)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_set_inserts_and_iterates_in_order() {
        let mut set = IdSet::default();
        for id in [130, 3, 64, 3] {
            set.insert(id);
        }
        assert!(set.contains(3) && set.contains(64) && set.contains(130));
        assert!(!set.contains(4) && !set.contains(10_000));
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![3, 64, 130]);
        assert!(!set.is_empty() && IdSet::default().is_empty());
    }

    #[test]
    fn ports_contain_ranges() {
        let ports = Ports::List(vec![(22, 22), (8000, 8010)]);
        assert!(ports.contains(22) && ports.contains(8005));
        assert!(!ports.contains(23));
        assert!(Ports::Any.contains(1));
        assert_eq!(ports.render("-"), "22, 8000-8010");
    }
}
