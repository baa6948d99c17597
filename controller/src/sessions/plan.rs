//! The decision of authorize-session, without I/O: from the facts read for one request it
//! returns everything the session needs (its row, the grant's claims, the certificate and
//! the Vault credentials to ask for, the `session_authorized` event), or the refusal with
//! the event that records it.
//!
//! The checks run in a fixed order and the first that fails decides: the per-user rate
//! ([`check_rate`], before the target's name is resolved), the target's availability
//! ([`check_available`]: a discovered template or stopped guest), the address and the policy
//! ([`decide`]), then the live-session limit, a worker, the SSH logins, an injecting target's
//! Proxmox identity and paths (`super::pve::plan_mint`) and the Vault settings ([`plan`]).
//! Nothing here signs, writes or mints; signing takes a [`Plan`], and a plan
//! exists only when every check passed.
//!
//! An SSH session runs in the mode the policy decided (`decision.constraints.ssh`): in
//! certificate mode the user's key is certified (by the embedded CA or Vault); in gateway
//! mode nothing is certified for the user: the grant carries the key, logins and channel
//! rights the worker's SSH gateway enforces ([`GatewayClaims`]), and the gateway's own login
//! to the target is minted later, for a key the worker makes (`crate::gateway::credential`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use portcullis_policy::{Decision, Outcome, Policy, SshMode};
use portcullis_proto::grant::{GatewayClaims, GrantClaims, GRANT_ISSUER};

use super::error::SessionError;
use super::limits::RateCheck;
use crate::api::extract::Principal;
use crate::audit::AuditEvent;
use crate::store::session_list::Decided;
use crate::store::sessions::{SessionRecord, SessionState};
use crate::store::targets::TargetRecord;
use crate::store::workers::WorkerRecord;

/// A refused request: the error for the caller and the event that records the refusal
/// (none for a refusal that is not audited, such as a repeated rate-limit hit).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub error: SessionError,
    pub event: Option<Box<AuditEvent>>,
    /// A denial only for a role's MFA constraint: what a step-up login must show.
    pub step_up: Option<Box<portcullis_policy::StepUp>>,
}

/// The facts [`plan`] decides on, read once by the caller.
pub(crate) struct Facts<'a> {
    pub now: u64,
    pub principal: &'a Principal,
    pub target: &'a TargetRecord,
    pub endpoint: SocketAddr,
    /// The policy's decision, an allow ([`decide`]).
    pub decision: &'a Decision,
    /// The user's live sessions, counted when `settings.max_live` is set.
    pub live_sessions: Option<i64>,
    /// The worker chosen to carry the session, if any is live.
    pub worker: Option<&'a WorkerRecord>,
    pub client_spki: &'a [u8],
    pub ssh_public_key: Option<&'a str>,
    pub settings: Settings<'a>,
    pub keys: KeyIds<'a>,
    pub ids: NewIds,
    /// The cluster that mints the session's Proxmox API token, when the target is an
    /// injecting one (`super::pve::injecting`).
    pub pve: Option<super::pve::PveFacts<'a>>,
    /// The approved access request the session opens under, when standing roles did not
    /// allow it (`crate::access::covering`).
    pub access: Option<UnderAccess<'a>>,
    /// The step-up challenge whose proof came with the request: spent by the session's
    /// commit, named in its event.
    pub step_up: Option<&'a str>,
}

/// The approved access request a session opens under: its id goes on the row and the event,
/// and the session ends no later than the request's window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnderAccess<'a> {
    pub request_id: &'a str,
    pub expires_at: u64,
}

/// The controller's configuration, as far as a session's plan reads it.
pub(crate) struct Settings<'a> {
    /// `sessions.per_user.max_live`; 0 is no limit.
    pub max_live: u32,
    pub ssh_certificate_ttl: Duration,
    /// When `ssh.backend = "vault"`: the SSH mount and role a target without its own uses.
    pub vault: Option<VaultDefaults<'a>>,
}

pub(crate) struct VaultDefaults<'a> {
    pub ssh_mount: &'a str,
    pub ssh_role: Option<&'a str>,
}

/// The ids of the keys that will sign, for the audit event.
pub(crate) struct KeyIds<'a> {
    pub grant: &'a str,
    /// The embedded SSH CA's key, loaded when the request sends an SSH key and Vault is not
    /// the backend ([`signs_embedded_certificate`]).
    pub ssh_ca: Option<&'a str>,
}

/// Fresh random ids; the plan uses those the session needs.
pub(crate) struct NewIds {
    pub session: String,
    pub credential: String,
    pub serial: u64,
}

/// An authorised session, ready to sign and commit.
#[derive(Debug)]
pub(crate) struct Plan {
    pub record: SessionRecord,
    /// The worker that carries the session.
    pub worker: WorkerRecord,
    pub claims: GrantClaims,
    /// The logins (SSH principals) the policy grants on the target.
    pub logins: Vec<String>,
    /// How the session's SSH runs: gateway mode only when an SSH key was sent and the policy
    /// asks for the gateway.
    pub ssh_mode: SshMode,
    /// The certificate the embedded SSH CA signs.
    pub certificate: Option<Certificate>,
    /// What Vault mints after the commit, when it is the backend and the session needs it.
    pub vault: Option<VaultMint>,
    /// The Proxmox API token minted after the commit, for an injecting target.
    pub pve: Option<super::pve::PveMint>,
    /// The matrix cell and roles that allowed it, stored on its row for the console.
    pub decided: Decided,
    /// The approved access request it opens under, stored on its row.
    pub access_request: Option<String>,
    /// The step-up challenge whose proof it spends in its commit.
    pub step_up: Option<String>,
    pub event: AuditEvent,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Certificate {
    pub user_key: String,
    pub serial: u64,
    pub ca_key_id: String,
    pub valid_after: u64,
    pub valid_before: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VaultMint {
    /// The `vault_credentials` row committed with the session (the revocation intent).
    pub credential_id: String,
    /// The session's maximum: the token's `explicit_max_ttl`.
    pub session_ttl: Duration,
    pub ssh: Option<VaultSsh>,
    /// The target's further Vault paths, read with the session's token.
    pub secrets: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VaultSsh {
    pub mount: String,
    pub role: String,
    pub public_key: String,
    pub ttl_secs: u64,
}

/// Refuses a request over `sessions.per_user.authorize_per_minute`; only the first refusal
/// of a minute is audited, so a client looping on 429 adds one event a minute.
pub(crate) fn check_rate(
    principal: &Principal,
    target: &TargetRecord,
    rate: RateCheck,
    per_minute: u32,
) -> Result<(), Refusal> {
    let RateCheck::Exceeded { first, retry_after } = rate else {
        return Ok(());
    };
    let event = first.then(|| Box::new(events::rate_limited(principal, target, per_minute)));
    Err(Refusal {
        error: SessionError::RateLimited {
            per_minute,
            retry_after,
        },
        event,
        step_up: None,
    })
}

/// A discovered template or stopped guest is listed, never connectable (`available` is
/// false): a denial, audited as the policy's are.
pub(crate) fn check_available(principal: &Principal, target: &TargetRecord) -> Result<(), Refusal> {
    if target.available {
        return Ok(());
    }
    Err(events::unavailable(principal, target))
}

/// Whether an address is one a session may never reach through the broker regardless of
/// policy (unspecified or multicast).
pub(crate) fn is_unroutable(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast()
}

/// The policy's decision on a session from `principal` to `target` at its resolved
/// `endpoint`; anything but an allow is a refusal. No policy denies everything.
pub(crate) fn decide(
    principal: &Principal,
    target: &TargetRecord,
    endpoint: SocketAddr,
    policy: Option<&Policy>,
    now: u64,
) -> Result<Decision, Refusal> {
    let deny = |reason: String, decision: Option<&Decision>| {
        events::denial(principal, target, endpoint, reason, decision)
    };
    if is_unroutable(endpoint.ip()) {
        let reason = format!(
            "the target resolves to {}, which is never a session endpoint",
            endpoint.ip()
        );
        return Err(deny(reason, None));
    }
    let Some(policy) = policy else {
        return Err(deny(
            "no policy is loaded: everything is denied".into(),
            None,
        ));
    };
    let request =
        crate::authz::session_request(principal.peer.ip(), &principal.user, target, endpoint);
    let decision = portcullis_policy::evaluate(policy, &request, now);
    if decision.outcome != Outcome::Allow {
        return Err(deny(decision.reason.clone(), Some(&decision)));
    }
    Ok(decision)
}

/// A denial with its `session_denied` event, for a refusal decided outside this module
/// (a session under an access request that does not apply).
pub(crate) fn denial(
    principal: &Principal,
    target: &TargetRecord,
    endpoint: SocketAddr,
    reason: String,
    decision: Option<&Decision>,
) -> Refusal {
    events::denial(principal, target, endpoint, reason, decision)
}

/// How a session's SSH runs: the policy's mode when an SSH key was sent, certificate mode
/// (nothing to do) otherwise.
pub(crate) fn ssh_mode(ssh_public_key: Option<&str>, decision: &Decision) -> SshMode {
    match ssh_public_key {
        Some(_) => decision.constraints.ssh.mode,
        None => SshMode::Certificate,
    }
}

/// Whether the embedded SSH CA signs this session's certificate for the user: an SSH key
/// was sent, the session is in certificate mode and Vault is not the backend.
pub(crate) fn signs_embedded_certificate(
    ssh_public_key: Option<&str>,
    mode: SshMode,
    vault_backend: bool,
) -> bool {
    ssh_public_key.is_some() && mode == SshMode::Certificate && !vault_backend
}

/// Plans an allowed session: the live-session limit, a worker, the SSH logins and the
/// Vault settings are checked, then the session's row, grant, certificate, Vault mint and
/// event are made from the facts.
pub(crate) fn plan(facts: &Facts<'_>) -> Result<Plan, Refusal> {
    let max_live = facts.settings.max_live;
    if let Some(live) = facts
        .live_sessions
        .filter(|live| max_live > 0 && *live >= i64::from(max_live))
    {
        return Err(events::too_many_live(facts, live));
    }
    let Some(worker) = facts.worker else {
        return Err(unaudited(SessionError::NoWorker));
    };
    let (mut expires_at, limit) = expiry_and_limit(facts.target, facts.decision, facts.now);
    if let Some(access) = &facts.access {
        expires_at = expires_at.min(access.expires_at);
    }
    let logins = facts.decision.constraints.logins.clone();
    if facts.ssh_public_key.is_some() && logins.is_empty() {
        let reason = "the policy grants no SSH login (principal) on this target".to_string();
        return Err(events::denial(
            facts.principal,
            facts.target,
            facts.endpoint,
            reason,
            Some(facts.decision),
        ));
    }
    let cert_ttl = facts
        .settings
        .ssh_certificate_ttl
        .as_secs()
        .min(expires_at.saturating_sub(facts.now))
        .max(1);
    let mode = ssh_mode(facts.ssh_public_key, facts.decision);
    let gw = match (mode, facts.ssh_public_key) {
        (SshMode::Gateway, Some(user_key)) => Some(GatewayClaims {
            key: crate::ssh::normalised_public_key(user_key)
                .map_err(|e| unaudited(SessionError::BadSshKey(e.to_string())))?,
            logins: logins.clone(),
            rights: facts.decision.constraints.ssh.rights,
            rec: Some(facts.decision.constraints.recording).filter(|r| r.required),
        }),
        _ => None,
    };
    let pve = match &facts.pve {
        None => None,
        Some(pve) => Some(
            super::pve::plan_mint(pve, facts.decision, &facts.ids.session, expires_at).map_err(
                |reason| {
                    events::denial(
                        facts.principal,
                        facts.target,
                        facts.endpoint,
                        reason,
                        Some(facts.decision),
                    )
                },
            )?,
        ),
    };
    let vault = vault_mint(facts, mode, expires_at, cert_ttl).map_err(unaudited)?;
    let certificate = embedded_certificate(facts, mode, cert_ttl).map_err(unaudited)?;
    let claims = GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GrantClaims::audience_for(&worker.id),
        sub: facts.principal.user.id.clone(),
        sid: facts.ids.session.clone(),
        tid: facts.target.id.clone(),
        ckh: portcullis_proto::keys::spki_fingerprint(facts.client_spki),
        src: facts.principal.peer.ip().to_string(),
        dst: facts.endpoint.to_string(),
        lim: limit,
        iat: facts.now,
        exp: expires_at,
        gw,
        pve: pve.as_ref().map(super::pve::PveMint::claims),
    };
    let mints = vault.is_some() || pve.is_some();
    let mut record = session_record(facts, &claims, worker, mints);
    record.ssh_mode = mode;
    let issued = events::Issued {
        claims: &claims,
        worker,
        logins: &logins,
        ssh_mode: facts.ssh_public_key.map(|_| mode),
        certificate: certificate.as_ref(),
        vault: vault.as_ref(),
    };
    let event = events::authorized(facts, &issued);
    Ok(Plan {
        record,
        worker: worker.clone(),
        claims,
        logins,
        ssh_mode: mode,
        certificate,
        vault,
        pve,
        decided: Decided::of(facts.decision),
        access_request: facts.access.as_ref().map(|a| a.request_id.to_owned()),
        step_up: facts.step_up.map(str::to_owned),
        event,
    })
}

/// The session's expiry and connection limit: the target's, narrowed by the policy's
/// constraints (a connection limit of 0 is none).
fn expiry_and_limit(target: &TargetRecord, decision: &Decision, now: u64) -> (u64, u32) {
    let mut max_secs = u64::try_from(target.max_session_secs).unwrap_or(0);
    if let Some(limit) = decision.constraints.max_session_secs {
        max_secs = max_secs.min(limit);
    }
    let mut limit = u32::try_from(target.connection_limit).unwrap_or(0);
    if let Some(policy_limit) = decision.constraints.connection_limit {
        limit = if limit == 0 {
            policy_limit
        } else {
            limit.min(policy_limit)
        };
    }
    (now + max_secs.max(1), limit)
}

/// What Vault mints for the session: nothing unless Vault is the backend and the session
/// needs a certificate or the target names secrets. A target with secrets but no Vault, or
/// an SSH key without a Vault role, is refused before anything is committed. In gateway mode
/// the user gets no certificate (the gateway's is minted when it asks), but the role is
/// checked now all the same, and the target's secrets are read as in certificate mode.
fn vault_mint(
    facts: &Facts<'_>,
    mode: SshMode,
    expires_at: u64,
    cert_ttl: u64,
) -> Result<Option<VaultMint>, SessionError> {
    let target = facts.target;
    let Some(vault) = &facts.settings.vault else {
        if !target.vault_secrets.is_empty() {
            return Err(SessionError::VaultNotConfigured {
                target: target.name.clone(),
            });
        }
        return Ok(None);
    };
    let ssh = match facts.ssh_public_key {
        None => None,
        Some(user_key) => {
            parse_user_key(user_key)?;
            let role = target
                .vault_ssh_role
                .as_deref()
                .or(vault.ssh_role)
                .ok_or_else(|| SessionError::NoVaultSshRole {
                    target: target.name.clone(),
                })?;
            if mode == SshMode::Gateway {
                None
            } else {
                Some(VaultSsh {
                    mount: target
                        .vault_ssh_mount
                        .clone()
                        .unwrap_or_else(|| vault.ssh_mount.to_owned()),
                    role: role.to_owned(),
                    public_key: user_key.to_owned(),
                    ttl_secs: cert_ttl,
                })
            }
        }
    };
    if ssh.is_none() && target.vault_secrets.is_empty() {
        return Ok(None);
    }
    Ok(Some(VaultMint {
        credential_id: facts.ids.credential.clone(),
        session_ttl: Duration::from_secs(expires_at.saturating_sub(facts.now).max(1)),
        ssh,
        secrets: target.vault_secrets.clone(),
    }))
}

/// The certificate the embedded SSH CA signs, when it is the one that signs.
fn embedded_certificate(
    facts: &Facts<'_>,
    mode: SshMode,
    cert_ttl: u64,
) -> Result<Option<Certificate>, SessionError> {
    let Some(user_key) = facts.ssh_public_key else {
        return Ok(None);
    };
    if !signs_embedded_certificate(facts.ssh_public_key, mode, facts.settings.vault.is_some()) {
        return Ok(None);
    }
    parse_user_key(user_key)?;
    let ca_key_id = facts
        .keys
        .ssh_ca
        .ok_or_else(|| SessionError::Signing("the SSH CA key is not loaded".into()))?;
    Ok(Some(Certificate {
        user_key: user_key.to_owned(),
        serial: facts.ids.serial,
        ca_key_id: ca_key_id.to_owned(),
        valid_after: facts.now.saturating_sub(60),
        valid_before: facts.now + cert_ttl,
    }))
}

/// Refuses an `ssh_public_key` that is not an OpenSSH public key.
fn parse_user_key(user_key: &str) -> Result<(), SessionError> {
    ssh_key::PublicKey::from_openssh(user_key.trim())
        .map(drop)
        .map_err(|e| SessionError::BadSshKey(e.to_string()))
}

fn session_record(
    facts: &Facts<'_>,
    claims: &GrantClaims,
    worker: &WorkerRecord,
    mints: bool,
) -> SessionRecord {
    SessionRecord {
        id: claims.sid.clone(),
        user_id: claims.sub.clone(),
        target_id: claims.tid.clone(),
        worker_id: worker.id.clone(),
        state: if mints {
            SessionState::Minting
        } else {
            SessionState::Pending
        },
        termination_reason: None,
        client_addr: claims.src.clone(),
        client_key_hash: claims.ckh.clone(),
        endpoint: claims.dst.clone(),
        connection_limit: i64::from(claims.lim),
        connections_count: 0,
        policy_hash: facts.decision.policy_hash.clone(),
        created_at: to_i64(claims.iat),
        expires_at: to_i64(claims.exp),
        activated_at: None,
        terminated_at: None,
        ssh_mode: SshMode::Certificate,
        parent_session_id: None,
    }
}

fn unaudited(error: SessionError) -> Refusal {
    Refusal {
        error,
        event: None,
        step_up: None,
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

mod events;
#[cfg(test)]
mod tests;
mod worker;
pub(crate) use worker::{choose_worker, Candidate};
