//! The SSH gateway's wire types: what a worker in gateway mode asks the controller over the
//! cluster link, and the refused channels it reports as connection events.
//!
//! In gateway mode (`ssh_mode = "gateway"` in the policy) the worker terminates the user's
//! SSH connection inside the brokered session and logs into the target itself, with a key it
//! made in memory for the session and a certificate the controller mints for that key. The
//! user's client authenticates to the gateway with the per-session key bound in the grant
//! ([`crate::grant::GatewayClaims`]) and checks the gateway's host certificate, issued by the
//! controller's `ssh-host-ca` key for [`HOST_ALIAS`].

use serde::{Deserialize, Serialize};

/// The one name in every gateway host certificate. Clients check the gateway under this name
/// (`HostKeyAlias`), and the `@cert-authority` line `ssh-config` writes trusts the host CA for
/// this name only, never `*`.
pub const HOST_ALIAS: &str = "portcullis-gateway";

/// Worker → controller: certify `public_key` (OpenSSH text) for the session of `grant`, so
/// the worker can log into the target. The controller verifies its own grant, checks that
/// the session is live, in gateway mode and carried by this worker, and mints with the
/// session's backend (the embedded CA or Vault): key id = session id, principals = the
/// grant's logins, `source-address` = the worker's egress, valid until the session ends,
/// revoked with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub grant: String,
    pub public_key: String,
}

/// The controller's answer to a [`CredentialRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The OpenSSH user certificate for the worker's key.
    pub certificate: String,
    /// Unix seconds.
    pub valid_before: u64,
    /// How the worker checks the target's host key: the target's pinned keys (OpenSSH public
    /// key lines) and the host CAs whose certificates it trusts. Both empty: the worker
    /// refuses to log in (fail closed).
    pub host_keys: Vec<String>,
    pub host_cas: Vec<String>,
    /// The target's name, for messages (a host key mismatch names it).
    pub target_name: String,
}

/// Worker → controller: a gateway session asks for a `direct-tcpip` channel to `host:port`
/// (as the user's client wrote them) that is not the target's own loopback. The controller
/// resolves `host` once and runs the whole policy for the session's user (its source zone,
/// broker to the destination, the role) as a new session of that user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VetForward {
    /// The gateway session the channel was asked for in.
    pub session_id: String,
    /// The connection (the user's SSH connection) it was asked on.
    pub connection_id: String,
    pub host: String,
    pub port: u16,
}

/// The controller's yes to a [`VetForward`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VettedForward {
    /// The only endpoint the worker may dial: `IP:PORT`, never a name.
    pub endpoint: String,
    /// The new session the forward runs as; its connection events name it.
    pub session_id: String,
    /// Unix seconds: no later than the gateway session's end.
    pub expires_at: u64,
}

/// A channel or request the gateway refused, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRefusal {
    /// What was asked, in the SSH protocol's words: `direct-tcpip`, `tcpip-forward`,
    /// `auth-agent-req@openssh.com`, `x11-req`, `subsystem`, `shell`, `exec`...
    pub channel: String,
    /// For forwards, `host:port` as the client wrote it; for a subsystem, its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The SSH user name the user logged into the gateway as.
    pub login: String,
    /// What refused it: the role's `ssh` right that is off (`ssh.forward_local`), or the
    /// controller's words when it refused a forward (they name the matrix cell).
    pub rule: String,
}

/// The text of a `ChannelRefusal`'s rule for a right the session lacks.
pub fn rule_for_right(right: &str) -> String {
    format!("ssh.{right} is not granted to the session's roles")
}
