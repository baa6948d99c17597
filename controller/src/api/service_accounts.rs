//! Service accounts (docs/auth.md "Service accounts"): `/v1/users/services` for callers with
//! `users:admin` whose login met MFA. How an account logs in: `service_token`.
//!
//! An account is a `users` row of issuer `service:` (subject = its name) with one Ed25519
//! key. Its tokens carry `amr = ["svc"]`, which a role's MFA requirement never accepts unless
//! the role says `service_accounts = true`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::SERVICE_ACCOUNT_AMR;
use portcullis_proto::assertion::SERVICE_ISSUER_PREFIX;
use portcullis_proto::keys::ed25519_fingerprint;
use portcullis_proto::link::EndReason;
use portcullis_proto::users::{
    AddServiceAccount, ServiceAccountList, ServiceAccountView, ServiceKeyRevoked,
};

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::sessions::lifecycle::end_session;
use crate::state::AppState;
use crate::store::service_accounts::{self as rows, ServiceAccount, ServiceAccountRecord};
use crate::store::users::UserRecord;
use crate::store::{sessions as session_rows, StoreError};

/// `POST /v1/users/services`: 201.
pub(crate) async fn add(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<AddServiceAccount>,
) -> Result<(StatusCode, Json<ServiceAccountView>), ApiError> {
    principal.require_user_admin()?;
    if !crate::tokens::valid_username(&body.name) {
        return Err(ApiError::field(
            "name",
            "1-64 letters, digits, `-`, `_`, `.` or `@`",
        ));
    }
    check_groups(&body.groups, &state.config.local_auth.allowed_groups)?;
    let public =
        parse_public_key(&body.public_key).map_err(|m| ApiError::field("public_key", m))?;
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    if rows::by_name(tx.read(), SERVICE_ISSUER_PREFIX, &body.name)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the service account {} exists already: revoke its key and choose another name \
                 for a new one",
                body.name
            ),
        ));
    }
    let user = crate::store::users::upsert(
        tx.write(),
        &UserRecord {
            id: new_id(IdKind::User),
            issuer: SERVICE_ISSUER_PREFIX.into(),
            subject: body.name.clone(),
            username: body.name.clone(),
            email: None,
            name: None,
            groups: body.groups.clone(),
            amr: vec![SERVICE_ACCOUNT_AMR.into()],
            acr: None,
            auth_time: None,
            updated_at: now,
        },
    )
    .await?;
    let record = ServiceAccountRecord {
        user_id: user.id.clone(),
        public_key: public.line,
        key_fingerprint: public.fingerprint,
        key_revoked_at: None,
        created_at: now,
    };
    rows::insert(tx.write(), &record)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "the key {} is registered for another service account already: give each \
                     account its own key (`ssh-keygen -t ed25519 -N ''`)",
                    record.key_fingerprint
                ),
            ),
            other => other.into(),
        })?;
    tx.commit(AuditEvent::new(
        principal.actor(),
        Event::ServiceAccountCreated {
            details: event::ServiceAccountCreated {
                account: user.subject.clone(),
                user_id: user.id.clone(),
                issuer: user.issuer.clone(),
                groups: user.groups.clone(),
                key_fingerprint: record.key_fingerprint.clone(),
            },
        },
    ))
    .await?;
    let view = view(&ServiceAccount {
        user,
        account: record,
    });
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/users/services`.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ServiceAccountList>, ApiError> {
    principal.require_user_admin()?;
    let accounts = {
        let mut conn = state.store.conn().await?;
        rows::list(&mut conn).await?
    };
    Ok(Json(ServiceAccountList {
        accounts: accounts.iter().map(view).collect(),
    }))
}

/// `POST /v1/users/services/{name}/revoke-key`: the key obtains no more tokens, the tokens
/// it obtained are revoked and the sessions they opened end.
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<ServiceKeyRevoked>, ApiError> {
    principal.require_user_admin()?;
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    let Some(mut found) = rows::by_name(tx.read(), SERVICE_ISSUER_PREFIX, &name).await? else {
        return Err(ApiError::not_found("service account", &name));
    };
    let Some(token_ids) = rows::revoke_key(tx.write(), &found.user.id, now).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the key of the service account {name} was revoked already; for a new key, add \
                 a new service account"
            ),
        ));
    };
    tx.commit(AuditEvent::new(
        principal.actor(),
        Event::ServiceKeyRevoked {
            details: event::ServiceKeyRevoked {
                account: found.user.subject.clone(),
                user_id: found.user.id.clone(),
                key_fingerprint: found.account.key_fingerprint.clone(),
                token_ids: token_ids.clone(),
            },
        },
    ))
    .await?;
    found.account.key_revoked_at = Some(now);
    let live = {
        let mut conn = state.store.conn().await?;
        session_rows::live_of_tokens(&mut conn, &token_ids).await?
    };
    for session in live {
        end_session(&state, &session, EndReason::UserRevoked, principal.actor()).await?;
    }
    Ok(Json(ServiceKeyRevoked {
        account: view(&found),
        revoked_token_ids: token_ids,
    }))
}

fn view(a: &ServiceAccount) -> ServiceAccountView {
    ServiceAccountView {
        id: a.user.id.clone(),
        name: a.user.subject.clone(),
        groups: a.user.groups.clone(),
        key_fingerprint: a.account.key_fingerprint.clone(),
        key_revoked_at: a.account.key_revoked_at.map(clock::to_u64),
        created_at: clock::to_u64(a.account.created_at),
    }
}

/// Every group must be a valid name among `allowed` (`[auth.local] allowed_groups`).
fn check_groups(
    groups: &[String],
    allowed: &std::collections::BTreeSet<String>,
) -> Result<(), ApiError> {
    if groups.is_empty() {
        return Err(ApiError::field(
            "groups",
            "name at least one group (among [auth.local] allowed_groups)",
        ));
    }
    for group in groups {
        if !allowed.contains(group) {
            return Err(ApiError::field(
                "groups",
                format!(
                    "the group {group:?} is not among the controller's [auth.local] \
                     allowed_groups ({}): add it there and restart the controller, or grant \
                     another group",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// A registered public key: its canonical OpenSSH line, raw Ed25519 bytes and fingerprint.
#[derive(Debug)]
pub(super) struct PublicKey {
    line: String,
    pub(super) raw: [u8; 32],
    pub(super) fingerprint: String,
}

/// Parses the OpenSSH one-line form of an Ed25519 public key (`ssh-ed25519 AAAA... comment`);
/// any other key type is refused with a sentence saying what to use.
pub(super) fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let text = text.trim();
    // Read before parsing: this build of ssh-key knows no other algorithm to name.
    let kind = text.split_whitespace().next().unwrap_or_default();
    let other_type = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| kind.starts_with(p));
    if other_type && kind != "ssh-ed25519" {
        return Err(format!(
            "the key is {kind}, not Ed25519: service accounts sign with Ed25519 keys only; make \
             one with `ssh-keygen -t ed25519 -N '' -f KEY` and pass KEY.pub"
        ));
    }
    let key = ssh_key::PublicKey::from_openssh(text).map_err(|e| {
        format!(
            "not an OpenSSH public key line like `ssh-ed25519 AAAA... comment` ({e}): pass the \
             .pub file `ssh-keygen -t ed25519 -N ''` wrote"
        )
    })?;
    let Some(ed25519) = key.key_data().ed25519() else {
        return Err(format!(
            "the key is {}, not Ed25519: service accounts sign with Ed25519 keys only; make one \
             with `ssh-keygen -t ed25519 -N '' -f KEY` and pass KEY.pub",
            key.algorithm()
        ));
    };
    let raw = ed25519.0;
    let line = key
        .to_openssh()
        .map_err(|e| format!("cannot encode the key again ({e})"))?;
    Ok(PublicKey {
        line,
        raw,
        fingerprint: ed25519_fingerprint(&raw),
    })
}

#[cfg(test)]
mod tests;
