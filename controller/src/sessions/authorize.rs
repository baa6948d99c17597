//! Authorising a session: resolve the target once, ask the policy, pick a worker, sign the
//! grant, and commit the session with its audit event.

use crate::secret::ExposeSecret as _;
use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{Decision, Outcome, TargetFacts};
use portcullis_proto::api::SessionAuthorization;
use portcullis_proto::grant::{self, GrantClaims, GRANT_ISSUER};
use portcullis_proto::link::EndReason;

use super::lifecycle::arm_expiry;
use super::limits::RateCheck;
use crate::api::error::ApiError;
use crate::api::extract::Principal;
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::keys::Purpose;
use crate::state::AppState;
use crate::store::sessions::{self as session_rows, SessionRecord, SessionState};
use crate::store::targets::TargetRecord;

/// Resolves a target's `HOST:PORT` once; the first address (IPv4 preferred) is the one the
/// grant binds, so the worker never resolves the name again (no DNS rebinding).
pub async fn resolve(address: &str) -> Result<SocketAddr, ApiError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "resolve_failed",
                format!("cannot resolve target address {address:?}: {e}"),
            )
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "resolve_failed",
                format!("target address {address:?} resolves to nothing"),
            )
        })
}

/// The facts of a denial the audit event records: those of `session_authorized` where the
/// decision got that far (zones, service, the matrix cells checked, the role rule that
/// failed), and the endpoint the target resolved to.
fn denial_details(
    decision: Option<&Decision>,
    endpoint: Option<SocketAddr>,
) -> event::SessionDenied {
    event::SessionDenied {
        endpoint: endpoint.map(|e| e.to_string()),
        decision: decision.map(|d| event::DeniedAt {
            source_zone: d.source_zone.clone(),
            target_zone: d.target_zone.clone(),
            service: d.service.clone(),
            cells: d.cells.clone(),
            role_rule: d.role_rule.clone(),
        }),
    }
}

/// The 403 message: the reason, and for a denial by the role check the matrix cell the
/// request was checked against (which admitted it), so the user knows the network allows the
/// path and only a role is missing.
fn denial_message(reason: &str, decision: Option<&Decision>) -> String {
    match decision {
        Some(d) if d.role_rule.is_some() && !d.cells.is_empty() => format!(
            "session denied: {reason} (checked against the matrix cell {}, which admits it; \
             the role check refused it)",
            d.cells[0]
        ),
        _ => format!("session denied: {reason}"),
    }
}

/// Records a denial and returns the 403 that carries its reason.
async fn deny(
    state: &AppState,
    principal: &Principal,
    target: &TargetRecord,
    reason: String,
    decision: Option<&Decision>,
    endpoint: Option<SocketAddr>,
) -> ApiError {
    let denied = Event::SessionDenied {
        reason: reason.clone(),
        policy_hash: decision.map(|d| d.policy_hash.clone()),
        details: denial_details(decision, endpoint),
    };
    let event = AuditEvent::new(principal.actor(), denied).target(&target.id);
    if let Err(err) = state.audit_alone(event).await {
        // Fail closed: the denial stands, and the missing audit record is an error.
        return err.into();
    }
    ApiError::forbidden(denial_message(&reason, decision))
}

/// A per-user limit that refused a request (`[sessions.per_user]`).
enum LimitHit {
    Rate { per_minute: u32, retry_after: u64 },
    Live { max_live: u32, live: i64 },
}

/// Records a refusal by a per-user limit (the rate limit only at its first refusal in a
/// minute, so a client looping on 429 adds one event a minute) and returns the 429.
async fn limited(
    state: &AppState,
    principal: &Principal,
    target: &TargetRecord,
    hit: LimitHit,
    audit_it: bool,
) -> ApiError {
    let (reason, details, message) = match hit {
        LimitHit::Rate {
            per_minute,
            retry_after,
        } => (
            format!("more than {per_minute} authorize-session requests in a minute"),
            event::LimitReached {
                limit: "sessions.per_user.authorize_per_minute".into(),
                value: u64::from(per_minute),
                live: None,
            },
            format!(
                "too many sessions requested: at most {per_minute} a minute per user \
                 (sessions.per_user.authorize_per_minute); retry in {retry_after} s, or reuse \
                 an open session (`portcullis connect --listen-port` carries many connections)"
            ),
        ),
        LimitHit::Live { max_live, live } => (
            format!("{live} live sessions, the most one user may hold is {max_live}"),
            event::LimitReached {
                limit: "sessions.per_user.max_live".into(),
                value: u64::from(max_live),
                live: Some(u64::try_from(live).unwrap_or(0)),
            },
            format!(
                "you hold {live} live sessions, the most one user may hold \
                 (sessions.per_user.max_live = {max_live}); end some with \
                 `portcullis sessions cancel ID` (see `portcullis sessions list`) or let \
                 unused ones expire, then retry"
            ),
        ),
    };
    if audit_it {
        let reached = Event::SessionLimitReached { reason, details };
        let event = AuditEvent::new(principal.actor(), reached).target(&target.id);
        if let Err(err) = state.audit_alone(event).await {
            return err.into();
        }
    }
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "session_limit",
        message,
    )
}

pub async fn authorize(
    state: &AppState,
    principal: &Principal,
    target: TargetRecord,
    client_spki: &[u8],
    ssh_public_key: Option<&str>,
) -> Result<SessionAuthorization, ApiError> {
    let now = state.clock.unix_secs();
    if let RateCheck::Exceeded { first, retry_after } =
        state.authorize_rate.hit(&principal.user.id, now)
    {
        let per_minute = state.config.per_user.authorize_per_minute;
        let hit = LimitHit::Rate {
            per_minute,
            retry_after,
        };
        return Err(limited(state, principal, &target, hit, first).await);
    }
    let endpoint = resolve(&target.address).await?;
    if is_unroutable(endpoint.ip()) {
        let reason = format!(
            "the target resolves to {}, which is never a session endpoint",
            endpoint.ip()
        );
        return Err(deny(state, principal, &target, reason, None, Some(endpoint)).await);
    }
    let Some(policy) = state.policy() else {
        return Err(deny(
            state,
            principal,
            &target,
            "no policy is loaded: everything is denied".into(),
            None,
            Some(endpoint),
        )
        .await);
    };
    let request = portcullis_policy::Request {
        source: principal.peer.ip(),
        target: TargetFacts {
            ip: endpoint.ip(),
            port: endpoint.port(),
            vmid: target.vmid,
            tags: target.tags.clone(),
            pool: target.pool.clone(),
            declared_zone: target.zone.clone(),
            service: target.service.clone(),
        },
        identity: crate::authz::identity(&principal.user),
        via_broker: true,
    };
    let decision = portcullis_policy::evaluate(&policy, &request, now);
    if decision.outcome != Outcome::Allow {
        return Err(deny(
            state,
            principal,
            &target,
            decision.reason.clone(),
            Some(&decision),
            Some(endpoint),
        )
        .await);
    }

    let max_live = state.config.per_user.max_live;
    if max_live > 0 {
        let live = {
            let mut conn = state.store.conn().await?;
            session_rows::count_live_of_user(&mut conn, &principal.user.id, clock::to_i64(now))
                .await?
        };
        if live >= i64::from(max_live) {
            let hit = LimitHit::Live { max_live, live };
            return Err(limited(state, principal, &target, hit, true).await);
        }
    }

    let heard_after = clock::to_i64(now)
        - clock::to_i64(state.config.heartbeat_interval.as_secs().max(1) * 3 + 2);
    let worker = {
        let live = state.live_workers.get(&state.store, heard_after).await?;
        // Prefer a worker linked to this controller: it can be told of a cancel at once.
        live.iter()
            .find(|w| state.links.get(&w.id).is_some())
            .or(live.first())
            .cloned()
    };
    let Some(worker) = worker else {
        return Err(ApiError::unavailable(
            "no worker is available to carry the session; check `portcullis workers list`",
        ));
    };

    let mut max_secs = clock::to_u64(target.max_session_secs);
    if let Some(limit) = decision.constraints.max_session_secs {
        max_secs = max_secs.min(limit);
    }
    let expires_at = now + max_secs.max(1);
    let mut limit = u32::try_from(target.connection_limit).unwrap_or(0);
    if let Some(policy_limit) = decision.constraints.connection_limit {
        limit = if limit == 0 {
            policy_limit
        } else {
            limit.min(policy_limit)
        };
    }
    let session_id = new_id(IdKind::Session);
    let client_key_hash = portcullis_proto::keys::spki_fingerprint(client_spki);
    let claims = GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GrantClaims::audience_for(&worker.id),
        sub: principal.user.id.clone(),
        sid: session_id.clone(),
        tid: target.id.clone(),
        ckh: client_key_hash.clone(),
        src: principal.peer.ip().to_string(),
        dst: endpoint.to_string(),
        lim: limit,
        iat: now,
        exp: expires_at,
    };
    let key = state.keys.active(Purpose::Grant).await?;
    let grant = grant::sign(&claims, &key.id, key.pkcs8.expose_secret())
        .map_err(|e| ApiError::internal(e.to_string()))?;

    let logins = decision.constraints.logins.clone();
    if ssh_public_key.is_some() && logins.is_empty() {
        let reason = "the policy grants no SSH login (principal) on this target".to_string();
        return Err(deny(
            state,
            principal,
            &target,
            reason,
            Some(&decision),
            Some(endpoint),
        )
        .await);
    }
    // Vault mints when it is the backend and the session needs something from it.
    let vault = match &state.vault {
        Some(vault) if ssh_public_key.is_some() || !target.vault_secrets.is_empty() => {
            Some(vault.clone())
        }
        None if !target.vault_secrets.is_empty() => {
            return Err(ApiError::unavailable(format!(
                "target {} names Vault secrets, but this controller's ssh.backend is not \"vault\"; \
                 configure [vault] or clear the target's vault_secrets",
                target.name
            )));
        }
        _ => None,
    };
    let cert_ttl = state
        .config
        .ssh_certificate_ttl
        .as_secs()
        .min(expires_at.saturating_sub(now))
        .max(1);
    let ssh = match (ssh_public_key, &vault) {
        (None, _) | (Some(_), Some(_)) => None,
        (Some(user_key), None) => {
            let ca = state.keys.active(Purpose::SshCa).await?;
            let serial = crate::ids::random_u64();
            let request = crate::ssh::CertificateRequest {
                session_id: &session_id,
                principals: &logins,
                source_addresses: &state.config.ssh_source_addresses,
                valid_after: now.saturating_sub(60),
                valid_before: now + cert_ttl,
                serial,
            };
            let cert = crate::ssh::sign(&ca.pkcs8, user_key, &request).map_err(|e| match e {
                crate::ssh::SshError::BadPublicKey(m) => ApiError::field("ssh_public_key", m),
                other => ApiError::internal(other.to_string()),
            })?;
            Some((cert, serial, ca.id, now + cert_ttl))
        }
    };
    // The Vault SSH mount and role for this target, checked before anything is committed.
    let vault_ssh = match (ssh_public_key, &vault) {
        (Some(user_key), Some(vault)) => {
            ssh_key::PublicKey::from_openssh(user_key.trim())
                .map_err(|e| ApiError::field("ssh_public_key", e.to_string()))?;
            let config = vault.config();
            let mount = target
                .vault_ssh_mount
                .clone()
                .unwrap_or_else(|| config.ssh_mount.clone());
            let role = target
                .vault_ssh_role
                .clone()
                .or_else(|| config.ssh_role.clone())
                .ok_or_else(|| {
                    ApiError::unavailable(format!(
                        "no Vault SSH role for target {}: set vault.ssh_role in the controller config or \
                         `portcullis targets update {} --vault-ssh-role ROLE`",
                        target.name, target.name
                    ))
                })?;
            Some((user_key, mount, role))
        }
        _ => None,
    };
    let intent_id = vault.as_ref().map(|_| new_id(IdKind::Credential));
    let record = SessionRecord {
        id: session_id.clone(),
        user_id: principal.user.id.clone(),
        target_id: target.id.clone(),
        worker_id: worker.id.clone(),
        state: if vault.is_some() {
            SessionState::Minting
        } else {
            SessionState::Pending
        },
        termination_reason: None,
        client_addr: principal.peer.ip().to_string(),
        client_key_hash,
        endpoint: endpoint.to_string(),
        connection_limit: i64::from(limit),
        connections_count: 0,
        policy_hash: decision.policy_hash.clone(),
        created_at: clock::to_i64(now),
        expires_at: clock::to_i64(expires_at),
        activated_at: None,
        terminated_at: None,
    };
    let authorized = Event::SessionAuthorized {
        reason: decision.reason.clone(),
        policy_hash: decision.policy_hash.clone(),
        details: event::SessionAuthorized {
            worker_id: worker.id.clone(),
            endpoint: record.endpoint.clone(),
            expires_at,
            connection_limit: limit,
            grant_key_id: key.id.clone(),
            ssh_certificate: ssh.as_ref().map(|(_, serial, ca_id, valid_before)| {
                event::SshCertificate {
                    serial: serial.to_string(),
                    key_id: session_id.clone(),
                    ca_key_id: ca_id.clone(),
                    principals: logins.clone(),
                    valid_before: *valid_before,
                }
            }),
            vault_credential_id: intent_id.clone(),
            source_zone: decision.source_zone.clone(),
            target_zone: decision.target_zone.clone(),
            cells: decision.cells.clone(),
        },
    };
    let event = AuditEvent::new(principal.actor(), authorized)
        .session(&session_id)
        .target(&target.id);
    let certificate = ssh
        .as_ref()
        .map(|(_, serial, ca_key_id, valid_before)| (*serial, ca_key_id.clone(), *valid_before));
    let intent = intent_id.clone();
    let created_at = clock::to_i64(now);
    // The API token the session is authorised with: logout ends the token's sessions.
    let token_id = principal.token_id.clone();
    // One transaction, shared with other authorisations (a group commit, audit::batch): the
    // session, its certificate's row, the revocation intent of its Vault credentials (before
    // Vault is called: a crash from here on leaves a record to finish or revoke) and the event.
    state
        .audit_writer
        .run(move |tx| {
            let (record, certificate, intent, event, token_id) = (
                record.clone(),
                certificate.clone(),
                intent.clone(),
                event.clone(),
                token_id.clone(),
            );
            Box::pin(async move {
                session_rows::insert(tx.write(), &record, Some(&token_id)).await?;
                if let Some((serial, ca_key_id, valid_before)) = certificate {
                    crate::store::ssh_certificates::insert(
                        tx.write(),
                        serial,
                        &record.id,
                        &ca_key_id,
                        crate::clock::to_i64(valid_before),
                    )
                    .await?;
                }
                if let Some(intent) = &intent {
                    crate::store::vault_credentials::insert_intent(
                        tx.write(),
                        intent,
                        &record.id,
                        created_at,
                    )
                    .await?;
                }
                tx.record(event);
                Ok(())
            })
        })
        .await?;
    let mut authorization = SessionAuthorization {
        session_id: session_id.clone(),
        target_id: target.id.clone(),
        target_name: target.name.clone(),
        worker_id: worker.id.clone(),
        worker_addr: worker.proxy_addr,
        worker_key_fingerprint: worker.key_fingerprint,
        expires_at,
        connection_limit: limit,
        grant,
        endpoint: endpoint.to_string(),
        ssh_certificate: ssh.map(|(cert, ..)| cert),
        ssh_principals: logins.clone(),
        secrets: vec![],
    };
    if let (Some(vault), Some(intent_id)) = (vault, intent_id) {
        super::credentials::fault_point("exit-after-mint-intent");
        let request = super::credentials::MintRequest {
            intent_id: &intent_id,
            session_id: &session_id,
            user: &principal.user.username,
            target_id: &target.id,
            session_ttl: std::time::Duration::from_secs(expires_at.saturating_sub(now).max(1)),
            ssh: vault_ssh
                .as_ref()
                .map(|(user_key, mount, role)| super::credentials::SshPart {
                    mount,
                    role,
                    public_key: user_key,
                    principals: &logins,
                    source_addresses: &state.config.ssh_source_addresses,
                    ttl_secs: cert_ttl,
                }),
            secrets: &target.vault_secrets,
        };
        let minted = super::credentials::mint(state, &vault, &request).await;
        let finished = match minted {
            Ok(minted) => finish_mint(
                state,
                &intent_id,
                &session_id,
                &target.id,
                vault_ssh.as_ref().map(|(_, m, _)| m.as_str()),
                &minted,
            )
            .await
            .map(|ok| (ok, minted)),
            Err(err) => Err(err),
        };
        match finished {
            Ok((true, minted)) => {
                authorization.ssh_certificate = minted.certificate.map(|(cert, _)| cert);
                authorization.secrets = minted.secrets;
            }
            Ok((false, _)) => {
                return Err(mint_failed(
                    state,
                    &session_id,
                    &target.id,
                    super::credentials::MintError::Ended,
                )
                .await);
            }
            Err(err) => return Err(mint_failed(state, &session_id, &target.id, err).await),
        }
    }
    arm_expiry(state, session_id.clone(), expires_at);
    tracing::info!(session.id = %session_id, target.id = %target.id, worker.id = %worker.id, "session authorised");
    Ok(authorization)
}

/// Commits a finished mint: the session becomes `pending`, the certificate is recorded for
/// the KRL, and the event names what was minted (identifiers only). False if the session
/// ended meanwhile (its revocation is queued then).
async fn finish_mint(
    state: &AppState,
    intent_id: &str,
    session_id: &str,
    target_id: &str,
    mount: Option<&str>,
    minted: &super::credentials::Minted,
) -> Result<bool, super::credentials::MintError> {
    let lease_ids = super::credentials::lease_ids(&minted.secrets);
    let valid_before = minted.certificate.as_ref().map(|(cert, _)| {
        ssh_key::Certificate::from_openssh(cert)
            .map(|c| c.valid_before())
            .unwrap_or_else(|_| state.clock.unix_secs() + 24 * 3600)
    });
    let mut tx = state.begin_audited().await?;
    if !session_rows::finish_minting(tx.write(), session_id).await? {
        return Ok(false);
    }
    if !crate::store::vault_credentials::set_minted(tx.write(), intent_id, &lease_ids).await? {
        return Ok(false);
    }
    if let (Some((_, serial)), Some(mount), Some(valid_before)) =
        (&minted.certificate, mount, valid_before)
    {
        crate::store::ssh_certificates::insert(
            tx.write(),
            *serial,
            session_id,
            &format!("{}{mount}", super::credentials::VAULT_CA_PREFIX),
            clock::to_i64(valid_before),
        )
        .await?;
    }
    let details = event::CredentialMinted {
        credential_id: intent_id.to_owned(),
        token_accessor: minted.accessor.clone(),
        ssh_certificate: minted.certificate.as_ref().map(|(_, serial)| {
            event::VaultSshCertificate {
                serial: serial.to_string(),
                key_id: session_id.to_owned(),
                mount: mount.map(str::to_owned),
                valid_before,
            }
        }),
        leases: minted
            .secrets
            .iter()
            .map(|s| event::Lease {
                path: s.path.clone(),
                lease_id: s.lease_id.clone(),
                lease_duration_secs: s.lease_duration_secs,
            })
            .collect(),
    };
    tx.commit(
        AuditEvent::new(Actor::system(), Event::CredentialMinted { details })
            .session(session_id)
            .target(target_id),
    )
    .await?;
    Ok(true)
}

/// A failed mint: audited, the session ended (which revokes whatever was made), and a clear
/// error for the client.
async fn mint_failed(
    state: &AppState,
    session_id: &str,
    target_id: &str,
    err: super::credentials::MintError,
) -> ApiError {
    let message = err.to_string();
    tracing::warn!(session.id = session_id, error = %portcullis_proto::text::escaped(&message), "minting the session's credentials failed; ending it");
    let recorded = async {
        let failed = Event::CredentialMintFailed {
            reason: message.clone(),
        };
        let event = AuditEvent::new(Actor::system(), failed)
            .session(session_id)
            .target(target_id);
        state.audit_alone(event).await?;
        super::lifecycle::end_session(
            state,
            session_id,
            EndReason::CredentialMintFailed,
            Actor::system(),
        )
        .await
    }
    .await;
    if let Err(e) = recorded {
        tracing::error!(session.id = session_id, error = %e, "cannot end the session after a failed mint; the credential job will");
    }
    let hint = match &err {
        super::credentials::MintError::Vault(crate::vault::VaultError::Refused { .. }) => {
            "check the target's Vault SSH role and secrets (`portcullis targets show`) and the \
             controller's Vault policy"
        }
        super::credentials::MintError::Vault(_) => "try again when Vault is reachable",
        _ => "try again",
    };
    ApiError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "credential_mint_failed",
        format!(
            "cannot mint the session's credentials from Vault: {message}; the session was ended \
             and anything minted for it is revoked; {hint}"
        ),
    )
}

/// Whether an address is one a session may never reach through the broker regardless of
/// policy (unspecified or multicast).
pub fn is_unroutable(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast()
}
