//! `GatewayCredential`: a worker's SSH gateway asks for the certificate it logs into a
//! session's target with, for a key it made in memory. The controller checks its own grant
//! (signature, this worker as audience, not expired, gateway claims present), that the session
//! is live and carried by this worker, then mints with the session's backend exactly as
//! certificate mode would for the user: key id = session id, principals = the grant's logins,
//! `source-address` = the workers' egress (`ssh.source_addresses`), valid until the grant
//! expires (with Vault, whose roles cap TTLs, `ssh.certificate_ttl` within that, as in
//! certificate mode).
//!
//! - Embedded CA: signed here; the certificate's row (its serial enters the KRL if the
//!   session ends early) and `gateway_credential_issued` commit in one transaction.
//! - Vault: the crash-safe mint of authorize-session: a revocation intent for this session
//!   commits first (`gateway_credential_requested`), then Vault signs with a token of its own,
//!   then `credential_minted` commits the result; the session's end revokes the token as it
//!   does the session's other credentials. A failed mint ends the session, like a failed
//!   mint at authorisation.
//!
//! Nothing secret is kept: the certificate is handed to the worker and forgotten.

use portcullis_proto::gateway::{Credential, CredentialRequest};
use portcullis_proto::grant::{GatewayClaims, GrantClaims, GrantKey};
use portcullis_proto::link::Response;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::keys::Purpose;
use crate::sessions::credentials::{self, MintRequest, SshPart, VAULT_CA_PREFIX};
use crate::state::AppState;
use crate::store::sessions::{self as session_rows, SessionRecord, SessionState};
use crate::store::targets::{self, TargetRecord};
use crate::store::StoreError;
use crate::vault::Vault;

/// Why a credential was refused (the worker's refusal quotes it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the grant does not verify ({0}); the client must authorise a new session")]
    Grant(String),
    #[error(
        "the session is not in gateway mode: its grant carries no gateway claims; connect with \
         the certificate the client received instead"
    )]
    NotGateway,
    #[error("the session is unknown to the controller; the client must authorise a new session")]
    UnknownSession,
    #[error("the session has ended; the client must authorise a new session")]
    Ended,
    #[error("the session's credentials are still being minted; retry in a moment")]
    Minting,
    #[error("the session belongs to another worker; the client must connect to the worker its grant names")]
    OtherWorker,
    #[error("the session's target is gone; an admin deleted it")]
    TargetGone,
    #[error("the gateway's key is not an OpenSSH public key ({0}); send its public half as `ALGORITHM BASE64`")]
    BadKey(String),
    #[error(
        "no Vault SSH role for target {0}: set vault.ssh_role in the controller config or \
         `portcullis targets update {0} --vault-ssh-role ROLE`"
    )]
    NoVaultSshRole(String),
    #[error("cannot sign the gateway's certificate: {0}; retry, or check the controller's keyset")]
    Signing(String),
    #[error(
        "cannot mint the gateway's certificate from Vault: {0}; the session was ended and \
         anything minted for it is revoked"
    )]
    MintFailed(String),
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers a worker's `GatewayCredential` request.
pub(crate) async fn issue(
    state: &AppState,
    worker_id: &str,
    request: CredentialRequest,
) -> Response {
    match mint(state, worker_id, &request).await {
        Ok(credential) => Response::GatewayCredential(credential),
        Err(Failure::Refused(refused)) => {
            tracing::info!(worker.id = %worker_id, reason = %refused, "gateway credential refused");
            Response::Refused {
                reason: refused.to_string(),
            }
        }
        Err(Failure::Store(err)) => crate::link::handler::store_error(state, err),
    }
}

async fn mint(
    state: &AppState,
    worker_id: &str,
    request: &CredentialRequest,
) -> Result<Credential, Failure> {
    let now = state.clock.unix_secs();
    let keys = match state.keys.grant_keys().await {
        Ok(keys) => keys,
        Err(err) => return Err(Refused::Signing(err.to_string()).into()),
    };
    let (claims, gw) = verify(&request.grant, &keys, worker_id, now)?;
    let public_key = crate::ssh::normalised_public_key(&request.public_key)
        .map_err(|e| Refused::BadKey(e.to_string()))?;
    let (user_id, target) = {
        let mut conn = state.store.conn().await?;
        let session = session_rows::get(&mut conn, &claims.sid).await?;
        let user_id = check_session(session.as_ref(), worker_id, now)?
            .user_id
            .clone();
        let target = targets::find(&mut conn, &claims.tid).await?;
        let target = target
            .filter(|t| t.id == claims.tid)
            .ok_or(Refused::TargetGone)?;
        (user_id, target)
    };
    let mint = Mint {
        claims: &claims,
        gw: &gw,
        public_key: &public_key,
        target: &target,
        worker_id,
        now,
    };
    let (certificate, valid_before) = match &state.vault {
        None => embedded(state, &mint).await?,
        Some(vault) => from_vault(state, vault, &mint, &user_id).await?,
    };
    tracing::info!(session.id = %claims.sid, worker.id = %worker_id, valid_before, "gateway credential issued");
    Ok(Credential {
        certificate,
        valid_before,
        host_keys: target.ssh_host_keys.clone(),
        host_cas: target.ssh_host_cas.clone(),
        target_name: target.name.clone(),
    })
}

/// Verifies the controller's own grant for this worker and takes its gateway claims.
fn verify(
    grant: &str,
    keys: &[GrantKey],
    worker_id: &str,
    now: u64,
) -> Result<(GrantClaims, GatewayClaims), Refused> {
    let claims = portcullis_proto::grant::verify(grant, keys, worker_id, now)
        .map_err(|e| Refused::Grant(e.to_string()))?;
    let gw = claims.gw.clone().ok_or(Refused::NotGateway)?;
    Ok((claims, gw))
}

/// The session must be live (authorised or active, not expired) and carried by this worker.
fn check_session<'a>(
    session: Option<&'a SessionRecord>,
    worker_id: &str,
    now: u64,
) -> Result<&'a SessionRecord, Refused> {
    let session = session.ok_or(Refused::UnknownSession)?;
    match session.state {
        SessionState::Terminated => return Err(Refused::Ended),
        SessionState::Minting => return Err(Refused::Minting),
        SessionState::Pending | SessionState::Active => {}
    }
    if session.expires_at <= clock::to_i64(now) {
        return Err(Refused::Ended);
    }
    if session.worker_id != worker_id {
        return Err(Refused::OtherWorker);
    }
    Ok(session)
}

/// What one credential is minted for.
struct Mint<'a> {
    claims: &'a GrantClaims,
    gw: &'a GatewayClaims,
    /// The worker's key, normalised.
    public_key: &'a str,
    target: &'a TargetRecord,
    worker_id: &'a str,
    now: u64,
}

/// Signs with the embedded CA and commits the certificate's row with its event.
async fn embedded(state: &AppState, mint: &Mint<'_>) -> Result<(String, u64), Failure> {
    let ca = state
        .keys
        .active(Purpose::SshCa)
        .await
        .map_err(|e| Refused::Signing(e.to_string()))?;
    let session_id = &mint.claims.sid;
    let serial = crate::ids::random_u64();
    let valid_before = mint.claims.exp;
    let request = crate::ssh::CertificateRequest {
        session_id,
        principals: &mint.gw.logins,
        source_addresses: &state.config.ssh_source_addresses,
        valid_after: mint.now.saturating_sub(60),
        valid_before,
        serial,
    };
    let certificate = crate::ssh::sign(&ca.pkcs8, mint.public_key, &request)
        .map_err(|e| Refused::Signing(e.to_string()))?;
    let mut tx = state.begin_audited().await?;
    // Checked again in the transaction, the session's row locked: a session that ended
    // meanwhile gets no certificate, and one that ends from now on revokes it.
    let session = session_rows::get_locked(tx.write(), session_id).await?;
    check_session(session.as_ref(), mint.worker_id, mint.now)?;
    crate::store::ssh_certificates::insert(
        tx.write(),
        serial,
        session_id,
        &ca.id,
        clock::to_i64(valid_before),
    )
    .await?;
    let issued = Event::GatewayCredentialIssued {
        details: event::GatewayCredential {
            key_fingerprint: fingerprint(mint.public_key),
            ssh_certificate: event::SshCertificate {
                serial: serial.to_string(),
                key_id: session_id.clone(),
                ca_key_id: ca.id.clone(),
                principals: mint.gw.logins.clone(),
                valid_before,
            },
        },
    };
    tx.commit(
        AuditEvent::new(Actor::worker(mint.worker_id), issued)
            .session(session_id)
            .target(&mint.target.id),
    )
    .await?;
    Ok((certificate, valid_before))
}

/// The Vault SSH mount and role for `target`: its own, or the controller's defaults.
pub(crate) fn vault_ssh_place(
    target: &TargetRecord,
    default_mount: &str,
    default_role: Option<&str>,
) -> Result<(String, String), Refused> {
    let role = target
        .vault_ssh_role
        .as_deref()
        .or(default_role)
        .ok_or_else(|| Refused::NoVaultSshRole(target.name.clone()))?;
    let mount = target.vault_ssh_mount.as_deref().unwrap_or(default_mount);
    Ok((mount.to_owned(), role.to_owned()))
}

/// The TTL asked of Vault for a gateway's certificate: `ssh.certificate_ttl`, never past the
/// session's end.
pub(crate) fn vault_certificate_ttl(certificate_ttl: std::time::Duration, session_ttl: u64) -> u64 {
    certificate_ttl.as_secs().min(session_ttl).max(1)
}

/// Mints through Vault, crash-safe (see the module doc).
async fn from_vault(
    state: &AppState,
    vault: &Vault,
    mint: &Mint<'_>,
    user_id: &str,
) -> Result<(String, u64), Failure> {
    let config = vault.config();
    let (mount, role) =
        vault_ssh_place(mint.target, &config.ssh_mount, config.ssh_role.as_deref())?;
    let session_id = &mint.claims.sid;
    let intent_id = crate::ids::new_id(crate::ids::IdKind::Credential);
    let username = {
        let mut tx = state.begin_audited().await?;
        let session = session_rows::get_locked(tx.write(), session_id).await?;
        check_session(session.as_ref(), mint.worker_id, mint.now)?;
        let user = crate::store::users::get(tx.read(), user_id).await?;
        crate::store::vault_credentials::insert_intent(
            tx.write(),
            &intent_id,
            session_id,
            clock::to_i64(mint.now),
        )
        .await?;
        let requested = Event::GatewayCredentialRequested {
            details: event::GatewayCredentialRequested {
                credential_id: intent_id.clone(),
                key_fingerprint: fingerprint(mint.public_key),
            },
        };
        tx.commit(
            AuditEvent::new(Actor::worker(mint.worker_id), requested)
                .session(session_id)
                .target(&mint.target.id),
        )
        .await?;
        user.map(|u| u.username).unwrap_or_default()
    };
    let session_ttl = mint.claims.exp.saturating_sub(mint.now).max(1);
    // Vault refuses a TTL above its role's `max_ttl`: the certificate lives
    // `ssh.certificate_ttl` as certificate mode's do (within the session); a gateway that
    // logs in again after it expired asks for a new one.
    let ttl = vault_certificate_ttl(state.config.ssh_certificate_ttl, session_ttl);
    let request = MintRequest {
        intent_id: &intent_id,
        session_id,
        user: &username,
        target_id: &mint.target.id,
        session_ttl: std::time::Duration::from_secs(session_ttl),
        ssh: Some(SshPart {
            mount: &mount,
            role: &role,
            public_key: mint.public_key,
            principals: &mint.gw.logins,
            source_addresses: &state.config.ssh_source_addresses,
            ttl_secs: ttl,
        }),
        secrets: &[],
    };
    let minted = match credentials::mint(state, vault, &request).await {
        Ok(minted) => minted,
        Err(err) => return Err(failed(state, mint, err).await),
    };
    let Some((certificate, serial)) = minted.certificate else {
        return Err(failed(state, mint, credentials::MintError::Ended).await);
    };
    let valid_before = ssh_key::Certificate::from_openssh(&certificate)
        .map(|c| c.valid_before())
        .unwrap_or(mint.claims.exp);
    let mut tx = state.begin_audited().await?;
    if !crate::store::vault_credentials::set_minted(tx.write(), &intent_id, &[]).await? {
        // The session ended while Vault signed: its end queued this token's revocation.
        return Err(Refused::Ended.into());
    }
    crate::store::ssh_certificates::insert(
        tx.write(),
        serial,
        session_id,
        &format!("{VAULT_CA_PREFIX}{mount}"),
        clock::to_i64(valid_before),
    )
    .await?;
    let details = event::CredentialMinted {
        credential_id: intent_id.clone(),
        token_accessor: minted.accessor.clone(),
        ssh_certificate: Some(event::VaultSshCertificate {
            serial: serial.to_string(),
            key_id: session_id.clone(),
            mount: Some(mount.clone()),
            valid_before: Some(valid_before),
        }),
        leases: vec![],
    };
    tx.commit(
        AuditEvent::new(Actor::system(), Event::CredentialMinted { details })
            .session(session_id)
            .target(&mint.target.id),
    )
    .await?;
    Ok((certificate, valid_before))
}

/// A failed Vault mint: audited and the session ended (which revokes whatever was made),
/// as a failed mint at authorisation.
async fn failed(state: &AppState, mint: &Mint<'_>, err: credentials::MintError) -> Failure {
    let message = err.to_string();
    tracing::warn!(session.id = %mint.claims.sid, error = %portcullis_proto::text::escaped(&message), "minting the gateway's credential failed; ending the session");
    let ended = async {
        let failed = Event::CredentialMintFailed {
            reason: message.clone(),
        };
        let event = AuditEvent::new(Actor::system(), failed)
            .session(&mint.claims.sid)
            .target(&mint.target.id);
        state.audit_alone(event).await?;
        crate::sessions::lifecycle::end_session(
            state,
            &mint.claims.sid,
            portcullis_proto::link::EndReason::CredentialMintFailed,
            Actor::system(),
        )
        .await
    }
    .await;
    if let Err(e) = ended {
        tracing::error!(session.id = %mint.claims.sid, error = %e, "cannot end the session after a failed mint; the credential job will");
    }
    Refused::MintFailed(message).into()
}

fn fingerprint(public_key: &str) -> String {
    crate::ssh::fingerprint(public_key).unwrap_or_default()
}

#[cfg(test)]
#[path = "credential_tests.rs"]
mod tests;
