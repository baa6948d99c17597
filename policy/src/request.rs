//! What the controller asks, and what the policy answers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A request for a session (or, with `via_broker: false`, a direct flow) to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client's address as the controller sees it: the TCP peer, or the PROXY protocol
    /// source when the peer is a configured load balancer. It decides the source zone.
    pub source: IpAddr,
    pub target: TargetFacts,
    pub identity: Identity,
    /// `true` for a Portcullis session; `false` asks whether the network alone allows a
    /// direct flow (identities are then not consulted).
    pub via_broker: bool,
}

/// What is known about a target. Its zone comes from `ip`; the other selectors must agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFacts {
    /// The target's resolved address.
    pub ip: IpAddr,
    pub port: u16,
    pub vmid: Option<u32>,
    pub tags: Vec<String>,
    pub pool: Option<String>,
    /// A zone the target claims to be in; refused when it disagrees with the address.
    pub declared_zone: Option<String>,
    /// The target's service; when absent, the services using `port` are tried in file order.
    pub service: Option<String>,
}

/// The `amr` value that marks a service account: an automation identity that authenticated
/// by a key-signed assertion, not a person. Only the controller's service-token exchange sets
/// it; a role's MFA requirement refuses it unless the role admits service accounts
/// (`[role.constraints.mfa] service_accounts = true`).
pub const SERVICE_ACCOUNT_AMR: &str = "svc";

/// Who asks, as the identity provider said.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    pub subject: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// Authentication methods (OIDC `amr`), e.g. `pwd`, `otp`, `mfa`.
    pub amr: Vec<String>,
    /// Authentication context class (OIDC `acr`).
    pub acr: Option<String>,
    /// When the user authenticated (OIDC `auth_time`, unix seconds).
    pub auth_time: Option<u64>,
    /// Roles an approved access request grants for this evaluation only; the controller sets
    /// them for requests covering the target. A granted role counts as a member only if it
    /// is requestable; any other is ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted_roles: Vec<String>,
}

impl Identity {
    /// Whether this is a service account ([`SERVICE_ACCOUNT_AMR`] among its `amr`).
    pub fn is_service_account(&self) -> bool {
        self.amr.iter().any(|a| a == SERVICE_ACCOUNT_AMR)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        }
    }
}

/// The answer, with everything needed to audit and explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
    pub source_zone: Option<String>,
    pub target_zone: Option<String>,
    pub service: Option<String>,
    /// The matrix cells and role rules that decided, e.g.
    /// `ON-PREM-ADMIN -> PROXMOX-MGMT: broker-only [proxmox-api]`.
    pub cells: Vec<String>,
    /// The roles that granted the request (empty on a deny).
    pub roles: Vec<String>,
    /// On a deny by the role check (the matrix admitted the request): the role rule that
    /// failed, e.g. ``role `ops` grants `ssh` in DMZ: unmet: only from its source zones``.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_rule: Option<String>,
    pub constraints: Constraints,
    /// On an allowed `proxmox-api` session: the Proxmox identity its token acts as, from the
    /// one granting role that names one. `None`: no granting role names one, and the session
    /// is a plain tunnel (no token is injected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<crate::proxmox_access::ProxmoxGrant>,
    /// Hex SHA-256 of the policy file that decided.
    pub policy_hash: String,
    /// On a deny where a granting role's only unmet constraint is its MFA requirement: what a
    /// fresh login must show for that role to grant it (a step-up). Never for a service
    /// account, which cannot log in again interactively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUp>,
}

/// What a step-up login must show: one of `amr`, or an `acr` among `acr`, at an
/// authentication no older than the challenge that asks for it (and than
/// `max_auth_age_secs`, the role's own limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// The role that would grant the request.
    pub role: String,
    pub amr: Vec<String>,
    pub acr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_auth_age_secs: Option<u64>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}

/// Limits on an allowed session: the most generous the granting roles give, per field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Constraints {
    /// `None`: no limit from the policy.
    pub max_session_secs: Option<u64>,
    /// `None`: no limit from the policy.
    pub connection_limit: Option<u32>,
    /// Rendered login names (e.g. SSH principals), in file order, without duplicates.
    pub logins: Vec<String>,
    /// How an SSH session runs (certificate or gateway) and, in gateway mode, which channels
    /// it may open: the strictest mode and the most generous rights of the granting roles.
    #[serde(default)]
    pub ssh: crate::ssh::SshAccess,
    /// Whether the session is recorded, with typed input, and what a recording that cannot
    /// be written does: required when the target zone or any granting role requires it.
    #[serde(default)]
    pub recording: crate::recording::Recording,
}
