//! The Proxmox VE API: the client (TLS pinned to the cluster's CA or a node
//! certificate's fingerprint, `PVEAPIToken` on every request, failover across the
//! configured URLs) and [`discover`], which turns the cluster's answers into a
//! [`Discovery`]. The parsing of every answer is pure and lives in submodules beside it.
//!
//! Submodules: `client` (HTTPS, the token header, failover), `token` (reading the token),
//! `access` (creating, granting and deleting sessions' tokens, with a token-management
//! client),
//! `discover` (the walk over the API, behind a trait so it is tested on recorded answers),
//! and the pure readers of answers: `wire` (cluster-wide lists), `errors` (error answers in
//! words), `netconf` (`netN`/`ipconfigN`), `interfaces` (what a guest reports, filtered),
//! `sdn` (VNets, subnets, IPAM).

pub(crate) mod access;
mod client;
mod discover;
mod errors;
mod interfaces;
mod netconf;
mod sdn;
mod token;
mod wire;

pub(crate) use client::Client;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;

use crate::catalog::config::{ProxmoxCluster, TokenSource};
use crate::catalog::Discovery;
use crate::secret::SecretString;

/// Which of a cluster's two tokens a client carries: the read-only discovery token, or the
/// token-management token of `[catalog.proxmox.sessions]`. Messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenUse {
    Discovery,
    Sessions,
}

impl TokenUse {
    pub(crate) fn what(self) -> &'static str {
        match self {
            TokenUse::Discovery => "the discovery token",
            TokenUse::Sessions => "the token-management token",
        }
    }
}

/// Why discovery failed: the sync keeps the last good catalog and audits this sentence.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxmoxError {
    /// The discovery token could not be read (file missing, mode wider than 0600, empty,
    /// malformed, Vault refused).
    #[error("{0}")]
    Token(String),
    /// The client could not be built (CA file unreadable...).
    #[error("{0}")]
    Setup(String),
    /// No configured URL answered (connection refused, TLS failure, timeout): each URL and why.
    #[error("no Proxmox API answered: {0}")]
    Unreachable(String),
    /// The API answered with an error: status, the path, and Proxmox's own words (from the
    /// body's `message`/`errors`, or the reason phrase of older servers).
    #[error("{url}: HTTP {status} for {method} {path}: {message}")]
    Api {
        url: String,
        /// `GET` for discovery; token management also sends `POST`, `PUT` and `DELETE`.
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("{url}: {method} {path}: unexpected answer: {message}")]
    BadAnswer {
        url: String,
        method: &'static str,
        path: String,
        message: String,
    },
}

/// Reads the discovery token from its source (a 0600 file, or Vault/OpenBao KV v2 with the
/// controller's own token).
pub(crate) async fn load_token(
    source: &TokenSource,
    vault: Option<&crate::vault::Vault>,
) -> Result<SecretString, ProxmoxError> {
    token::load(source, vault).await
}

/// Reads the token-management token of `[catalog.proxmox.sessions]`, as [`load_token`].
pub(crate) async fn load_sessions_token(
    source: &TokenSource,
    vault: Option<&crate::vault::Vault>,
) -> Result<SecretString, ProxmoxError> {
    token::load_for(source, vault, TokenUse::Sessions).await
}

/// Reads the cluster: nodes (`/nodes`, `/cluster/status`), guests (`/cluster/resources?type=vm`),
/// each guest's configured addresses, SDN where configured, and only as a fallback the agent
/// or container interfaces. Failures of one guest's optional calls (agent not running, VM
/// stopped, `Unsupported`) are notes, not errors; a failure of the cluster-wide calls is.
pub(crate) async fn discover(
    cluster: &ProxmoxCluster,
    client: &Client,
) -> Result<Discovery, ProxmoxError> {
    let (api, nodes) = client.first("nodes").await?;
    let walk = discover::Walk {
        cluster: cluster.name.clone(),
        url: api.url().to_string(),
        guest_agent: cluster.guest_agent,
        sdn: cluster.sdn,
    };
    discover::run(&walk, &api, nodes).await
}
