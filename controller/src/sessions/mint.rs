//! The credential mint of authorize-session, after the session and its revocation intent
//! committed (state `minting`): mint from Vault ([`super::credentials::mint`]), then commit
//! what was minted (`pending`, `credential_minted`), or audit the failure and end the
//! session, which revokes whatever was made.

use portcullis_proto::link::EndReason;

use super::credentials::{self, MintError, MintRequest, Minted, SshPart};
use super::error::SessionError;
use super::plan::{Plan, VaultMint};
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::sessions as session_rows;
use crate::vault::{Vault, VaultError};

/// Mints the planned credentials of the session for `user` and commits them; on failure
/// the session is ended and the error says so.
pub(crate) async fn mint(
    state: &AppState,
    vault: &Vault,
    plan: &Plan,
    mint: &VaultMint,
    user: &str,
) -> Result<Minted, SessionError> {
    credentials::fault_point("exit-after-mint-intent");
    let session_id = &plan.record.id;
    let target_id = &plan.record.target_id;
    let request = MintRequest {
        intent_id: &mint.credential_id,
        session_id,
        user,
        target_id,
        session_ttl: mint.session_ttl,
        ssh: mint.ssh.as_ref().map(|ssh| SshPart {
            mount: &ssh.mount,
            role: &ssh.role,
            public_key: &ssh.public_key,
            principals: &plan.logins,
            source_addresses: &state.config.ssh_source_addresses,
            ttl_secs: ssh.ttl_secs,
        }),
        secrets: &mint.secrets,
    };
    let mount = mint.ssh.as_ref().map(|ssh| ssh.mount.as_str());
    let finished = match credentials::mint(state, vault, &request).await {
        Ok(minted) => finish(state, &mint.credential_id, plan, mount, &minted)
            .await
            .map(|committed| (committed, minted)),
        Err(err) => Err(err),
    };
    use crate::metrics::CredentialKind;
    match finished {
        Ok((true, minted)) => {
            if minted.certificate.is_some() {
                state.metrics.minted(CredentialKind::SshCert);
            }
            if !minted.secrets.is_empty() {
                state.metrics.minted(CredentialKind::Vault);
            }
            Ok(minted)
        }
        Ok((false, _)) => Err(failed(state, session_id, target_id, MintError::Ended).await),
        Err(err) => {
            let kind = match mint.ssh {
                Some(_) => CredentialKind::SshCert,
                None => CredentialKind::Vault,
            };
            state.metrics.credential_failed(kind);
            Err(failed(state, session_id, target_id, err).await)
        }
    }
}

/// Commits a finished mint: the session becomes `pending`, the certificate is recorded for
/// the KRL, and the event names what was minted (identifiers only). False if the session
/// ended meanwhile (its revocation is queued then).
async fn finish(
    state: &AppState,
    intent_id: &str,
    plan: &Plan,
    mount: Option<&str>,
    minted: &Minted,
) -> Result<bool, MintError> {
    let session_id = plan.record.id.as_str();
    let lease_ids = credentials::lease_ids(&minted.secrets);
    let valid_before = minted.certificate.as_ref().map(|(cert, _)| {
        ssh_key::Certificate::from_openssh(cert)
            .map(|c| c.valid_before())
            .unwrap_or_else(|_| state.clock.unix_secs() + 24 * 3600)
    });
    // The secrets' data is kept sealed with the session, and served only by its own reads.
    let sealed = if minted.secrets.is_empty() {
        None
    } else {
        let now = clock::to_i64(state.clock.unix_secs());
        let row = super::secrets::seal(&state.keys, session_id, &minted.secrets, now);
        Some(row.map_err(|e| MintError::Seal(e.to_string()))?)
    };
    let mut tx = state.begin_audited().await?;
    if !session_rows::finish_minting(tx.write(), session_id).await? {
        return Ok(false);
    }
    if !crate::store::vault_credentials::set_minted(tx.write(), intent_id, &lease_ids).await? {
        return Ok(false);
    }
    if let Some(sealed) = &sealed {
        crate::store::session_secrets::insert(tx.write(), sealed).await?;
    }
    if let (Some((_, serial)), Some(mount), Some(valid_before)) =
        (&minted.certificate, mount, valid_before)
    {
        crate::store::ssh_certificates::insert(
            tx.write(),
            *serial,
            session_id,
            &format!("{}{mount}", credentials::VAULT_CA_PREFIX),
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
            .target(&plan.record.target_id),
    )
    .await?;
    Ok(true)
}

/// A failed mint: audited, the session ended (which revokes whatever was made), and a clear
/// error for the client.
async fn failed(
    state: &AppState,
    session_id: &str,
    target_id: &str,
    err: MintError,
) -> SessionError {
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
        MintError::Vault(VaultError::Refused { .. }) => {
            "check the target's Vault SSH role and secrets (`portcullis targets show`) and the \
             controller's Vault policy"
        }
        MintError::Vault(_) => "try again when Vault is reachable",
        _ => "try again",
    };
    SessionError::MintFailed { message, hint }
}
