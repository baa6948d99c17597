//! `POST /v1/auth/service-token` (docs/auth.md "Service accounts"): a service account
//! exchanges a signed assertion (`portcullis_proto::assertion`) for an API token bound to
//! its key. Its tokens carry `amr = ["svc"]` and live at most `[auth.local]
//! service_token_lifetime`. Every refused assertion gets the same 401; why it was refused is
//! only in the summed `login_failed` event. The accounts themselves: `service_accounts`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::SERVICE_ACCOUNT_AMR;
use portcullis_proto::api::{ServiceTokenRequest, ServiceTokenResponse};
use portcullis_proto::assertion::{self, AssertionError, SERVICE_ISSUER_PREFIX};

use super::error::ApiError;
use super::extract::{ApiJson, PeerAddr};
use super::service_accounts::parse_public_key;
use crate::audit::denials::{Failure, FailureKind};
use crate::clock;
use crate::state::AppState;
use crate::store::rate_limits;
use crate::store::service_accounts as rows;
use crate::store::users::UserRecord;

/// The clock difference tolerated between a signer and the controller.
const ASSERTION_SKEW_SECS: u64 = 60;

/// The one answer to every refused assertion.
const REFUSED: &str = "the assertion was not accepted: check the service account's name, that \
    its key is the one registered and not revoked, the controller address (--addr) and this \
    machine's clock";

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

/// The life of a service account's token: the API's token lifetime, capped by
/// `[auth.local] service_token_lifetime`.
fn service_token_lifetime(token_lifetime: Duration, service_cap: Duration) -> Duration {
    token_lifetime.min(service_cap)
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
