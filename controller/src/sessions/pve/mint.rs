//! The token mint of authorize-session, after the session and the token's intent committed
//! (state `minting`): create the token and grant its roles ([`access::create`]), seal its
//! secret into the row and commit `pve_token_minted` (the session becomes `pending`), or
//! audit `pve_token_mint_failed` and end the session, which queues the token's deletion.

use portcullis_proto::link::EndReason;
use portcullis_proto::pve::ProxmoxSession;

use super::{comment, management_client, seal_context, PveMint};
use crate::audit::{Actor, AuditEvent, Event};
use crate::catalog::proxmox::access::{self, NewToken};
use crate::catalog::proxmox::ProxmoxError;
use crate::clock;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::sessions::credentials::fault_point;
use crate::sessions::error::SessionError;
use crate::sessions::plan::Plan;
use crate::state::AppState;
use crate::store::sessions as session_rows;
use crate::store::{pve_tokens, StoreError};

#[derive(Debug, thiserror::Error)]
enum MintError {
    #[error(transparent)]
    Proxmox(#[from] ProxmoxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot seal the token's secret: {0}")]
    Seal(String),
    #[error("the session ended while its token was minted")]
    Ended,
}

/// Mints the planned token of the session for `user` and commits it; on failure the session
/// is ended and the error says so.
pub(crate) async fn mint(
    state: &AppState,
    plan: &Plan,
    pve: &PveMint,
    user: &str,
) -> Result<ProxmoxSession, SessionError> {
    fault_point("exit-after-pve-intent");
    let session_id = plan.record.id.as_str();
    let made = create(state, session_id, pve, user).await;
    let finished = match made {
        Ok(secret) => finish(state, plan, pve, &secret).await,
        Err(err) => Err(err),
    };
    use crate::metrics::CredentialKind;
    match finished {
        Ok(()) => {
            state.metrics.minted(CredentialKind::PveToken);
            Ok(pve.session())
        }
        Err(err) => {
            state.metrics.credential_failed(CredentialKind::PveToken);
            Err(failed(state, plan, pve, err).await)
        }
    }
}

async fn create(
    state: &AppState,
    session_id: &str,
    pve: &PveMint,
    user: &str,
) -> Result<SecretString, MintError> {
    let client = management_client(state, &pve.cluster).await?;
    let comment = comment(session_id, user);
    let token = NewToken {
        userid: &pve.userid,
        name: &pve.token_name,
        expire: pve.expires_at,
        comment: &comment,
        roles: &pve.roles,
        paths: &pve.paths,
    };
    let secret = access::create(&client, &token).await?;
    fault_point("exit-after-pve-token");
    Ok(secret)
}

/// Seals the secret into the row (`live`), makes the session `pending` (unless Vault still
/// mints for it) and commits `pve_token_minted`. A session that ended meanwhile is an error:
/// its deletion was queued with the end, and is started again here for the token just made.
async fn finish(
    state: &AppState,
    plan: &Plan,
    pve: &PveMint,
    secret: &SecretString,
) -> Result<(), MintError> {
    let session_id = plan.record.id.as_str();
    let sealed = state
        .keys
        .seal_secret(&seal_context(session_id), secret.expose_secret().as_bytes())
        .map_err(|e| MintError::Seal(e.to_string()))?;
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    if !pve_tokens::set_live(tx.write(), session_id, &sealed, now).await? {
        drop(tx);
        // The end queued the deletion, perhaps before the token existed: queue it again.
        let mut conn = state.store.conn().await?;
        pve_tokens::requeue(&mut conn, session_id, now).await?;
        super::revoke::revoke_now(state.clone(), session_id.to_owned());
        return Err(MintError::Ended);
    }
    if plan.vault.is_none() && !session_rows::finish_minting(tx.write(), session_id).await? {
        return Err(MintError::Ended);
    }
    let minted = Event::PveTokenMinted {
        details: pve.details(),
    };
    tx.commit(
        AuditEvent::new(Actor::system(), minted)
            .session(session_id)
            .target(&plan.record.target_id),
    )
    .await?;
    tracing::info!(session.id = session_id, token.id = %pve.token_id(), "Proxmox API token minted");
    Ok(())
}

/// A failed mint: audited, the session ended (which queues the token's deletion), and a
/// clear error for the client.
async fn failed(state: &AppState, plan: &Plan, pve: &PveMint, err: MintError) -> SessionError {
    let session_id = plan.record.id.as_str();
    let message = err.to_string();
    tracing::warn!(session.id = session_id, error = %portcullis_proto::text::escaped(&message), "minting the session's Proxmox API token failed; ending it");
    let recorded = async {
        let failed = Event::PveTokenMintFailed {
            reason: message.clone(),
            details: pve.details(),
        };
        let event = AuditEvent::new(Actor::system(), failed)
            .session(session_id)
            .target(&plan.record.target_id);
        state.audit_alone(event).await?;
        crate::sessions::lifecycle::end_session(
            state,
            session_id,
            EndReason::CredentialMintFailed,
            Actor::system(),
        )
        .await
    }
    .await;
    if let Err(e) = recorded {
        tracing::error!(session.id = session_id, error = %e, "cannot end the session after a failed token mint; the token job will");
    }
    let hint = match &err {
        MintError::Proxmox(ProxmoxError::Api {
            status: 401 | 403, ..
        }) => {
            "check the token-management token and its privileges (docs/proxmox.md, \
             \"Per-session API tokens\"), and that the policy's Proxmox user exists in the realm"
        }
        MintError::Proxmox(ProxmoxError::Api { .. }) => {
            "check that the policy's Proxmox user and roles exist (pveum user list, pveum role list)"
        }
        MintError::Proxmox(ProxmoxError::Unreachable(_)) => "try again when Proxmox is reachable",
        _ => "try again",
    };
    SessionError::PveMintFailed { message, hint }
}
