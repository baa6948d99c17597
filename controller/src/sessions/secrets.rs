//! A session's leased secrets (the data Vault returned for its target's `vault_secrets`):
//! sealed under the master key when its mint commits (`sessions::mint`, in the transaction
//! that makes it pending), deleted when it ends (`lifecycle`), and served by [`read`] only to
//! the session's own user while it is live, each read committed with `session_secrets_read`.
//! The authorize answer names them without their data.

use portcullis_proto::api::{LeasedSecret, SessionSecrets};

use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::keys::{KeyError, Keyset};
use crate::secret::ExposeSecret as _;
use crate::state::AppState;
use crate::store::session_secrets::{self as rows, SealedSecrets};
use crate::store::sessions::{self as session_rows, SessionRecord, SessionState};
use crate::store::StoreError;

/// The associated data a session's secrets are sealed with: sealed secrets moved to another
/// session's row do not open.
pub(crate) fn seal_context(session_id: &str) -> String {
    format!("session_secrets:{session_id}")
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretsError {
    #[error("no session {0:?}")]
    NoSession(String),
    /// Anyone but the session's own user: answered like an unknown session.
    #[error("no session {0:?}")]
    NotOwner(String),
    #[error(
        "session {id} has ended ({reason}); its leased secrets were revoked with it: open a \
         new session"
    )]
    Ended { id: String, reason: String },
    #[error(
        "session {0} is still minting its credentials; ask again in a moment (the authorize \
         answer comes once they are minted)"
    )]
    Minting(String),
    #[error(
        "session {0} has no leased secrets: its target names no `vault_secrets` (see \
         `portcullis targets show`)"
    )]
    NoSecrets(String),
    #[error("cannot seal or open the session's secrets: {0}")]
    Crypt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<KeyError> for SecretsError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Store(e) => SecretsError::Store(e),
            other => SecretsError::Crypt(other.to_string()),
        }
    }
}

/// The row that keeps `secrets` of `session_id`, sealed.
pub(crate) fn seal(
    keys: &Keyset,
    session_id: &str,
    secrets: &[LeasedSecret],
    now: i64,
) -> Result<SealedSecrets, SecretsError> {
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(secrets).map_err(|e| SecretsError::Crypt(e.to_string()))?,
    );
    let sealed = keys.seal_secret(&seal_context(session_id), &plain)?;
    Ok(SealedSecrets {
        session_id: session_id.to_owned(),
        paths: secrets.iter().map(|s| s.path.clone()).collect(),
        sealed,
        created_at: now,
    })
}

/// The secrets of a row [`seal`] made for the same session.
pub(crate) fn open(keys: &Keyset, row: &SealedSecrets) -> Result<Vec<LeasedSecret>, SecretsError> {
    let plain = keys.open_secret(&seal_context(&row.session_id), &row.sealed)?;
    serde_json::from_slice(plain.expose_secret()).map_err(|e| SecretsError::Crypt(e.to_string()))
}

/// Whether `user_id` may read the secrets of `session` at `now`: its own user only, and only
/// while it is live (a session past its expiry that the sweeper has not ended yet counts as
/// ended).
pub(crate) fn may_read(
    session: &SessionRecord,
    user_id: &str,
    now: i64,
) -> Result<(), SecretsError> {
    if session.user_id != user_id {
        return Err(SecretsError::NotOwner(session.id.clone()));
    }
    match session.state {
        SessionState::Terminated => Err(SecretsError::Ended {
            id: session.id.clone(),
            reason: session
                .termination_reason
                .map_or_else(|| "ended".to_owned(), |r| r.to_string()),
        }),
        _ if session.expires_at <= now => Err(SecretsError::Ended {
            id: session.id.clone(),
            reason: "expired".to_owned(),
        }),
        SessionState::Minting => Err(SecretsError::Minting(session.id.clone())),
        SessionState::Pending | SessionState::Active => Ok(()),
    }
}

/// Serves the session's secrets to `actor`, whose user id is `user_id`: checked, opened and
/// committed with `session_secrets_read` (paths and leases only) in one transaction, so that
/// a read that cannot be audited serves nothing.
pub(crate) async fn read(
    state: &AppState,
    actor: &Actor,
    user_id: &str,
    session_id: &str,
) -> Result<SessionSecrets, SecretsError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    let session = session_rows::get(tx.read(), session_id)
        .await?
        .ok_or_else(|| SecretsError::NoSession(session_id.to_owned()))?;
    may_read(&session, user_id, now)?;
    let row = rows::get(tx.read(), session_id)
        .await?
        .ok_or_else(|| SecretsError::NoSecrets(session_id.to_owned()))?;
    let secrets = open(&state.keys, &row)?;
    let read = Event::SessionSecretsRead {
        details: event::SessionSecretsRead {
            paths: secrets.iter().map(|s| s.path.clone()).collect(),
            lease_ids: secrets.iter().map(|s| s.lease_id.clone()).collect(),
        },
    };
    tx.commit(
        AuditEvent::new(actor.clone(), read)
            .session(session_id)
            .target(&session.target_id),
    )
    .await?;
    tracing::info!(
        session.id = session_id,
        secrets = secrets.len(),
        "leased secrets read by the session's user"
    );
    Ok(SessionSecrets {
        session_id: session_id.to_owned(),
        secrets,
    })
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
