//! Per-session credentials from Vault, tied to the session's life: minting them and revoking
//! them. This module does not end sessions; its callers do.
//!
//! Minting is crash-safe: `authorize` commits the session (state `minting`), the revocation
//! intent (a `vault_credentials` row) and the audit event in one transaction before Vault is
//! called. Then [`mint`] creates the session's token through the token role (its accessor is
//! committed at once), signs the SSH certificate and reads the target's leased secrets with
//! that token ([`super::mint`] commits the result or ends the session). Whatever ends the
//! session queues the revocation in the same transaction (`lifecycle::end_session`); it is
//! attempted right after the commit ([`revoke_now`]) and retried with backoff by the
//! credentials job (`credential_job`, one controller at a time, under a store lease) until
//! Vault confirms.

use std::time::Duration;

use portcullis_proto::api::LeasedSecret;

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::state::AppState;
use crate::store::vault_credentials as rows;
use crate::store::StoreError;
use crate::vault::{SignRequest, Vault, VaultError};

/// `ca_key_id` of certificates signed by Vault: `vault:MOUNT`.
pub(crate) const VAULT_CA_PREFIX: &str = "vault:";

/// A new session token lives this long until its accessor is stored and it is extended: a
/// token made by a controller that dies in between expires by itself.
pub(crate) const ORPHAN_WINDOW: Duration = Duration::from_secs(120);

/// What the session asks Vault for.
pub(crate) struct MintRequest<'a> {
    pub intent_id: &'a str,
    pub session_id: &'a str,
    pub user: &'a str,
    pub target_id: &'a str,
    /// The session's maximum: the token's `explicit_max_ttl`.
    pub session_ttl: Duration,
    pub ssh: Option<SshPart<'a>>,
    pub secrets: &'a [String],
}

pub(crate) struct SshPart<'a> {
    pub mount: &'a str,
    pub role: &'a str,
    pub public_key: &'a str,
    pub principals: &'a [String],
    pub source_addresses: &'a [String],
    pub ttl_secs: u64,
}

/// What a mint produced (the session's token itself is dropped at the end of [`mint`]).
pub(crate) struct Minted {
    pub accessor: String,
    pub certificate: Option<(String, u64)>,
    pub secrets: Vec<LeasedSecret>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MintError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the session ended while its credentials were minted")]
    Ended,
    #[error("{0}")]
    Seal(String),
}

/// A test-only crash point (debug builds): the process exits when `PORTCULLIS_TEST_FAULT`
/// names it, to prove that a crash at that point leaves nothing alive.
pub(crate) fn fault_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("PORTCULLIS_TEST_FAULT").as_deref() == Ok(name) {
        eprintln!("PORTCULLIS_TEST_FAULT={name}: exiting on purpose");
        std::process::exit(86);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Mints a session's credentials after its intent is committed. On error, the caller ends
/// the session, which revokes whatever was made.
pub(crate) async fn mint(
    state: &AppState,
    vault: &Vault,
    req: &MintRequest<'_>,
) -> Result<Minted, MintError> {
    let token = vault
        .create_session_token(
            req.session_id,
            req.user,
            req.target_id,
            ORPHAN_WINDOW,
            req.session_ttl,
        )
        .await?;
    let now_state = {
        let mut conn = state.store.conn().await?;
        rows::set_accessor(&mut conn, req.intent_id, &token.accessor).await?
    };
    if now_state.as_deref() != Some(rows::MINTING) {
        // The session ended meanwhile: its revocation is queued and now names the accessor.
        revoke_now(state.clone(), vault.clone(), vec![req.intent_id.to_owned()]);
        return Err(MintError::Ended);
    }
    fault_point("exit-after-session-token");
    vault.extend(&token.token, req.session_ttl).await?;
    let certificate = match &req.ssh {
        None => None,
        Some(ssh) => {
            let signed = vault
                .sign_ssh(
                    &token.token,
                    &SignRequest {
                        mount: ssh.mount,
                        role: ssh.role,
                        public_key: ssh.public_key,
                        key_id: req.session_id,
                        principals: ssh.principals,
                        source_addresses: ssh.source_addresses,
                        ttl_secs: ssh.ttl_secs,
                    },
                )
                .await?;
            Some((signed.certificate, signed.serial))
        }
    };
    let mut secrets = Vec::new();
    for path in req.secrets {
        let leased = vault.read_leased(&token.token, path).await?;
        secrets.push(LeasedSecret {
            path: path.clone(),
            lease_id: leased.lease_id,
            lease_duration_secs: leased.lease_duration,
            data: leased.data,
        });
        let ids = lease_ids(&secrets);
        let mut conn = state.store.conn().await?;
        rows::set_leases(&mut conn, req.intent_id, &ids).await?;
    }
    Ok(Minted {
        accessor: token.accessor,
        certificate,
        secrets,
    })
}

pub(crate) fn lease_ids(secrets: &[LeasedSecret]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| !s.lease_id.is_empty())
        .map(|s| s.lease_id.clone())
        .collect()
}

/// Attempts the queued revocations `ids` now, in the background (the job retries failures).
pub(crate) fn revoke_now(state: AppState, vault: Vault, ids: Vec<String>) {
    tokio::spawn(async move {
        for id in ids {
            let record = match state.store.conn().await {
                Ok(mut conn) => rows::get(&mut conn, &id).await,
                Err(e) => Err(e),
            };
            match record {
                Ok(Some(record)) if record.state == rows::REVOKING => {
                    if let Err(err) = revoke_one(&state, &vault, &record).await {
                        tracing::warn!(error = %portcullis_proto::text::escaped(&err), credential.id = %id, "revocation not recorded; the job retries");
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %portcullis_proto::text::escaped(&err), credential.id = %id, "cannot read a queued revocation; the job retries")
                }
            }
        }
    });
}

/// Seconds until the next attempt after `attempts` failed ones: from 1 s, doubling and
/// jittered, at most `max` ([`portcullis_net::retry`]), so revocations that failed together
/// (Vault was down) are not all retried in the same second.
pub(crate) fn backoff(attempts: i64, max: Duration) -> u64 {
    let attempt = usize::try_from(attempts).unwrap_or(0);
    let wait = portcullis_net::retry::nth_wait(attempt, Duration::from_secs(1), max);
    wait.as_secs().max(1)
}

/// One attempt at one queued revocation; records the outcome (and audits it).
pub(crate) async fn revoke_one(
    state: &AppState,
    vault: &Vault,
    record: &rows::CredentialRecord,
) -> Result<bool, StoreError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let outcome = match &record.token_accessor {
        Some(accessor) => vault.revoke_accessor(accessor).await.map(|()| "revoked"),
        None => {
            // No token was recorded: the mint died before Vault answered or before the
            // accessor was stored. A token made then expires at the end of its orphan window.
            let window_end = record.created_at + clock::to_i64(ORPHAN_WINDOW.as_secs()) + 5;
            if now < window_end {
                let mut conn = state.store.conn().await?;
                rows::set_attempt_failed(
                    &mut conn,
                    &record.id,
                    "no token accessor recorded yet; waiting for the orphan window to pass",
                    window_end,
                )
                .await?;
                return Ok(false);
            }
            Ok("no_token_recorded")
        }
    };
    match outcome {
        Ok(outcome) => {
            let mut tx = state.begin_audited().await?;
            if !rows::set_revoked(tx.write(), &record.id, outcome, now).await? {
                return Ok(true);
            }
            let revoked = Event::CredentialRevoked {
                details: revocation(record, Some(record.attempts + 1), outcome),
            };
            tx.commit(AuditEvent::new(Actor::system(), revoked).session(&record.session_id))
                .await?;
            tracing::info!(session.id = %record.session_id, credential.id = %record.id, outcome, "Vault credentials revoked");
            state.metrics.revoked(crate::metrics::CredentialKind::Vault);
            Ok(true)
        }
        Err(err) => {
            state
                .metrics
                .credential_failed(crate::metrics::CredentialKind::Vault);
            let delay = backoff(record.attempts, vault.config().revoke_retry_max);
            // The retry schedule is bookkeeping; the first failure is the audited fact.
            let retry_at = now + clock::to_i64(delay);
            if record.attempts == 0 {
                let mut tx = state.begin_audited().await?;
                rows::set_attempt_failed(tx.read(), &record.id, &err.to_string(), retry_at).await?;
                let failed = Event::CredentialRevokeFailed {
                    reason: err.to_string(),
                    details: revocation(record, None, "retrying"),
                };
                tx.commit(AuditEvent::new(Actor::system(), failed).session(&record.session_id))
                    .await?;
            } else {
                let mut conn = state.store.conn().await?;
                rows::set_attempt_failed(&mut conn, &record.id, &err.to_string(), retry_at).await?;
            }
            tracing::warn!(session.id = %record.session_id, credential.id = %record.id, error = %portcullis_proto::text::escaped(&err), retry_in_secs = delay, "cannot revoke Vault credentials yet");
            Ok(false)
        }
    }
}

/// The identifiers of a revocation its events name (never the token or a secret).
fn revocation(
    record: &rows::CredentialRecord,
    attempts: Option<i64>,
    outcome: &str,
) -> event::CredentialRevocation {
    event::CredentialRevocation {
        credential_id: record.id.clone(),
        token_accessor: record.token_accessor.clone(),
        lease_ids: record.lease_ids.clone(),
        attempts: attempts.and_then(|n| u64::try_from(n).ok()),
        outcome: outcome.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum() {
        let max = std::time::Duration::from_secs(30);
        for _ in 0..100 {
            assert_eq!(super::backoff(0, max), 1);
            assert!((8..16).contains(&super::backoff(3, max)));
            assert!((15..=30).contains(&super::backoff(10, max)));
            assert!((15..=30).contains(&super::backoff(100, max)));
            assert_eq!(super::backoff(-1, max), 1);
        }
        // Jittered: a hundred revocations that failed together are not all retried together.
        let spread: std::collections::HashSet<_> =
            (0..100).map(|_| super::backoff(4, max)).collect();
        assert!(spread.len() > 1);
        // A maximum below a second still waits a second.
        assert_eq!(super::backoff(5, std::time::Duration::ZERO), 1);
    }
}
