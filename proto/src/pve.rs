//! Proxmox API sessions (issue 20): the wire types of a session whose worker injects a
//! Proxmox API token minted for it.
//!
//! A target with `proxmox_cluster` set (a `[[catalog.proxmox]]` entry with a `sessions`
//! table) is an *injecting* Proxmox API target. Authorising a session to it:
//! 1. the controller commits the session (`minting`), the token's intent row and the audit
//!    event, then asks Proxmox for a token `USER@REALM!TOKENID` ([`token_id_for`]) with
//!    `expire` = the session's end and `privsep=1`, and grants the policy's roles on the
//!    policy's paths to it through the ACL API; the secret is sealed into the intent row;
//! 2. the grant carries [`PveClaims`] and the authorisation a [`ProxmoxSession`] (no
//!    secret); the CLI serves the session locally (a 0600 unix socket, or loopback HTTPS
//!    requiring the local secret whose SHA-256 it sent with authorize-session);
//! 3. the worker terminates the client's HTTP on the brokered connection, asks for the
//!    [`Credential`] over the cluster link (once per session), and sends every vetted request
//!    over HTTPS to Proxmox with `Authorization: PVEAPIToken=...`, reporting each as an
//!    [`ApiRequest`] connection event (audited as `pve_request`);
//! 4. at the session's end the controller deletes the token and checks its ACL entries gone,
//!    retrying across Proxmox outages and controller restarts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The token id the CLI hands a local client (`--exec`), before `=` and the local secret:
/// `PVEAPIToken=portcullis@local!session=<local secret>`. Clients built for Proxmox tokens
/// (proxmoxer, the bpg Terraform provider, Ansible's `community.proxmox`) send it as they
/// would a real token; the worker checks the secret part and strips the header.
pub const LOCAL_TOKEN_USER: &str = "portcullis@local";
/// The token name half of [`LOCAL_TOKEN_USER`]'s token id.
pub const LOCAL_TOKEN_NAME: &str = "session";

/// A dedicated header that carries the local secret too (for clients that send their own
/// `Authorization`, or none): `X-Portcullis-Session-Secret: <local secret>`.
pub const LOCAL_SECRET_HEADER: &str = "x-portcullis-session-secret";

/// The Proxmox token name (the part after `!`) of session `session_id`: `pc-` and the
/// session id's letters and digits, at most 60 characters, so that a sweeper can delete a
/// session's token knowing only the session id, whether or not creation happened.
pub fn token_name_for(session_id: &str) -> String {
    let mut name = String::from("pc-");
    name.extend(
        session_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(57),
    );
    name
}

/// `USER@REALM!TOKENNAME`, the full token id Proxmox names a token by.
pub fn token_id_for(userid: &str, session_id: &str) -> String {
    format!("{userid}!{}", token_name_for(session_id))
}

/// In the grant of an injecting Proxmox API session ([`crate::grant::GrantClaims::pve`]):
/// what the worker's proxy enforces. A worker that does not know this claim refuses the
/// grant (unknown fields are refused), so an old worker never tunnels such a session raw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PveClaims {
    /// The full token id the session acts as (`USER@REALM!TOKENNAME`), never its secret.
    pub tok: String,
    /// Hex SHA-256 of the local secret, when the CLI serves the session on a TCP port: every
    /// request must carry the secret ([`LOCAL_SECRET_HEADER`], or the secret part of a
    /// `PVEAPIToken` `Authorization`), compared in constant time, then stripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsh: Option<String>,
    /// Writes under `/api2/json/access/` go through (the policy's `access_writes`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aw: bool,
}

/// Worker → controller: the token of the injecting session of `grant`. The controller
/// verifies its own grant, checks that the session is live, injecting and carried by this
/// worker, and answers with the sealed secret opened ([`Credential`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub grant: String,
}

/// The controller's answer to a [`CredentialRequest`]: where to send requests, how to check
/// Proxmox's certificate, and the token. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// `USER@REALM!TOKENNAME`.
    pub token_id: String,
    /// The token's secret (a UUID as Proxmox makes them). Only ever in this message, the
    /// worker's memory and the controller's sealed intent row.
    pub secret: String,
    /// Unix seconds: the token's `expire`, the session's end.
    pub expires_at: u64,
    /// The name the worker sends as SNI and checks the certificate for (a DNS name or an
    /// IP address, from the target's address), and the `Host` of every request with the
    /// endpoint's port.
    pub server_name: String,
    /// `host:port` for the `Host` header.
    pub authority: String,
    /// How the worker checks Proxmox's certificate: the cluster's CA (PEM), or the SHA-256
    /// fingerprint of the node's certificate (hex, colons allowed), exactly one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("token_id", &self.token_id)
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("server_name", &self.server_name)
            .field("authority", &self.authority)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// In the session authorisation of an injecting Proxmox API session: what the CLI shows and
/// how it serves the session. No secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxmoxSession {
    /// The `[[catalog.proxmox]]` cluster.
    pub cluster: String,
    /// `USER@REALM!TOKENNAME`: who requests act as.
    pub token_id: String,
    /// Proxmox roles and the ACL paths they were granted on.
    pub roles: Vec<String>,
    pub paths: Vec<String>,
    /// Unix seconds: the token's `expire`.
    pub expires_at: u64,
    /// Whether writes under `/api2/json/access/` go through.
    #[serde(default)]
    pub access_writes: bool,
}

/// One request through the worker's proxy, as the session's record keeps it: no body, no
/// header, every query value redacted. Reported as a connection event and audited as
/// `pve_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRequest {
    pub method: String,
    /// The path with each query value replaced by `REDACTED` (`/api2/json/nodes?type=...`).
    pub path: String,
    /// The status Proxmox answered, or the proxy's own refusal status.
    pub status: u16,
    /// Request body bytes sent upstream, response body bytes sent back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Milliseconds from the request head to the response's end.
    pub millis: u64,
    /// When the proxy refused the request itself: its rule, in snake case
    /// (`access_write`, `local_secret`, `upgrade`, ...); then nothing went upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_follow_the_session_id_and_fit_proxmox() {
        assert_eq!(token_name_for("s_0123-abcd"), "pc-s0123abcd");
        let long = "x".repeat(200);
        assert_eq!(token_name_for(&long).len(), 60);
        assert_eq!(
            token_id_for("pc-alice@pve", "s-1"),
            "pc-alice@pve!pc-s1".to_string()
        );
    }

    #[test]
    fn a_credentials_debug_prints_no_secret() {
        let c = Credential {
            token_id: "u@pve!pc-1".into(),
            secret: "5f0c6bd2-5b3e-4f1e-9c6a-000000000000".into(),
            expires_at: 1,
            server_name: "pve1".into(),
            authority: "pve1:8006".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
            fingerprint: None,
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("5f0c6bd2"), "{printed}");
        assert!(!printed.contains("BEGIN"), "{printed}");
    }

    #[test]
    fn claims_refuse_unknown_fields_and_omit_defaults() {
        let claims = PveClaims {
            tok: "u@pve!pc-1".into(),
            lsh: None,
            aw: false,
        };
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            r#"{"tok":"u@pve!pc-1"}"#
        );
        assert!(serde_json::from_str::<PveClaims>(r#"{"tok":"a","x":1}"#).is_err());
    }
}
