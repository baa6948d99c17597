//! The policy file as written: raw TOML structures, before any validation.
//!
//! Every struct refuses unknown keys, and every value a diagnostic may point at is wrapped
//! in [`Spanned`] so that errors found later, in `compile`, still carry a line number.

use serde::Deserialize;
use toml::Spanned;

use crate::ssh::{SshMode, SshRights};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub settings: RawSettings,
    #[serde(default, rename = "zone")]
    pub zones: Vec<RawZone>,
    #[serde(default, rename = "service")]
    pub services: Vec<RawService>,
    #[serde(default, rename = "service_set")]
    pub service_sets: Vec<RawServiceSet>,
    #[serde(default, rename = "cell")]
    pub cells: Vec<RawCell>,
    #[serde(default, rename = "role")]
    pub roles: Vec<RawRole>,
    /// `[[proxmox_role]]`: Proxmox roles the file declares, with their privileges.
    #[serde(default, rename = "proxmox_role")]
    pub proxmox_roles: Vec<RawProxmoxRole>,
}

/// `[[proxmox_role]]`: a custom Proxmox role, so the policy can check its privileges.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxmoxRole {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub privileges: Spanned<Vec<Spanned<String>>>,
}

/// A role's `proxmox = { user = "...", roles = [...], paths = [...] }` (or `user_template`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxmoxIdentity {
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub user_template: Option<Spanned<String>>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    /// Let the session's proxy pass writes under `/api2/json/access/` (default: refused).
    #[serde(default)]
    pub access_writes: bool,
}

/// `[settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub broker_zone: Spanned<String>,
    #[serde(default)]
    pub group_match: GroupMatch,
    #[serde(default)]
    pub description: Option<String>,
}

/// How a role's configured group names are compared with the identity's groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupMatch {
    /// The identity's group must equal the configured name, byte for byte.
    #[default]
    Exact,
    /// Keycloak-style paths: `admins` matches `/admins` and `/org/admins` (whole trailing
    /// path segments); a configured name with a leading `/` must equal the full path.
    Path,
}

/// The trust level column of the seed's zone table; informational only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    High,
    Medium,
    LowMedium,
    Low,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::High => "high",
            Trust::Medium => "medium",
            Trust::LowMedium => "low-medium",
            Trust::Low => "low",
        }
    }
}

/// `[[zone]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub trust: Option<Trust>,
    #[serde(default)]
    pub cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    pub vmids: Vec<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    #[serde(default)]
    pub pools: Vec<Spanned<String>>,
    #[serde(default)]
    pub microsegments: Option<Spanned<RawMicrosegments>>,
    /// `ssh_mode = "gateway"`: SSH sessions into the zone's targets must use the gateway.
    #[serde(default)]
    pub ssh_mode: Option<SshMode>,
    /// `record = true`: sessions into the zone's targets are recorded.
    #[serde(default)]
    pub record: Option<Spanned<bool>>,
    /// `record_input = true`: the zone's recordings capture typed input too.
    #[serde(default)]
    pub record_input: Option<Spanned<bool>>,
    /// `unrecorded_fallback = true`: when the zone's required recording cannot be written,
    /// the session goes on unrecorded instead of the channel being closed.
    #[serde(default)]
    pub unrecorded_fallback: Option<Spanned<bool>>,
    /// `guest_reported_addresses = true`: a discovered guest may be placed in this zone by
    /// an address the guest itself reported (its QEMU agent, or an LXC container's
    /// interfaces). Off by default: a guest chooses those addresses.
    #[serde(default)]
    pub guest_reported_addresses: Option<bool>,
}

/// `microsegments = { vmids_per_segment = 100, prefix_len = 24 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMicrosegments {
    pub vmids_per_segment: u32,
    pub prefix_len: u8,
}

/// `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub ports: Spanned<RawPorts>,
    /// When present, the service exists only in these target zones.
    #[serde(default)]
    pub zones: Option<Vec<Spanned<String>>>,
}

/// The transport of a service. Brokered sessions carry TCP only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    /// Both TCP and UDP on the same ports (e.g. DNS).
    Both,
}

impl Protocol {
    pub fn carries_tcp(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Both => "tcp+udp",
        }
    }
}

/// `ports = [22, "8000-8010"]` or `ports = "any"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPorts {
    Word(String),
    List(Vec<RawPort>),
}

/// One entry of a port list: a number or an inclusive `"low-high"` range.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPort {
    Number(i64),
    Range(String),
}

/// `[[service_set]]`: a name standing for several services wherever services are listed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServiceSet {
    pub name: Spanned<String>,
    pub services: Vec<Spanned<String>>,
}

/// The kind of a matrix cell, in the seed's legend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// `X`: blocked.
    Deny,
    /// `->`: allowed on the network for the listed services.
    Allow,
    /// `0`: reachable only through a Portcullis session, for the listed services.
    BrokerOnly,
    /// `E`: only with mutual TLS between the endpoints; no broker session satisfies it.
    MtlsOnly,
}

impl Access {
    /// The seed's legend symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Access::Deny => "X",
            Access::Allow => "->",
            Access::BrokerOnly => "0",
            Access::MtlsOnly => "E",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Allow => "allow",
            Access::BrokerOnly => "broker-only",
            Access::MtlsOnly => "mtls-only",
        }
    }
}

/// `[[cell]]`: one cell of the matrix, from a source zone to a target zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCell {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub access: Spanned<Access>,
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub same_microsegment: Option<Spanned<bool>>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `[[role]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRole {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub group_match: Option<GroupMatch>,
    #[serde(default)]
    pub permissions: Vec<Spanned<String>>,
    #[serde(default, rename = "grant")]
    pub grants: Vec<RawGrant>,
    #[serde(default)]
    pub constraints: Option<RawConstraints>,
    /// `ssh = { shell = true, ... }`: the SSH channels the role allows in gateway mode;
    /// unset fields (or no `ssh` at all) take the safe defaults.
    #[serde(default)]
    pub ssh: Option<SshRights>,
    #[serde(default)]
    pub ssh_mode: Option<SshMode>,
    /// `record = true`: the role's sessions are recorded.
    #[serde(default)]
    pub record: Option<Spanned<bool>>,
    /// `record_input = true`: the role's recordings capture typed input too.
    #[serde(default)]
    pub record_input: Option<Spanned<bool>>,
    /// Read only to refuse it with a clear message: going on unrecorded is a zone's opt-in.
    #[serde(default)]
    pub unrecorded_fallback: Option<Spanned<bool>>,
    /// `proxmox = { ... }`: the Proxmox identity the role's `proxmox-api` sessions act as.
    #[serde(default)]
    pub proxmox: Option<Spanned<RawProxmoxIdentity>>,
    /// `[role.requestable]`: the role is held only through an approved access request.
    #[serde(default)]
    pub requestable: Option<Spanned<RawRequestable>>,
}

/// `[role.requestable]`: who approves requests for the role, and on what terms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestable {
    #[serde(default)]
    pub approvers: Vec<Spanned<String>>,
    #[serde(default)]
    pub approvals: Option<Spanned<i64>>,
    pub max_duration: Spanned<String>,
    #[serde(default)]
    pub reason_required: bool,
    #[serde(default)]
    pub preapproved: Vec<Spanned<String>>,
    #[serde(default)]
    pub break_glass: Option<Spanned<RawBreakGlass>>,
}

/// `[role.requestable.break_glass]`: self-approval with a mandatory reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreakGlass {
    pub max_duration: Spanned<String>,
}

/// `[[role.grant]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrant {
    pub zones: Vec<Spanned<String>>,
    pub services: Vec<Spanned<String>>,
    #[serde(default)]
    pub logins: Vec<Spanned<String>>,
    #[serde(default)]
    pub ssh_mode: Option<SshMode>,
}

/// `[role.constraints]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConstraints {
    #[serde(default)]
    pub max_session_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub connection_limit: Option<Spanned<u32>>,
    #[serde(default)]
    pub source_zones: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub mfa: Option<Spanned<RawMfa>>,
}

/// `[role.constraints.mfa]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMfa {
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub acr: Vec<String>,
    #[serde(default)]
    pub max_auth_age_secs: Option<u64>,
    /// Lets service accounts (`amr` `svc`) through this requirement: their key stands in for
    /// a second factor. Off unless written.
    #[serde(default)]
    pub service_accounts: bool,
}
