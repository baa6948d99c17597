//! Service accounts (docs/auth.md "Service accounts"): `/v1/users/services` for callers with
//! `users:admin` whose login met MFA, and `POST /v1/auth/service-token`, where an account
//! exchanges a signed assertion (`portcullis_proto::assertion`) for an API token bound to
//! its key.
//!
//! An account is a `users` row of issuer `service:` (subject = its name) with one Ed25519
//! key. Its tokens carry `amr = ["svc"]`, which a role's MFA requirement never accepts unless
//! the role says `service_accounts = true`, and live at most `[auth.local]
//! service_token_lifetime`. Every refused assertion gets the same 401; why it was refused is
//! only in the summed `login_failed` event.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::SERVICE_ACCOUNT_AMR;
use portcullis_proto::api::{ServiceTokenRequest, ServiceTokenResponse};
use portcullis_proto::assertion::{self, AssertionError, SERVICE_ISSUER_PREFIX};
use portcullis_proto::keys::ed25519_fingerprint;
use portcullis_proto::link::EndReason;
use portcullis_proto::users::{
    AddServiceAccount, ServiceAccountList, ServiceAccountView, ServiceKeyRevoked,
};

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr, Principal};
use crate::audit::denials::{Failure, FailureKind};
use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, IdKind};
use crate::sessions::lifecycle::end_session;
use crate::state::AppState;
use crate::store::service_accounts::{self as rows, ServiceAccount, ServiceAccountRecord};
use crate::store::users::UserRecord;
use crate::store::{rate_limits, sessions as session_rows, StoreError};

/// The clock difference tolerated between a signer and the controller.
const ASSERTION_SKEW_SECS: u64 = 60;

/// The one answer to every refused assertion.
const REFUSED: &str = "the assertion was not accepted: check the service account's name, that \
    its key is the one registered and not revoked, the controller address (--addr) and this \
    machine's clock";

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

/// `POST /v1/auth/service-token`: 201.
pub(crate) async fn token(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(body): ApiJson<ServiceTokenRequest>,
) -> Result<(StatusCode, Json<ServiceTokenResponse>), ApiError> {
    if !state.config.local_auth.enabled {
        return Err(ApiError::not_found("route", "/v1/auth/service-token"));
    }
    let now = state.clock.unix_secs();
    let mut attempted_name = None;
    let refuse = |reason: &'static str, attempted_name: Option<String>| {
        state.metrics.login(
            crate::metrics::LoginMethod::ServiceAccount,
            crate::metrics::LoginOutcome::Failure,
        );
        // Summed per address (audit::denials); the claimed name is a sample, not an actor.
        state.denials.note(Failure {
            kind: FailureKind::LoginFailed,
            source: peer.ip(),
            reason,
            attempted_name,
        });
        ApiError::unauthorized(REFUSED)
    };
    let allowed = {
        let mut conn = state.store.conn().await?;
        rate_limits::hit(
            &mut conn,
            &format!("login:{}", peer.ip()),
            clock::to_i64(now),
            60,
            state.config.login_rate_limit,
        )
        .await?
    };
    if !allowed {
        state.metrics.login(
            crate::metrics::LoginMethod::ServiceAccount,
            crate::metrics::LoginOutcome::Failure,
        );
        state.denials.note(Failure {
            kind: FailureKind::LoginFailed,
            source: peer.ip(),
            reason: "rate limited",
            attempted_name: None,
        });
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many login attempts from this address; wait a minute",
        ));
    }
    let Ok(name) = assertion::unverified_account(&body.assertion) else {
        return Err(refuse("malformed service-account assertion", None));
    };
    if crate::tokens::valid_username(&name) {
        attempted_name = Some(name.clone());
    }
    let found = {
        let mut conn = state.store.conn().await?;
        rows::by_name(&mut conn, SERVICE_ISSUER_PREFIX, &name).await?
    };
    let Some(found) = found else {
        return Err(refuse("unknown service account", attempted_name));
    };
    if found.account.key_revoked_at.is_some() {
        return Err(refuse("service account key revoked", attempted_name));
    }
    let key = parse_public_key(&found.account.public_key).map_err(|m| {
        tracing::error!(account = %name, "the stored key of a service account is unreadable: {m}");
        ApiError::internal(
            "the service account's stored key is unreadable; see the controller's log",
        )
    })?;
    let Ok(audience) = assertion::unverified_audience(&body.assertion) else {
        return Err(refuse(
            "malformed service-account assertion",
            attempted_name,
        ));
    };
    if !accepts_audience(&audience, &state.config.api_tls_names) {
        return Err(refuse(
            "service-account assertion for another controller",
            attempted_name,
        ));
    }
    let verified = match assertion::verify(
        &body.assertion,
        &[key.raw],
        &audience,
        now,
        ASSERTION_SKEW_SECS,
    ) {
        Ok(verified) => verified,
        Err(e) => return Err(refuse(refusal_reason(&e), attempted_name)),
    };
    if verified.key_fingerprint != found.account.key_fingerprint {
        return Err(refuse(
            "service-account assertion signed by another key",
            attempted_name,
        ));
    }
    let lifetime = service_token_lifetime(
        state.config.token_lifetime,
        state.config.local_auth.service_token_lifetime,
    );
    let user = UserRecord {
        amr: vec![SERVICE_ACCOUNT_AMR.into()],
        auth_time: Some(clock::to_i64(now)),
        updated_at: clock::to_i64(now),
        ..found.user.clone()
    };
    let mut tx = state.begin_audited().await?;
    let fresh = rows::remember_assertion(
        tx.write(),
        &verified.claims.jti,
        &found.user.id,
        clock::to_i64(verified.remember_until),
        clock::to_i64(now),
    )
    .await?;
    if !fresh {
        // Dropping the transaction rolls it back: nothing was written.
        drop(tx);
        return Err(refuse("replayed service-account assertion", attempted_name));
    }
    let issued = crate::tokens::insert(&mut tx, now, lifetime, &user).await?;
    rows::bind_token(
        tx.write(),
        &issued.token_id,
        &found.user.id,
        &verified.key_fingerprint,
    )
    .await?;
    let facts = crate::tokens::TokenFacts {
        token_id: &issued.token_id,
        expires_at: issued.expires_at,
    };
    tx.commit(crate::tokens::login_succeeded(
        &issued.user,
        &facts,
        &peer.ip().to_string(),
    ))
    .await?;
    state.metrics.login(
        crate::metrics::LoginMethod::ServiceAccount,
        crate::metrics::LoginOutcome::Success,
    );
    let info =
        super::login::user_info(&state, &issued.user, Some(clock::to_i64(issued.expires_at)));
    Ok((
        StatusCode::CREATED,
        Json(ServiceTokenResponse {
            login: portcullis_proto::api::LoginResponse {
                token: issued.secret,
                expires_at: issued.expires_at,
                user: info,
            },
            key_fingerprint: verified.key_fingerprint,
        }),
    ))
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

/// The life of a service account's token: the API's token lifetime, capped by
/// `[auth.local] service_token_lifetime`.
fn service_token_lifetime(token_lifetime: Duration, service_cap: Duration) -> Duration {
    token_lifetime.min(service_cap)
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
struct PublicKey {
    line: String,
    raw: [u8; 32],
    fingerprint: String,
}

/// Parses the OpenSSH one-line form of an Ed25519 public key (`ssh-ed25519 AAAA... comment`);
/// any other key type is refused with a sentence saying what to use.
fn parse_public_key(text: &str) -> Result<PublicKey, String> {
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

/// Whether `aud` names this controller: `https://NAME[:PORT]` for a NAME among the API's
/// certificate names (`[api] tls_names`), the only names a client can reach it under (any
/// other fails TLS). The port is not compared, so that a port forward (a container publishing
/// the API on another port) keeps working; no path, query or user part.
fn accepts_audience(aud: &str, tls_names: &[String]) -> bool {
    let Ok(url) = url::Url::parse(aud) else {
        return false;
    };
    if url.scheme() != "https"
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.path() != "/"
    {
        return false;
    }
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return false,
    };
    tls_names
        .iter()
        .any(|name| name.trim_matches(['[', ']']).eq_ignore_ascii_case(&host))
}

/// The reason a refused assertion is counted under (never shown to the caller).
fn refusal_reason(err: &AssertionError) -> &'static str {
    match err {
        AssertionError::Malformed(_) | AssertionError::BadJti => {
            "malformed service-account assertion"
        }
        AssertionError::WrongAlgorithm => "service-account assertion not signed with EdDSA",
        AssertionError::MissingKeyId | AssertionError::UnknownKey(_) => {
            "service-account assertion signed by another key"
        }
        AssertionError::BadSignature => "service-account assertion signature invalid",
        AssertionError::Expired => "service-account assertion expired",
        AssertionError::NotYetValid => "service-account assertion not valid yet",
        AssertionError::LifetimeTooLong => "service-account assertion lives too long",
        AssertionError::WrongAudience(_) => "service-account assertion for another controller",
        AssertionError::WrongIssuer => "service-account assertion with a wrong issuer",
        AssertionError::Signing(_) => "malformed service-account assertion",
    }
}

#[cfg(test)]
mod tests;
