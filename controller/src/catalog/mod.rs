//! The host catalog: targets discovered from Proxmox clusters (docs/proxmox.md).
//!
//! Data flow, one cluster at a time, under a store lease so that one controller syncs it:
//!
//! ```text
//! [[catalog.proxmox]] ──► proxmox::discover ──► Discovery ──► plan (pure) ──► Plan ──► sync::apply
//!   (config)              (read-only GETs,       (nodes,        (+ the targets   (changes)   (one audited tx
//!                          parse: pure)           guests,         the last sync              per change; then
//!                                                 addresses)      left, policy)              the policy ends
//!                                                                                            sessions it no
//!                                                                                            longer allows)
//! ```
//!
//! Invariants:
//! - Zones come from addresses only (`portcullis_policy::zone_of_target`): a guest whose
//!   VMID range, tag or pool disagrees with its address's zone is refused and audited, never
//!   remapped. An address the guest reported itself (agent, LXC interfaces) places it only
//!   in a zone with `guest_reported_addresses = true`.
//! - Discovery only reads (GET); the token never reaches a log or an event.
//! - A failed sync changes no target: the last good catalog stays and the failure is audited.
//! - A field an admin changed on a discovered target (its stored value differs from what
//!   the last sync saw) is an override the next sync keeps.
//!
//! Modules: `config` (`[[catalog.proxmox]]`), `proxmox` (the API client and the pure parsers
//! of its answers: `discover` returns a [`Discovery`]), `plan` (the pure diff), `sync` (the
//! loop, the lease, applying a plan), `inventory` (what a caller may reach).

pub(crate) mod config;
pub(crate) mod inventory;
pub(crate) mod plan;
pub(crate) mod proxmox;
pub(crate) mod sync;

/// The catalog's test policy: LOCAL (the callers), LAB and OFFICE; the role ops reaches
/// LAB by ssh, nobody OFFICE.
#[cfg(test)]
pub(crate) const TEST_POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "LAB"
cidrs = ["192.0.2.0/24"]

[[zone]]
name = "OFFICE"
cidrs = ["198.51.100.0/24"]

[[service]]
name = "ssh"
ports = [22]

[[cell]]
from = "LOCAL"
to = "LAB"
access = "allow"
services = ["ssh"]

[[cell]]
from = "LOCAL"
to = "OFFICE"
access = "deny"

[[role]]
name = "ops"
groups = ["ops"]

[[role.grant]]
zones = ["LAB"]
services = ["ssh"]
"#;

use std::net::IpAddr;

/// What one sync found in one cluster: the input of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Discovery {
    /// The `[[catalog.proxmox]]` name.
    pub cluster: String,
    /// The API URL that answered.
    pub url: String,
    pub nodes: Vec<Node>,
    pub guests: Vec<Guest>,
    /// Facts worth saying that change nothing (an agent not running, an address skipped as
    /// link-local, an endpoint the server lacks), one sentence each.
    pub notes: Vec<String>,
}

/// A Proxmox node (from `/nodes` and `/cluster/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub name: String,
    /// Its address in `/cluster/status` (needs Sys.Audit); none when not reported.
    pub address: Option<IpAddr>,
    /// `online` in `/nodes`.
    pub online: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum GuestType {
    Qemu,
    Lxc,
}

impl GuestType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GuestType::Qemu => "qemu",
            GuestType::Lxc => "lxc",
        }
    }
}

/// A VM or container (from `/cluster/resources?type=vm`, its config, and as a fallback its
/// agent or interfaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guest {
    pub guest_type: GuestType,
    pub vmid: u32,
    /// The name as Proxmox has it (`name`; an LXC's `hostname` when it has no name);
    /// sanitised into a target name by the plan.
    pub name: String,
    pub node: String,
    /// `running`, `stopped`, `paused`, ... as Proxmox reported it.
    pub status: String,
    pub template: bool,
    /// Proxmox tags, split (`;`, `,` or spaces) and in Proxmox's order.
    pub tags: Vec<String>,
    /// The pool, when the guest is in one (and the token has Pool.Audit).
    pub pool: Option<String>,
    /// Usable addresses, best first: configured ones (cloud-init `ipconfigN`, LXC `netN
    /// ip=`, SDN IPAM) before guest-reported ones (agent, LXC interfaces). Loopback,
    /// link-local, unspecified and multicast addresses and docker/veth/bridge interfaces are
    /// already filtered out. Empty when none was found.
    pub addresses: Vec<FoundAddress>,
}

/// An address of a guest and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundAddress {
    pub ip: IpAddr,
    pub origin: AddressOrigin,
    /// `net0`, `eth0`, ...: the config key or the guest's interface name.
    pub interface: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum AddressOrigin {
    /// A QEMU guest's cloud-init `ipconfigN` (`ip=10.0.0.5/24`).
    CloudInit,
    /// An LXC container's `netN` (`ip=10.1.1.3/24`).
    LxcConfig,
    /// The SDN IPAM's entry for the guest.
    SdnIpam,
    /// The QEMU guest agent (`network-get-interfaces`): chosen by the guest.
    GuestAgent,
    /// A running container's `/interfaces`: chosen by the guest.
    LxcInterfaces,
    /// A node's address in `/cluster/status`.
    ClusterStatus,
}

impl AddressOrigin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AddressOrigin::CloudInit => "cloud-init",
            AddressOrigin::LxcConfig => "lxc-config",
            AddressOrigin::SdnIpam => "sdn-ipam",
            AddressOrigin::GuestAgent => "guest-agent",
            AddressOrigin::LxcInterfaces => "lxc-interfaces",
            AddressOrigin::ClusterStatus => "cluster-status",
        }
    }

    /// Whether the guest itself chose this address (a policy setting decides whether it
    /// may place the guest in a zone).
    pub(crate) fn guest_reported(self) -> bool {
        matches!(
            self,
            AddressOrigin::GuestAgent | AddressOrigin::LxcInterfaces
        )
    }
}

/// A stored target's `source` as the API shows it; none for a hand-made target.
pub(crate) fn target_source(
    t: &crate::store::targets::TargetRecord,
) -> Option<portcullis_proto::catalog::TargetSource> {
    let cluster = t.source.clone()?;
    let seen = plan::Seen::of(t);
    Some(portcullis_proto::catalog::TargetSource {
        kind: "proxmox".into(),
        cluster,
        key: t.source_key.clone().unwrap_or_default(),
        node: seen.as_ref().and_then(|s| s.node.clone()),
        guest_type: seen
            .as_ref()
            .map(|s| s.guest_type.clone())
            .unwrap_or_default(),
        status: seen.as_ref().map(|s| s.status.clone()).unwrap_or_default(),
        address_origin: seen.as_ref().and_then(|s| s.address_origin.clone()),
        overrides: plan::overrides(t),
        seen_at: seen.map(|s| s.seen_at).unwrap_or(0),
    })
}
