//! Per-session Proxmox API tokens (issue 20; the wire types in `portcullis_proto::pve`).
//!
//! A target is *injecting* when its `proxmox_cluster` names a `[[catalog.proxmox]]` with a
//! `[catalog.proxmox.sessions]` table, or when it is a discovered node's `proxmox-api`
//! target of such a cluster ([`injecting`]). A session to it runs one way:
//!
//! 1. the pure plan (`super::plan`, with [`plan_mint`]) decides the Proxmox user
//!    (`{policy user}@{realm}`), checks the policy's paths against the configured ones, and
//!    makes the token's intent row and the grant's `pve` claim;
//! 2. `issue` commits the session (`minting`), the intent and `session_authorized` in one
//!    transaction, before Proxmox is called;
//! 3. [`mint`] creates the token (`expire` = the session's end, `privsep=1`), grants the
//!    policy's roles on its paths, seals the secret into the row (AES-256-GCM under the master
//!    key, bound to the session id) and commits `pve_token_minted`; a failure audits
//!    `pve_token_mint_failed` and ends the session;
//! 4. the worker fetches the token over the link ([`credential`]) and injects it;
//! 5. the session's end marks the row `revoking` and wipes the secret in its transaction;
//!    [`revoke`] deletes the token and checks its ACL entries gone, retried with backoff by
//!    [`job`] (one controller at a time, under a store lease) across Proxmox outages and
//!    restarts; an intent whose controller died is ended and deleted by the derived token id.
//!
//! The secret is only ever in Proxmox's answer, the sealed row, the controller's memory while
//! it seals or opens it, and the link answer to the worker: never in a log or an event.

use portcullis_policy::Decision;
use portcullis_proto::pve::{token_name_for, ProxmoxSession, PveClaims};

use super::error::SessionError;
use crate::catalog::config::{ProxmoxCluster, ProxmoxSessions};
use crate::store::pve_tokens::{TokenRecord, TokenState};
use crate::store::targets::TargetRecord;

pub(crate) mod credential;
pub(crate) mod job;
mod management;
pub(crate) mod mint;
pub(crate) mod revoke;

use management::management_client;

/// The cluster that mints a session's token to an injecting target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PveFacts<'a> {
    pub cluster: &'a str,
    pub sessions: &'a ProxmoxSessions,
    /// Hex SHA-256 of the CLI's local secret, when it serves the session on a TCP port.
    pub local_secret_sha256: Option<&'a str>,
}

/// What an injecting session's token will be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PveMint {
    pub cluster: String,
    /// `USER@REALM`.
    pub userid: String,
    pub token_name: String,
    pub roles: Vec<String>,
    pub paths: Vec<String>,
    /// Unix seconds: the token's `expire`, the session's end.
    pub expires_at: u64,
    pub access_writes: bool,
    pub local_secret_sha256: Option<String>,
}

impl PveMint {
    /// `USER@REALM!TOKENNAME`.
    pub(crate) fn token_id(&self) -> String {
        format!("{}!{}", self.userid, self.token_name)
    }

    /// The grant's claim: what the worker's proxy enforces.
    pub(crate) fn claims(&self) -> PveClaims {
        PveClaims {
            tok: self.token_id(),
            lsh: self.local_secret_sha256.clone(),
            aw: self.access_writes,
        }
    }

    /// What the authorisation tells the client (no secret).
    pub(crate) fn session(&self) -> ProxmoxSession {
        ProxmoxSession {
            cluster: self.cluster.clone(),
            token_id: self.token_id(),
            roles: self.roles.clone(),
            paths: self.paths.clone(),
            expires_at: self.expires_at,
            access_writes: self.access_writes,
        }
    }

    /// The intent row committed with the session.
    pub(crate) fn intent(&self, session_id: &str, now: i64) -> TokenRecord {
        TokenRecord {
            session_id: session_id.to_owned(),
            cluster: self.cluster.clone(),
            userid: self.userid.clone(),
            token_name: self.token_name.clone(),
            state: TokenState::Intent,
            secret: None,
            roles: self.roles.clone(),
            paths: self.paths.clone(),
            expires_at: i64::try_from(self.expires_at).unwrap_or(i64::MAX),
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The audit event's details (the token id, never the secret).
    pub(crate) fn details(&self) -> crate::audit::event::PveToken {
        crate::audit::event::PveToken {
            cluster: self.cluster.clone(),
            token_id: self.token_id(),
            roles: self.roles.clone(),
            paths: self.paths.clone(),
            expires_at: self.expires_at,
            privsep: true,
        }
    }
}

/// The associated data a token's secret is sealed with: the session it belongs to, so a
/// sealed secret moved to another row does not open.
pub(crate) fn seal_context(session_id: &str) -> String {
    format!("pve_tokens:{session_id}")
}

/// The cluster whose `[catalog.proxmox.sessions]` mints a token for each session to
/// `target`, or none for a plain tunnel. A target that names a cluster this controller has
/// no sessions table for is refused, never tunnelled raw.
pub(crate) fn injecting<'c>(
    target: &TargetRecord,
    clusters: &'c [ProxmoxCluster],
) -> Result<Option<(&'c str, &'c ProxmoxSessions)>, SessionError> {
    let with_sessions = |name: &str| {
        clusters
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.sessions.as_ref().map(|s| (c.name.as_str(), s)))
    };
    if let Some(name) = &target.proxmox_cluster {
        return with_sessions(name)
            .map(Some)
            .ok_or_else(|| SessionError::ProxmoxNotConfigured {
                target: target.name.clone(),
                cluster: name.clone(),
            });
    }
    let discovered_node_api = target.service.as_deref()
        == Some(portcullis_policy::PROXMOX_API_SERVICE)
        && target
            .source_key
            .as_deref()
            .is_some_and(|key| key.starts_with("node/"));
    match (&target.source, discovered_node_api) {
        (Some(cluster), true) => Ok(with_sessions(cluster)),
        _ => Ok(None),
    }
}

/// The token of an allowed session to an injecting target, or the reason it is denied: the
/// policy must name a Proxmox identity (`decision.proxmox`), and each of its paths must be
/// one of the configured paths or below one.
pub(crate) fn plan_mint(
    pve: &PveFacts<'_>,
    decision: &Decision,
    session_id: &str,
    expires_at: u64,
) -> Result<PveMint, String> {
    let Some(grant) = &decision.proxmox else {
        return Err(
            "no role names a Proxmox identity for this target: add `proxmox = { user = ..., \
             roles = [...], paths = [...] }` to the role that grants it (docs/policy.md)"
                .into(),
        );
    };
    if let Some(outside) = grant.paths.iter().find(|p| !pve.sessions.covers(p)) {
        return Err(format!(
            "the policy grants Proxmox roles on {outside}, outside the paths cluster {} may \
             grant on ([catalog.proxmox.sessions] paths = {:?})",
            pve.cluster, pve.sessions.paths
        ));
    }
    if grant.roles.is_empty() || grant.paths.is_empty() {
        return Err("the policy's Proxmox identity names no role or no path".into());
    }
    Ok(PveMint {
        cluster: pve.cluster.to_owned(),
        userid: format!("{}@{}", grant.user, pve.sessions.realm),
        token_name: token_name_for(session_id),
        roles: grant.roles.clone(),
        paths: grant.paths.clone(),
        expires_at,
        access_writes: grant.access_writes,
        local_secret_sha256: pve.local_secret_sha256.map(str::to_owned),
    })
}

/// The comment Proxmox shows beside the token (`pveum user token list`).
pub(crate) fn comment(session_id: &str, username: &str) -> String {
    let username: String = username
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    format!("portcullis session {session_id} of {username}")
}

#[cfg(test)]
mod tests;
