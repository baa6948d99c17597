//! The session at the controller: authorise it for this process's key (and, for SSH, an SSH
//! public key to certify), and cancel it on the way out.

use std::time::Duration;

use anyhow::Context as _;
use portcullis_proto::access::UnderRequest;
use portcullis_proto::api::{AuthorizeSession, CancelReason, SessionAuthorization};
use portcullis_proto::clock::{Clock as _, SystemClock};
use portcullis_proto::keys;
use portcullis_proto::step_up::StepUpAnswer;

use super::tls::ClientIdentity;
use super::tunnel::SessionTicket;
use crate::cli::http::{segment, ApiClient, ApiError};
use crate::cli::output;

/// How long cancelling our session on the way out may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /v1/targets/{target}/authorize-session` with this session's public key (and the
/// hash of the local secret of a TCP listener).
pub(super) async fn authorize(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: Option<String>,
    local_secret_sha256: Option<String>,
) -> anyhow::Result<SessionAuthorization> {
    authorize_with(
        api,
        target,
        identity,
        ssh_public_key,
        local_secret_sha256,
        None,
    )
    .await
}

/// [`authorize`], optionally under an approved access request (a `portcullis run`'s, with
/// its proof for this session's key).
pub(super) async fn authorize_with(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: Option<String>,
    local_secret_sha256: Option<String>,
    under_request: Option<UnderRequest>,
) -> anyhow::Result<SessionAuthorization> {
    let mut body = AuthorizeSession {
        client_public_key: client_public_key(identity)?,
        ssh_public_key,
        // Sent whenever the session is served on a TCP port: a Proxmox API target's worker
        // then requires the secret on every request; other targets ignore it.
        local_secret_sha256,
        under_request,
        step_up: None,
    };
    let path = format!("/v1/targets/{}/authorize-session", segment(target)?);
    let first = api.post(&path, &body).await;
    // A role that wants a fresher or stronger login: step up once, for this request only.
    let challenge = match &first {
        Err(err) => err
            .downcast_ref::<ApiError>()
            .and_then(|e| e.body.step_up.clone()),
        Ok(_) => None,
    };
    let Some(challenge) = challenge else {
        return first.with_context(|| format!("cannot open a session to {target}"));
    };
    let proof = crate::cli::step_up::answer(api, &challenge)
        .await
        .with_context(|| format!("cannot open a session to {target}: the step-up failed"))?;
    body.step_up = Some(StepUpAnswer {
        challenge_id: proof.challenge_id,
        proof: proof.proof,
    });
    api.post(&path, &body)
        .await
        .with_context(|| format!("cannot open a session to {target} after the step-up"))
}

/// The session's client public key as authorize-session carries it (and a run's proof
/// signs it).
pub(super) fn client_public_key(identity: &ClientIdentity) -> anyhow::Result<String> {
    Ok(keys::b64(&identity.public_key_der()?))
}

/// Authorises a session that also certifies an SSH public key (for `ssh-prepare`).
pub(crate) async fn authorize_for_ssh(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: String,
) -> anyhow::Result<SessionAuthorization> {
    authorize(api, target, identity, Some(ssh_public_key), None).await
}

/// Ends our session with `reason`; on failure says so and returns false.
pub(super) async fn cancel_session(
    api: &ApiClient,
    ticket: &SessionTicket,
    reason: CancelReason,
    token_expires_at: Option<u64>,
) -> bool {
    let id = &ticket.session_id;
    let outcome = tokio::time::timeout(
        CANCEL_TIMEOUT,
        end_own_session(api, id, reason, token_expires_at),
    )
    .await;
    let err = match outcome {
        Ok(Ok(())) => return true,
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => "the controller did not answer in time".to_owned(),
    };
    eprintln!(
        "warning: could not cancel session {id}: {err}; it ends on its own at {} \
         (or run `portcullis sessions cancel {id}`)",
        output::time(ticket.expires_at)
    );
    false
}

/// Ends our own session with `reason`. A token the controller no longer accepts although it
/// has not expired was revoked (a logout, or `users revoke`), and revoking a token ends the
/// sessions it opened: then the session is over already and there is nothing to say.
pub(crate) async fn end_own_session(
    api: &ApiClient,
    id: &str,
    reason: CancelReason,
    token_expires_at: Option<u64>,
) -> anyhow::Result<()> {
    match crate::cli::sessions::cancel_as(api, id, reason).await {
        Ok(_) => Ok(()),
        Err(err) => {
            let status = err.downcast_ref::<ApiError>().map(|e| e.status);
            if ended_with_its_token(status, token_expires_at, SystemClock.unix_secs()) {
                tracing::debug!(session.id = %id, "the session's token was revoked, which ended the session");
                Ok(())
            } else {
                Err(err)
            }
        }
    }
}

/// Whether a refused cancel means the session already ended with its token: the answer was
/// 401 before the token's expiry (so the token was revoked, not expired).
pub(super) fn ended_with_its_token(
    status: Option<u16>,
    token_expires_at: Option<u64>,
    now: u64,
) -> bool {
    status == Some(401) && token_expires_at.is_some_and(|at| now < at)
}

#[cfg(test)]
mod tests {
    use super::ended_with_its_token;

    #[test]
    fn only_a_revoked_token_means_the_session_ended_with_it() {
        assert!(ended_with_its_token(Some(401), Some(100), 99));
        // Expired: the session may well be alive; so is it when the expiry is unknown.
        assert!(!ended_with_its_token(Some(401), Some(100), 100));
        assert!(!ended_with_its_token(Some(401), None, 99));
        // Any other failure is a failure.
        assert!(!ended_with_its_token(Some(403), Some(100), 99));
        assert!(!ended_with_its_token(None, Some(100), 99));
    }
}
