//! A session opened by a `portcullis run` process for its command: authorised under the
//! run's request with a proof by the run's key over this session's fresh client key, and
//! carried by the same [`SessionTicket`] as every `connect`. The session's TLS key lives in
//! the ticket and never leaves the run process.

use portcullis_proto::access::{run_proof_message, UnderRequest};
use portcullis_proto::api::{CancelReason, SessionAuthorization};

use super::session::{authorize_with, cancel_session, client_public_key};
use super::tls::ClientIdentity;
use super::tunnel::{SessionTicket, WorkerStream};
use crate::cli::http::ApiClient;

/// What signs a run's proofs: the run's Ed25519 key, which stays with its caller.
pub(crate) type ProofSigner<'a> = &'a (dyn Fn(&[u8]) -> String + Sync);

/// What a run's session certifies besides its TLS key: an SSH public key (`ssh-prepare`),
/// the SHA-256 of a TCP listener's local secret (`connect --listen-port`/`--exec`).
#[derive(Debug, Default)]
pub(crate) struct SessionKeys {
    pub ssh_public_key: Option<String>,
    pub local_secret_sha256: Option<String>,
}

/// An authorised session of a run.
pub(crate) struct RunSession {
    pub authorization: SessionAuthorization,
    ticket: SessionTicket,
}

impl std::fmt::Debug for RunSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSession")
            .field("session_id", &self.authorization.session_id)
            .finish_non_exhaustive()
    }
}

impl RunSession {
    /// Authorises a session to `target` under request `request_id`; `sign` signs
    /// [`run_proof_message`] for this session's client key (base64url signature).
    pub(crate) async fn open(
        api: &ApiClient,
        target: &str,
        keys: SessionKeys,
        request_id: &str,
        sign: ProofSigner<'_>,
    ) -> anyhow::Result<Self> {
        let identity = ClientIdentity::generate()?;
        let proof = sign(&run_proof_message(
            request_id,
            &client_public_key(&identity)?,
        ));
        let under = UnderRequest {
            request_id: request_id.to_owned(),
            run_proof: Some(proof),
        };
        let authorization = authorize_with(
            api,
            target,
            &identity,
            keys.ssh_public_key,
            keys.local_secret_sha256,
            Some(under),
        )
        .await?;
        let ticket = SessionTicket::new(super::ticket_parts(&authorization, target), &identity)?;
        Ok(Self {
            authorization,
            ticket,
        })
    }

    /// One more connection of the session, to the target through its worker.
    pub(crate) async fn connect(&self) -> anyhow::Result<WorkerStream> {
        Ok(self.ticket.open().await?.into_stream())
    }

    /// Ends the session; on failure says so on stderr and returns false.
    pub(crate) async fn cancel(&self, api: &ApiClient, reason: CancelReason) -> bool {
        cancel_session(
            api,
            &self.ticket,
            reason,
            self.authorization.token_expires_at,
        )
        .await
    }
}
