//! Worker enrolment: join tokens are single use, expire, and are stored hashed; each
//! carries the hash of the CA's key so a worker can tell the real controller.

use portcullis_proto::api::join_token;

use crate::audit::{self, Actor, AuditEvent};
use crate::clock;
use crate::ids::{new_id, new_secret, secret_hash, IdKind};
use crate::keys::{KeyError, Keyset};
use crate::store::join_tokens::{self, JoinTokenRecord};
use crate::store::{Store, StoreError};

/// Creates a join token valid for `ttl_secs`; returns the token (shown once) and its expiry.
pub async fn issue_join_token(
    store: &Store,
    keys: &Keyset,
    actor: Option<Actor>,
    ttl_secs: u64,
) -> Result<(String, u64), KeyError> {
    let ca = keys.certificate_authority().await?;
    let secret = new_secret();
    let now = clock::now();
    let record = JoinTokenRecord {
        id: new_id(IdKind::JoinToken),
        token_hash: secret_hash(&secret),
        created_by: actor.as_ref().and_then(|a| a.user_id.clone()),
        created_at: clock::to_i64(now),
        expires_at: clock::to_i64(now + ttl_secs),
    };
    let signer = audit::signer(keys).await?;
    let mut tx = store.begin().await?;
    join_tokens::insert(&mut tx, &record).await?;
    audit::record(
        &mut tx,
        &signer,
        AuditEvent::new(
            audit::kind::WORKER_JOIN_TOKEN_CREATED,
            actor.unwrap_or_else(Actor::system),
        )
        .details(serde_json::json!({"join_token_id": record.id, "expires_at": now + ttl_secs})),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((
        join_token::format(&ca.key_fingerprint, &secret),
        now + ttl_secs,
    ))
}
