//! `PveCredential`: a worker asks for the token of an injecting session it carries. The
//! controller checks its own grant (signature, this worker as audience, not expired, a `pve`
//! claim), that the session is live and carried by this worker, and that its token is live
//! and the one the grant names; then it opens the sealed secret and answers with where to
//! send requests and how to check Proxmox's certificate (the cluster's `ca_file` contents or
//! its pinned fingerprint). Nothing is written: the secret is handed over and forgotten.

use portcullis_proto::grant::{GrantClaims, GrantKey};
use portcullis_proto::link::Response;
use portcullis_proto::pve::{Credential, CredentialRequest, PveClaims};

use super::seal_context;
use crate::catalog::config::ServerTrust;
use crate::clock;
use crate::secret::ExposeSecret as _;
use crate::state::AppState;
use crate::store::pve_tokens::{self as rows, TokenState};
use crate::store::sessions::{self as session_rows, SessionRecord, SessionState};
use crate::store::{targets, StoreError};

/// Why a token was refused (the worker's refusal quotes it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the grant does not verify ({0}); the client must authorise a new session")]
    Grant(String),
    #[error("the session does not inject a Proxmox API token: its grant carries no pve claim")]
    NotInjecting,
    #[error("the session is unknown to the controller; the client must authorise a new session")]
    UnknownSession,
    #[error("the session has ended; the client must authorise a new session")]
    Ended,
    #[error("the session's token is still being minted; retry in a moment")]
    Minting,
    #[error("the session belongs to another worker; the client must connect to the worker its grant names")]
    OtherWorker,
    #[error("the session has no live Proxmox API token; the client must authorise a new session")]
    NoToken,
    #[error("the session's target is gone; an admin deleted it")]
    TargetGone,
    #[error("the cluster {0:?} is not configured on this controller; its token cannot be served")]
    Cluster(String),
    #[error("cannot read the cluster's CA file {path}: {error}; fix catalog.proxmox.ca_file")]
    CaFile { path: String, error: String },
    #[error("cannot open the session's token: {0}; the master key may have changed")]
    Unseal(String),
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers a worker's `PveCredential` request.
pub(crate) async fn issue(
    state: &AppState,
    worker_id: &str,
    request: CredentialRequest,
) -> Response {
    match serve(state, worker_id, &request).await {
        Ok(credential) => Response::PveCredential(credential),
        Err(Failure::Refused(refused)) => {
            tracing::info!(worker.id = %worker_id, reason = %refused, "Proxmox API token refused");
            Response::error(refused.to_string())
        }
        Err(Failure::Store(err)) => crate::link::handler::store_error(state, err),
    }
}

async fn serve(
    state: &AppState,
    worker_id: &str,
    request: &CredentialRequest,
) -> Result<Credential, Failure> {
    let now = state.clock.unix_secs();
    let keys = state
        .keys
        .grant_keys()
        .await
        .map_err(|e| Refused::Grant(e.to_string()))?;
    let (claims, pve) = verify(&request.grant, &keys, worker_id, now)?;
    let (token, target) = {
        let mut conn = state.store.conn().await?;
        let session = session_rows::get(&mut conn, &claims.sid).await?;
        check_session(session.as_ref(), worker_id, now)?;
        let token = rows::get(&mut conn, &claims.sid).await?;
        let target = targets::find(&mut conn, &claims.tid)
            .await?
            .filter(|t| t.id == claims.tid)
            .ok_or(Refused::TargetGone)?;
        (token, target)
    };
    let token = token.ok_or(Refused::NoToken)?;
    let sealed = match (token.state, &token.secret) {
        (TokenState::Intent, _) => return Err(Refused::Minting.into()),
        (TokenState::Live, Some(sealed)) if token.token_id() == pve.tok => sealed,
        _ => return Err(Refused::NoToken.into()),
    };
    let cluster = state
        .config
        .catalog
        .iter()
        .find(|c| c.name == token.cluster)
        .ok_or_else(|| Refused::Cluster(token.cluster.clone()))?;
    let (ca_pem, fingerprint) = match &cluster.trust {
        ServerTrust::CaFile(path) => {
            let pem = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| Refused::CaFile {
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?;
            (Some(pem), None)
        }
        ServerTrust::Fingerprint(pin) => (None, Some(fingerprint_text(pin))),
    };
    let secret = state
        .keys
        .open_secret(&seal_context(&claims.sid), sealed)
        .map_err(|e| Refused::Unseal(e.to_string()))?;
    let secret = String::from_utf8(secret.expose_secret().to_vec())
        .map_err(|_| Refused::Unseal("the opened secret is not text".into()))?;
    tracing::info!(session.id = %claims.sid, worker.id = %worker_id, token.id = %pve.tok, "Proxmox API token handed to the worker");
    Ok(Credential {
        token_id: token.token_id(),
        secret,
        expires_at: clock::to_u64(token.expires_at),
        server_name: server_name(&target.address),
        authority: target.address.clone(),
        ca_pem,
        fingerprint,
    })
}

/// Verifies the controller's own grant for this worker and takes its `pve` claim.
fn verify(
    grant: &str,
    keys: &[GrantKey],
    worker_id: &str,
    now: u64,
) -> Result<(GrantClaims, PveClaims), Refused> {
    let claims = portcullis_proto::grant::verify(grant, keys, worker_id, now)
        .map_err(|e| Refused::Grant(e.to_string()))?;
    let pve = claims.pve.clone().ok_or(Refused::NotInjecting)?;
    Ok((claims, pve))
}

/// The session must be live (authorised or active, not expired) and carried by this worker.
fn check_session(
    session: Option<&SessionRecord>,
    worker_id: &str,
    now: u64,
) -> Result<(), Refused> {
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
    Ok(())
}

/// The host of `HOST:PORT` (an IPv6 address without its brackets): the name the worker sends
/// as SNI and checks the certificate for.
pub(crate) fn server_name(address: &str) -> String {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _port)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned()
}

/// `AB:CD:...`, as Proxmox shows certificate fingerprints.
fn fingerprint_text(pin: &[u8; 32]) -> String {
    pin.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_addresss_host() {
        assert_eq!(server_name("pve1.lab:8006"), "pve1.lab");
        assert_eq!(server_name("192.0.2.10:8006"), "192.0.2.10");
        assert_eq!(server_name("[2001:db8::1]:8006"), "2001:db8::1");
    }

    #[test]
    fn a_fingerprint_reads_as_proxmox_shows_it() {
        let mut pin = [0u8; 32];
        pin[0] = 0x80;
        pin[31] = 0xF5;
        let text = fingerprint_text(&pin);
        assert!(
            text.starts_with("80:00:") && text.ends_with(":F5"),
            "{text}"
        );
        assert_eq!(text.len(), 32 * 3 - 1);
    }

    #[test]
    fn only_a_live_session_of_this_worker_gets_its_token() {
        let mut s = SessionRecord {
            id: "s_1".into(),
            user_id: "u".into(),
            target_id: "t".into(),
            worker_id: "w_1".into(),
            state: SessionState::Pending,
            termination_reason: None,
            client_addr: "127.0.0.1".into(),
            client_key_hash: "h".into(),
            endpoint: "192.0.2.10:8006".into(),
            connection_limit: 0,
            connections_count: 0,
            policy_hash: "p".into(),
            created_at: 0,
            expires_at: 100,
            activated_at: None,
            terminated_at: None,
            ssh_mode: portcullis_policy::SshMode::Certificate,
            parent_session_id: None,
        };
        assert!(check_session(Some(&s), "w_1", 50).is_ok());
        assert!(matches!(
            check_session(Some(&s), "w_2", 50),
            Err(Refused::OtherWorker)
        ));
        assert!(matches!(
            check_session(Some(&s), "w_1", 100),
            Err(Refused::Ended)
        ));
        assert!(matches!(
            check_session(None, "w_1", 50),
            Err(Refused::UnknownSession)
        ));
        s.state = SessionState::Minting;
        assert!(matches!(
            check_session(Some(&s), "w_1", 50),
            Err(Refused::Minting)
        ));
        s.state = SessionState::Terminated;
        assert!(matches!(
            check_session(Some(&s), "w_1", 50),
            Err(Refused::Ended)
        ));
    }
}
