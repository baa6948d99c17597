//! The host catalog's API: targets discovered from Proxmox clusters (docs/proxmox.md).
//!
//! - `GET /v1/catalog` ([`CatalogStatus`]): each configured cluster's last sync and its
//!   discovered targets (any signed-in user; `targets:admin` is not needed to read).
//! - `POST /v1/catalog/sync` ([`SyncRequest`] → [`SyncReport`]): sync now, or only show
//!   what a sync would change (`dry_run`); needs `targets:admin`.
//! - `GET /v1/inventory` ([`Inventory`]): the targets the caller may reach now, with what
//!   an Ansible inventory groups them by.

use serde::{Deserialize, Serialize};

/// Where a discovered target came from (`Target::source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSource {
    /// `proxmox`.
    pub kind: String,
    /// The `[[catalog.proxmox]]` name.
    pub cluster: String,
    /// `qemu/100`, `lxc/101`, `node/pve1`, plus `#SERVICE` for a guest's further services.
    pub key: String,
    /// The Proxmox node the guest runs on (the node itself for a node target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `qemu`, `lxc` or `node`.
    pub guest_type: String,
    /// The guest's status as Proxmox reported it (`running`, `stopped`, ...; `online` or
    /// `offline` for a node); `template` for a template.
    pub status: String,
    /// Where the address came from: `cloud-init`, `lxc-config`, `sdn-ipam`, `guest-agent`,
    /// `lxc-interfaces`, `cluster-status`. `guest-agent` and `lxc-interfaces` are chosen
    /// by the guest itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_origin: Option<String>,
    /// Fields an admin changed on this target that the sync keeps (`service`, `address`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// When the sync last saw it (Unix seconds).
    pub seen_at: u64,
}

/// `POST /v1/catalog/sync`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Only this cluster; none: every configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Discover and compute the changes, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a sync did (or, dry, would do), per cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub clusters: Vec<ClusterSync>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSync {
    pub cluster: String,
    /// `ok`, `failed` (the last good catalog stays; `error` says why) or `busy` (another
    /// controller is syncing this cluster now).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The API URL that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub guests: u32,
    pub nodes: u32,
    pub changes: Vec<CatalogChange>,
    pub unchanged: u32,
    /// Live sessions the changes ended (none on a dry run).
    pub sessions_ended: u32,
    /// Things worth knowing that changed nothing (an agent that is not running, an
    /// address skipped as link-local...), one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One change of the catalog: a line of `portcullis catalog sync`'s diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChange {
    /// `added`, `changed`, `removed` or `refused`.
    pub kind: String,
    /// `qemu/100`, `node/pve1`, ... (see [`TargetSource::key`]).
    pub key: String,
    /// The target's name (for `refused`: the name it would have had).
    pub name: String,
    /// Per changed field: (`field`, before, after). Empty for `added`/`removed`/`refused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Why (`removed`: `gone` or `refused`; `refused`: the sentence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `GET /v1/catalog`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogStatus {
    pub clusters: Vec<ClusterStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub urls: Vec<String>,
    /// Seconds between syncs.
    pub interval_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<u64>,
    /// Why the last sync failed; none when it succeeded. While set, the targets below are
    /// the last good sync's (`stale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub stale: bool,
    pub guests: u32,
    pub nodes: u32,
    /// Guests refused, key → reason.
    #[serde(default)]
    pub refused: std::collections::BTreeMap<String, String>,
    pub targets: Vec<crate::api::Target>,
}

/// `GET /v1/inventory`: what the caller may reach now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inventory {
    pub hosts: Vec<InventoryHost>,
}

/// One reachable target, with what an inventory groups it by.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InventoryHost {
    /// The target's name: the host name ssh and Ansible use.
    pub name: String,
    pub zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `HOST:PORT` the worker dials.
    pub address: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TargetSource>,
}
