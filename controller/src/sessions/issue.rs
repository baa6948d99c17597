//! Issuing an authorised session: sign its [`Plan`] (the grant, and the certificate when the
//! embedded SSH CA signs it), commit the session with its event, mint its Proxmox API token
//! ([`super::pve::mint`]) and its Vault credentials ([`super::mint`]) and hand the
//! authorisation out.
//!
//! Signing takes a `Plan`, which exists only when every check passed, so a refused request
//! never reaches a key. It signs before the commit, so that what the event records is what
//! was signed, and a key that cannot sign leaves nothing behind; nothing signed leaves the
//! process before the commit.

use portcullis_policy::SshMode;
use portcullis_proto::api::{LeasedSecret, SessionAuthorization};
use portcullis_proto::grant;

use super::error::SessionError;
use super::lifecycle::arm_expiry;
use super::plan::Plan;
use crate::api::extract::Principal;
use crate::keys::ActiveKey;
use crate::state::AppState;
use crate::store::sessions as session_rows;
use crate::store::targets::TargetRecord;

/// The keys that sign a session.
#[derive(Clone, Copy)]
pub(crate) struct Keys<'a> {
    pub grant: &'a ActiveKey,
    /// The grant key, parsed once (`Keyset::grant_signer`).
    pub grant_signer: &'a portcullis_crypto::ed25519::SigningKey,
    /// The embedded SSH CA, when it signs the session's certificate.
    pub ssh_ca: Option<&'a ActiveKey>,
}

/// What signing produced.
pub(crate) struct Signed {
    pub grant: String,
    pub ssh_certificate: Option<String>,
}

/// Signs, commits and mints an authorised session; see the module doc.
pub(crate) async fn issue(
    state: &AppState,
    principal: &Principal,
    target: &TargetRecord,
    plan: &Plan,
    keys: Keys<'_>,
) -> Result<SessionAuthorization, SessionError> {
    let worker = &plan.worker;
    let signed = sign(plan, keys, &state.config.ssh_source_addresses)?;
    let gateway_host_ca = match plan.ssh_mode {
        SshMode::Gateway => Some(crate::gateway::host_ca_line(&state.keys).await?),
        SshMode::Certificate => None,
    };
    commit(state, plan, &principal.token_id).await?;
    let mut authorization = SessionAuthorization {
        session_id: plan.record.id.clone(),
        target_id: target.id.clone(),
        target_name: target.name.clone(),
        worker_id: worker.id.clone(),
        worker_addr: worker.proxy_addr.clone(),
        worker_key_fingerprint: worker.key_fingerprint.clone(),
        expires_at: plan.claims.exp,
        connection_limit: plan.claims.lim,
        grant: signed.grant,
        endpoint: plan.record.endpoint.clone(),
        ssh_certificate: signed.ssh_certificate,
        ssh_principals: plan.logins.clone(),
        ssh_mode: plan.ssh_mode,
        gateway_host_ca,
        secrets: vec![],
        token_expires_at: Some(crate::clock::to_u64(principal.token_expires_at)),
        proxmox: None,
    };
    if let Some(pve) = &plan.pve {
        let user = &principal.user.username;
        authorization.proxmox = Some(super::pve::mint::mint(state, plan, pve, user).await?);
    }
    if let (Some(mint), Some(vault)) = (&plan.vault, &state.vault) {
        let user = &principal.user.username;
        let minted = super::mint::mint(state, vault, plan, mint, user).await?;
        authorization.ssh_certificate = minted.certificate.map(|(cert, _)| cert);
        // Which secrets only: their data is served, audited, by `GET /v1/sessions/{id}/secrets`.
        authorization.secrets = minted.secrets.iter().map(LeasedSecret::info).collect();
    }
    arm_expiry(state, plan.record.id.clone(), plan.claims.exp);
    tracing::info!(session.id = %plan.record.id, target.id = %target.id, worker.id = %worker.id, "session authorised");
    Ok(authorization)
}

/// Signs the plan's grant and, when the embedded SSH CA signs it, its certificate.
pub(crate) fn sign(
    plan: &Plan,
    keys: Keys<'_>,
    source_addresses: &[String],
) -> Result<Signed, SessionError> {
    let grant = grant::sign_with(&plan.claims, &keys.grant.id, keys.grant_signer)
        .map_err(|e| SessionError::Signing(e.to_string()))?;
    let ssh_certificate = match (&plan.certificate, keys.ssh_ca) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(SessionError::Signing("the SSH CA key is not loaded".into()));
        }
        (Some(cert), Some(ca)) => {
            let request = crate::ssh::CertificateRequest {
                session_id: &plan.record.id,
                principals: &plan.logins,
                source_addresses,
                valid_after: cert.valid_after,
                valid_before: cert.valid_before,
                serial: cert.serial,
            };
            let signed = crate::ssh::sign(&ca.pkcs8, &cert.user_key, &request);
            Some(signed.map_err(|e| match e {
                crate::ssh::SshError::BadPublicKey(m) => SessionError::BadSshKey(m),
                other => SessionError::Signing(other.to_string()),
            })?)
        }
    };
    Ok(Signed {
        grant,
        ssh_certificate,
    })
}

/// Commits the session, its certificate's row, the revocation intent of its Vault
/// credentials and the intent of its Proxmox API token (before Vault or Proxmox is called: a
/// crash from here on leaves a record to finish or revoke) and its event, in one transaction shared with other authorisations (a group
/// commit, `audit::batch`). `token_id` is the API token the session is authorised with:
/// logout ends the token's sessions.
pub(crate) async fn commit(
    state: &AppState,
    plan: &Plan,
    token_id: &str,
) -> Result<(), SessionError> {
    let record = plan.record.clone();
    let decided = plan.decided.clone();
    let certificate = plan
        .certificate
        .as_ref()
        .map(|c| (c.serial, c.ca_key_id.clone(), c.valid_before));
    let intent = plan.vault.as_ref().map(|v| v.credential_id.clone());
    let pve_intent = plan
        .pve
        .as_ref()
        .map(|pve| pve.intent(&plan.record.id, plan.record.created_at));
    let event = plan.event.clone();
    let token_id = token_id.to_owned();
    let access = plan.access_request.clone();
    let step_up = plan.step_up.clone();
    let now = plan.record.created_at;
    state
        .audit_writer
        .run(move |tx| {
            let (record, decided, certificate, intent, pve_intent, event, token_id) = (
                record.clone(),
                decided.clone(),
                certificate.clone(),
                intent.clone(),
                pve_intent.clone(),
                event.clone(),
                token_id.clone(),
            );
            let access = access.clone();
            let step_up = step_up.clone();
            Box::pin(async move {
                session_rows::insert(tx.write(), &record, Some(&token_id), &decided).await?;
                if let Some(request) = &access {
                    // Checked again in the commit: a request revoked or expired since the
                    // decision opens nothing (the session is rolled back).
                    let rows = crate::store::access_requests::attach_session;
                    if !rows(tx.write(), &record.id, request, now).await? {
                        return Err(crate::store::StoreError::Conflict(format!(
                            "access request {request} ended while the session was authorised; \
                             `portcullis request show {request}` says how"
                        )));
                    }
                }
                if let Some(challenge) = &step_up {
                    // Spent with the session: a replayed proof (or two racing requests with
                    // one) opens at most one session.
                    let spend = crate::store::step_ups::spend;
                    if !spend(tx.write(), challenge, &record.id, now).await? {
                        return Err(crate::store::StoreError::Conflict(format!(
                            "the step-up proof of challenge {challenge} was used by another \
                             session meanwhile; a proof opens one session: step up again"
                        )));
                    }
                }
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
                        record.created_at,
                    )
                    .await?;
                }
                if let Some(pve_intent) = &pve_intent {
                    crate::store::pve_tokens::insert_intent(tx.write(), pve_intent).await?;
                }
                tx.record(event);
                Ok(())
            })
        })
        .await?;
    Ok(())
}
