//! Authorising a session: read the facts once, let the pure [`super::plan`] decide, record a
//! refusal with its event, or sign the plan and commit the session with its event
//! ([`super::issue`]), then mint its Proxmox API token ([`super::pve::mint`]) and its Vault
//! credentials ([`super::mint`]).

use std::net::SocketAddr;

use portcullis_proto::access::UnderRequest;
use portcullis_proto::api::SessionAuthorization;
use portcullis_proto::step_up::StepUpAnswer;

use super::error::SessionError;
use super::issue;
use super::plan::{self, Facts, KeyIds, NewIds, Refusal, Settings, VaultDefaults};
use crate::access::covering;
use crate::api::extract::Principal;
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::keys::{ActiveKey, Purpose};
use crate::state::AppState;
use crate::store::sessions as session_rows;
use crate::store::targets::TargetRecord;
use crate::store::workers::WorkerRecord;

/// What the client asks for besides the target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    /// The client's key (DER SubjectPublicKeyInfo) the grant binds.
    pub client_spki: &'a [u8],
    /// An SSH key to certify.
    pub ssh_public_key: Option<&'a str>,
    /// Hex SHA-256 of the local secret of an injecting Proxmox API session served on a TCP
    /// port (the grant's `pve.lsh`).
    pub local_secret_sha256: Option<&'a str>,
    /// The client's key as sent (base64url SPKI): what a run's proof signs.
    pub client_public_key: &'a str,
    /// The approved access request the client names (with a run's proof).
    pub under_request: Option<&'a UnderRequest>,
    /// The proof of a step-up login answering this request's challenge.
    pub step_up: Option<&'a StepUpAnswer>,
}

/// Authorises a session from `principal` to `target` for what the client asks; see the
/// module doc.
pub(crate) async fn authorize(
    state: &AppState,
    principal: &Principal,
    target: TargetRecord,
    ask: Ask<'_>,
) -> Result<SessionAuthorization, SessionError> {
    let Ask {
        client_spki,
        ssh_public_key,
        local_secret_sha256,
        client_public_key,
        under_request,
        step_up,
    } = ask;
    let now = state.clock.unix_secs();
    let rate = state.authorize_rate.hit(&principal.user.id, now);
    let per_minute = state.config.per_user.authorize_per_minute;
    let within_rate = plan::check_rate(principal, &target, rate, per_minute);
    refusing(state, within_rate).await?;
    refusing(state, plan::check_available(principal, &target)).await?;
    let injecting = super::pve::injecting(&target, &state.config.catalog)?;
    let endpoint = resolve(&target.address).await?;
    // A step-up proof stands in for the token's authentication, for this decision only.
    let stepped = match step_up {
        Some(answer) => {
            let accept =
                crate::step_up::accept(state, principal, &target, client_public_key, answer);
            Some(with_step_up(principal, &accept.await?))
        }
        None => None,
    };
    let deciding = stepped.as_ref().unwrap_or(principal);
    let policy = state.policy();
    let standing = plan::decide(deciding, &target, endpoint, policy.as_deref(), now);
    let challenge = Challenge {
        principal,
        target: &target,
        client_public_key,
        answered: step_up.is_some(),
    };
    let (decision, covered) = match (standing, under_request, policy.as_deref()) {
        (Ok(decision), None, _) => (decision, None),
        (standing, _, None) => (refusing(state, standing).await?, None),
        (standing, under, Some(policy)) => {
            let requests = {
                let mut conn = state.store.conn().await?;
                let (user, at) = (&principal.user.id, clock::to_i64(now));
                crate::store::access_requests::approved_of_user(&mut conn, user, at).await?
            };
            let ask = covering::Ask {
                policy,
                user: &principal.user,
                source: principal.peer.ip(),
                target: &target,
                endpoint,
                under,
                client_public_key,
                now,
            };
            match covering::choose(&ask, &requests) {
                Ok(Some(covered)) => (covered.decision.clone(), Some(covered)),
                Ok(None) => (
                    refusing_or_step_up(state, &challenge, standing).await?,
                    None,
                ),
                Err(not) => {
                    let refusal = plan::denial(
                        principal,
                        &target,
                        endpoint,
                        not.reason,
                        not.decision.as_deref(),
                    );
                    (refusing(state, Err(refusal)).await?, None)
                }
            }
        }
    };
    let mode = plan::ssh_mode(ssh_public_key, &decision);
    let read = read(state, principal, now, ssh_public_key, mode).await?;
    let vault_config = state.vault.as_ref().map(|vault| vault.config());
    let facts = Facts {
        now,
        principal,
        target: &target,
        endpoint,
        decision: &decision,
        live_sessions: read.live_sessions,
        worker: read.worker.as_ref(),
        client_spki,
        ssh_public_key,
        settings: Settings {
            max_live: state.config.per_user.max_live,
            ssh_certificate_ttl: state.config.ssh_certificate_ttl,
            vault: vault_config.map(|config| VaultDefaults {
                ssh_mount: &config.ssh_mount,
                ssh_role: config.ssh_role.as_deref(),
            }),
        },
        keys: KeyIds {
            grant: &read.grant_key.id,
            ssh_ca: read.ssh_ca.as_ref().map(|key| key.id.as_str()),
        },
        ids: NewIds {
            session: new_id(IdKind::Session),
            credential: new_id(IdKind::Credential),
            serial: crate::ids::random_u64(),
        },
        pve: injecting.map(|(cluster, sessions)| super::pve::PveFacts {
            cluster,
            sessions,
            local_secret_sha256,
        }),
        access: covered.as_ref().map(|c| plan::UnderAccess {
            request_id: &c.request_id,
            expires_at: c.expires_at,
        }),
        step_up: step_up.map(|answer| answer.challenge_id.as_str()),
    };
    let plan = refusing(state, plan::plan(&facts)).await?;
    let keys = issue::Keys {
        grant: &read.grant_key,
        grant_signer: &read.grant_signer,
        ssh_ca: read.ssh_ca.as_ref(),
    };
    issue::issue(state, principal, &target, &plan, keys).await
}

/// What [`authorize`] reads for the plan ([`Facts`]) from the store, keyset and workers.
struct Read {
    live_sessions: Option<i64>,
    worker: Option<WorkerRecord>,
    grant_key: ActiveKey,
    grant_signer: std::sync::Arc<portcullis_crypto::ed25519::SigningKey>,
    ssh_ca: Option<ActiveKey>,
}

async fn read(
    state: &AppState,
    principal: &Principal,
    now: u64,
    ssh_public_key: Option<&str>,
    mode: portcullis_policy::SshMode,
) -> Result<Read, SessionError> {
    let live_sessions = if state.config.per_user.max_live > 0 {
        let mut conn = state.store.conn().await?;
        let user = &principal.user.id;
        Some(session_rows::count_live_of_user(&mut conn, user, clock::to_i64(now)).await?)
    } else {
        None
    };
    let heard_after = crate::sessions::lost::placeable_since(
        clock::to_i64(now),
        state.config.heartbeat_interval.as_secs(),
        clock::to_i64(state.config.worker_lost_after.as_secs()),
    );
    let workers = state
        .live_workers
        .get(&state.store, heard_after, clock::to_i64(now))
        .await?;
    let candidates: Vec<plan::Candidate<'_>> = workers
        .iter()
        .map(|(worker, live_sessions)| plan::Candidate {
            worker,
            live_sessions: *live_sessions,
            linked_here: state.links.get(&worker.id).is_some(),
        })
        .collect();
    let worker = plan::choose_worker(&candidates, crate::ids::random_u64()).cloned();
    if let Some(worker) = &worker {
        state.live_workers.assigned(&worker.id);
    }
    let (grant_key, grant_signer) = state.keys.grant_signer().await?;
    let signs = plan::signs_embedded_certificate(ssh_public_key, mode, state.vault.is_some());
    let ssh_ca = match signs {
        true => Some(state.keys.active(Purpose::SshCa).await?),
        false => None,
    };
    Ok(Read {
        live_sessions,
        worker,
        grant_key,
        grant_signer,
        ssh_ca,
    })
}

/// Passes an allowed step's value on; records a refusal's event (a refusal whose event
/// cannot be recorded fails closed with the store's error) and returns its error.
async fn refusing<T>(state: &AppState, step: Result<T, Refusal>) -> Result<T, SessionError> {
    let refusal = match step {
        Ok(value) => return Ok(value),
        Err(refusal) => refusal,
    };
    if let Some(event) = refusal.event {
        state.audit_alone(*event).await?;
    }
    Err(refusal.error)
}

/// The request a step-up challenge would be bound to.
struct Challenge<'a> {
    principal: &'a Principal,
    target: &'a TargetRecord,
    client_public_key: &'a str,
    /// The request came with a proof already: no second challenge (its denial stands).
    answered: bool,
}

/// [`refusing`], except that a denial only for a role's MFA constraint becomes a step-up
/// challenge (with its `step_up_required` event instead of `session_denied`), when the user
/// can answer one.
async fn refusing_or_step_up<T>(
    state: &AppState,
    at: &Challenge<'_>,
    step: Result<T, Refusal>,
) -> Result<T, SessionError> {
    let refusal = match step {
        Err(refusal) if !at.answered && refusal.step_up.is_some() => refusal,
        other => return refusing(state, other).await,
    };
    let (Some(need), SessionError::Denied { reason, .. }) = (&refusal.step_up, &refusal.error)
    else {
        return refusing(state, Err(refusal)).await;
    };
    let issued = crate::step_up::challenge(
        state,
        at.principal,
        at.target,
        at.client_public_key,
        need,
        reason,
    )
    .await?;
    match issued {
        Some(challenge) => Err(SessionError::StepUpRequired {
            reason: reason.clone(),
            challenge: Box::new(challenge),
        }),
        None => refusing(state, Err(refusal)).await,
    }
}

/// The caller as a step-up login showed them: its amr, acr and auth_time in place of the
/// token's.
fn with_step_up(principal: &Principal, proven: &crate::store::step_ups::Proven) -> Principal {
    let mut stepped = principal.clone();
    stepped.user.amr = proven.amr.clone();
    stepped.user.acr = proven.acr.clone();
    stepped.user.auth_time = Some(proven.auth_time);
    stepped
}

/// Resolves a target's `HOST:PORT` once; the first address (IPv4 preferred) is the one the
/// grant binds, so the worker never resolves the name again (no DNS rebinding).
pub(crate) async fn resolve(address: &str) -> Result<SocketAddr, SessionError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| SessionError::Unresolvable {
            address: address.to_owned(),
            detail: e.to_string(),
        })?
        .collect();
    let first = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied();
    let address = address.to_owned();
    first.ok_or(SessionError::ResolvesToNothing { address })
}
