//! The session at the controller: authorise it for this process's key (and, for SSH, an SSH
//! public key to certify), and cancel it on the way out.

use std::time::Duration;

use anyhow::Context as _;
use portcullis_proto::api::{AuthorizeSession, SessionAuthorization};
use portcullis_proto::keys;

use super::tls::ClientIdentity;
use super::tunnel::SessionTicket;
use crate::cli::http::{segment, ApiClient};
use crate::cli::output;

/// How long cancelling our session on the way out may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /v1/targets/{target}/authorize-session` with this session's public key.
pub(super) async fn authorize(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: Option<String>,
) -> anyhow::Result<SessionAuthorization> {
    let body = AuthorizeSession {
        client_public_key: keys::b64(&identity.public_key_der()?),
        ssh_public_key,
    };
    api.post(
        &format!("/v1/targets/{}/authorize-session", segment(target)?),
        &body,
    )
    .await
    .with_context(|| format!("cannot open a session to {target}"))
}

/// Authorises a session that also certifies an SSH public key (for `ssh-prepare`).
pub(crate) async fn authorize_for_ssh(
    api: &ApiClient,
    target: &str,
    identity: &ClientIdentity,
    ssh_public_key: String,
) -> anyhow::Result<SessionAuthorization> {
    authorize(api, target, identity, Some(ssh_public_key)).await
}

/// Cancels our session; on failure says so and returns false.
pub(super) async fn cancel_session(api: &ApiClient, ticket: &SessionTicket) -> bool {
    let id = &ticket.session_id;
    let outcome = tokio::time::timeout(CANCEL_TIMEOUT, crate::cli::sessions::cancel(api, id)).await;
    let err = match outcome {
        Ok(Ok(_)) => return true,
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
