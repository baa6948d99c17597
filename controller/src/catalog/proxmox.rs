//! The Proxmox VE API, read-only: the client (TLS pinned to the cluster's CA or a node
//! certificate's fingerprint, `PVEAPIToken` on every request, failover across the
//! configured URLs) and [`discover`], which turns the cluster's answers into a
//! [`Discovery`]. The parsing of every answer is pure and lives in submodules beside it.
//!
//! CONTRACT (session 9): the signatures below are what `sync` calls; the bodies are the
//! discovery helper's to write.

use crate::catalog::config::{ProxmoxCluster, TokenSource};
use crate::catalog::Discovery;
use crate::secret::SecretString;

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
    #[error("{url}: HTTP {status} for GET {path}: {message}")]
    Api {
        url: String,
        path: String,
        status: u16,
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("{url}: GET {path}: unexpected answer: {message}")]
    BadAnswer {
        url: String,
        path: String,
        message: String,
    },
}

/// A client for one cluster.
pub(crate) struct Client {
    _private: (),
}

impl Client {
    /// A client for `cluster`'s URLs with `token` (`USER@REALM!TOKENID=SECRET`).
    pub(crate) fn new(
        cluster: &ProxmoxCluster,
        token: SecretString,
    ) -> Result<Client, ProxmoxError> {
        let _ = (cluster, token);
        Err(ProxmoxError::Setup("not built yet".into()))
    }
}

/// Reads the discovery token from its source (a 0600 file, or Vault/OpenBao KV v2 with the
/// controller's own token).
pub(crate) async fn load_token(
    source: &TokenSource,
    vault: Option<&crate::vault::Vault>,
) -> Result<SecretString, ProxmoxError> {
    let _ = (source, vault);
    Err(ProxmoxError::Token("not built yet".into()))
}

/// Reads the cluster: nodes (`/nodes`, `/cluster/status`), guests (`/cluster/resources?type=vm`),
/// each guest's configured addresses, SDN where configured, and only as a fallback the agent
/// or container interfaces. Failures of one guest's optional calls (agent not running, VM
/// stopped, `Unsupported`) are notes, not errors; a failure of the cluster-wide calls is.
pub(crate) async fn discover(
    cluster: &ProxmoxCluster,
    client: &Client,
) -> Result<Discovery, ProxmoxError> {
    let _ = (cluster, client);
    Err(ProxmoxError::Setup("not built yet".into()))
}
