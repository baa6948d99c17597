//! Deleting a session's token after its end: the end's transaction marked the row `revoking`
//! and wiped the secret; [`revoke_now`] makes the first attempt right after the commit and
//! the job ([`super::job`]) retries with backoff until Proxmox confirms the token and its ACL
//! entries gone (`pve_token_revoked`). The first failure is audited
//! (`pve_token_revoke_failed`), then only the 2nd, 4th, 8th... so that an outage of a day
//! adds a handful of events, not thousands.

use std::time::Duration;

use super::management_client;
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::catalog::proxmox::access;
use crate::clock;
use crate::sessions::credentials::backoff;
use crate::state::AppState;
use crate::store::pve_tokens::{self as rows, TokenRecord, TokenState};
use crate::store::StoreError;

/// The longest wait between two attempts: a token outlives its session by at most about
/// this once Proxmox is back.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long the job leaves a deletion queued by a session's end to the first attempt the end
/// starts itself, so that the two do not race.
pub(crate) const FIRST_ATTEMPT_GRACE_SECS: i64 = 5;

/// Attempts the queued deletion of session `session_id`'s token now, in the background (the
/// job retries a failure).
pub(crate) fn revoke_now(state: AppState, session_id: String) {
    tokio::spawn(async move {
        let record = match state.store.conn().await {
            Ok(mut conn) => rows::get(&mut conn, &session_id).await,
            Err(e) => Err(e),
        };
        match record {
            Ok(Some(record)) if record.state == TokenState::Revoking => {
                if let Err(err) = revoke_one(&state, &record).await {
                    tracing::warn!(error = %portcullis_proto::text::escaped(&err), session.id = %session_id, "token deletion not recorded; the job retries");
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %portcullis_proto::text::escaped(&err), session.id = %session_id, "cannot read a queued token deletion; the job retries")
            }
        }
    });
}

/// Whether the failure after `attempts` earlier ones is audited: the first, then each time
/// the count of failures reaches a power of two.
pub(crate) fn audits_failure(attempts: i64) -> bool {
    attempts == 0 || u64::try_from(attempts + 1).is_ok_and(u64::is_power_of_two)
}

/// One attempt at one queued deletion; records the outcome (and audits it). True when
/// Proxmox confirmed.
pub(crate) async fn revoke_one(state: &AppState, record: &TokenRecord) -> Result<bool, StoreError> {
    let token_id = record.token_id();
    let attempt = async {
        let client = management_client(state, &record.cluster).await?;
        access::revoke(&client, &record.userid, &record.token_name).await
    };
    let outcome = attempt.await;
    let now = clock::to_i64(state.clock.unix_secs());
    match outcome {
        Ok(revoked) => {
            let mut tx = state.begin_audited().await?;
            if !rows::set_gone(tx.write(), &record.session_id, now).await? {
                return Ok(true);
            }
            let revoked_event = Event::PveTokenRevoked {
                details: revocation(record, Some(record.attempts + 1), revoked.as_str()),
            };
            tx.commit(AuditEvent::new(Actor::system(), revoked_event).session(&record.session_id))
                .await?;
            tracing::info!(session.id = %record.session_id, token.id = %token_id, outcome = revoked.as_str(), "Proxmox API token deleted");
            state
                .metrics
                .revoked(crate::metrics::CredentialKind::PveToken);
            Ok(true)
        }
        Err(err) => {
            state
                .metrics
                .credential_failed(crate::metrics::CredentialKind::PveToken);
            let delay = backoff(record.attempts, RETRY_MAX);
            let retry_at = now + clock::to_i64(delay);
            let reason = err.to_string();
            if audits_failure(record.attempts) {
                let mut tx = state.begin_audited().await?;
                rows::set_attempt_failed(tx.read(), &record.session_id, &reason, retry_at, now)
                    .await?;
                let failed = Event::PveTokenRevokeFailed {
                    reason,
                    details: revocation(record, Some(record.attempts + 1), "retrying"),
                };
                tx.commit(AuditEvent::new(Actor::system(), failed).session(&record.session_id))
                    .await?;
            } else {
                let mut conn = state.store.conn().await?;
                rows::set_attempt_failed(&mut conn, &record.session_id, &reason, retry_at, now)
                    .await?;
            }
            tracing::warn!(session.id = %record.session_id, token.id = %token_id, error = %portcullis_proto::text::escaped(&err), retry_in_secs = delay, "cannot delete the Proxmox API token yet");
            Ok(false)
        }
    }
}

fn revocation(
    record: &TokenRecord,
    attempts: Option<i64>,
    outcome: &str,
) -> event::PveTokenRevocation {
    event::PveTokenRevocation {
        cluster: record.cluster.clone(),
        token_id: record.token_id(),
        attempts: attempts.and_then(|n| u64::try_from(n).ok()),
        outcome: outcome.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn failures_are_audited_first_and_then_sparsely() {
        let audited: Vec<i64> = (0..40).filter(|a| super::audits_failure(*a)).collect();
        assert_eq!(audited, vec![0, 1, 3, 7, 15, 31]);
    }
}
