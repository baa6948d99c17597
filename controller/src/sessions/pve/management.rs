//! The token-management client of a cluster's `[catalog.proxmox.sessions]`: the I/O the
//! mint, the deletion and their job share.

use crate::catalog::proxmox::{self, ProxmoxError};
use crate::state::AppState;

/// The token-management client of cluster `name` (its `[catalog.proxmox.sessions]` token,
/// read afresh each time so that a rotated file or Vault secret takes effect at once).
pub(crate) async fn management_client(
    state: &AppState,
    name: &str,
) -> Result<proxmox::Client, ProxmoxError> {
    let cluster = state
        .config
        .catalog
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            ProxmoxError::Setup(format!(
                "the Proxmox cluster {name:?} is no longer configured; add its \
                 [[catalog.proxmox]] with its sessions table back to finish its tokens"
            ))
        })?;
    let sessions = cluster.sessions.as_ref().ok_or_else(|| {
        ProxmoxError::Setup(format!(
            "the Proxmox cluster {name:?} has no [catalog.proxmox.sessions] table any more; add \
             it back to finish its sessions' tokens"
        ))
    })?;
    let token = proxmox::load_sessions_token(&sessions.token, state.vault.as_ref()).await?;
    proxmox::Client::for_sessions(cluster, token)
}
