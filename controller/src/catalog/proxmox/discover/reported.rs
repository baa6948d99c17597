//! The fallback of a running guest without a configured address: what it reports itself
//! (the QEMU agent's `network-get-interfaces`, a container's `/interfaces`), or a note
//! saying why there is nothing: no agent configured, the agent or the VM not running, an
//! agent that cannot answer (`Unsupported`, `CommandDisabled`), a missing privilege, an
//! endpoint the server lacks.

use super::super::interfaces::{self, AgentReply};
use super::{short, Api};
use crate::catalog::proxmox::ProxmoxError;

/// The QEMU agent's interfaces, or a note saying why there are none.
pub(super) async fn agent<A: Api>(
    api: &A,
    base: &str,
    label: &str,
    notes: &mut Vec<String>,
) -> Option<Vec<interfaces::ReportedNic>> {
    match api
        .get(&format!("{base}/agent/network-get-interfaces"))
        .await
    {
        Ok(data) => match interfaces::agent(&data) {
            Ok(AgentReply::Interfaces(nics)) => Some(nics),
            Ok(AgentReply::Refused { class, desc }) => {
                let desc = desc.map(|d| format!(": {d}")).unwrap_or_default();
                notes.push(format!(
                    "{label}: its guest agent does not answer network-get-interfaces ({class}{desc}); set a cloud-init address (ipconfigN) instead"
                ));
                None
            }
            Err(m) => {
                notes.push(format!(
                    "{label}: its guest agent's answer was not understood ({m})"
                ));
                None
            }
        },
        Err(ProxmoxError::Api {
            status, message, ..
        }) => {
            let why = if message.contains("No QEMU guest agent configured") {
                "no guest agent is configured (set agent=1 and install qemu-guest-agent, or give it a cloud-init address)".to_owned()
            } else if message.contains("QEMU guest agent is not running") {
                "its guest agent is not running (start qemu-guest-agent in the guest)".to_owned()
            } else if message.contains("is not running") {
                "the VM is not running".to_owned()
            } else if status == 403 {
                format!("the token may not ask guest agents (grant VM.GuestAgent.Audit on PVE 9, VM.Monitor on PVE 8 and earlier): {message}")
            } else {
                format!("its guest agent did not answer (HTTP {status}: {message})")
            };
            notes.push(format!("{label}: no address: {why}"));
            None
        }
        Err(e) => {
            notes.push(format!(
                "{label}: its guest agent could not be asked ({})",
                short(&e)
            ));
            None
        }
    }
}

/// A running container's interfaces, or a note saying why there are none.
pub(super) async fn container<A: Api>(
    api: &A,
    base: &str,
    label: &str,
    notes: &mut Vec<String>,
) -> Option<Vec<interfaces::ReportedNic>> {
    match api.get(&format!("{base}/interfaces")).await {
        Ok(data) => match interfaces::lxc(&data) {
            Ok(nics) if nics.is_empty() => {
                notes.push(format!("{label}: the container reported no interfaces"));
                None
            }
            Ok(nics) => Some(nics),
            Err(m) => {
                notes.push(format!("{label}: its interfaces were not understood ({m})"));
                None
            }
        },
        Err(ProxmoxError::Api { status: 501, .. }) => {
            notes.push(format!(
                "{label}: no address: this Proxmox has no container interfaces endpoint (pve-container 5.0.6 or later has it); set a static ip= on its netN"
            ));
            None
        }
        Err(e) => {
            notes.push(format!(
                "{label}: its interfaces could not be read ({})",
                short(&e)
            ));
            None
        }
    }
}
