//! `/v1/sessions` and `/v1/targets/{id}/authorize-session`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::api::{
    AuthorizeSession, CancelReason, CancelSession, Connection, List, Session, SessionAuthorization,
};
use portcullis_proto::link::EndReason;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::clock;
use crate::sessions::{authorize, lifecycle};
use crate::state::AppState;
use crate::store::connections::{self as connection_rows, ConnectionRecord};
use crate::store::sessions::{self as rows, SessionRecord};
use crate::store::{targets, users};

/// `GET /v1/ssh/ca`: the SSH CA public key (OpenSSH format) for targets' `TrustedUserCAKeys`:
/// the embedded CA's, or with the Vault backend the CA of the configured SSH mount.
pub(crate) async fn ssh_ca(State(state): State<AppState>) -> Result<String, ApiError> {
    if let Some(vault) = &state.vault {
        let mut line = vault
            .ssh_ca_public_key(&vault.config().ssh_mount)
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("cannot read the SSH CA from Vault: {e}"))
            })?;
        line.push('\n');
        return Ok(line);
    }
    let key = state.keys.active(crate::keys::Purpose::SshCa).await?;
    let mut line = crate::ssh::ca_public_openssh(&key.public_key)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    line.push('\n');
    Ok(line)
}

/// `GET /v1/ssh/gateway-ca`: the SSH host CA public key (OpenSSH format) that signs the host
/// certificates of the workers' SSH gateways, for clients' `@cert-authority` lines scoped to
/// the gateway's name. Always the keyset's own `ssh-host-ca`, whatever the user CA backend.
pub(crate) async fn gateway_ca(State(state): State<AppState>) -> Result<String, ApiError> {
    let mut line = crate::gateway::host_ca_line(&state.keys)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    line.push('\n');
    Ok(line)
}

/// `GET /v1/ssh/krl`: an OpenSSH KRL of certificates whose session ended before they
/// expired, for targets' `RevokedKeys`.
pub(crate) async fn ssh_krl(
    State(state): State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let now = state.clock.unix_secs();
    let revoked = {
        let mut conn = state.store.conn().await?;
        crate::store::ssh_certificates::revoked(&mut conn, clock::to_i64(now)).await?
    };
    let keys = state
        .keys
        .verification_keys(crate::keys::Purpose::SshCa)
        .await?;
    let mut per_ca: Vec<(Vec<u8>, Vec<u64>, Vec<String>)> = Vec::new();
    let mut add = |blob: Vec<u8>, ca_key_id: &str| {
        let mine: Vec<&crate::store::ssh_certificates::Revoked> = revoked
            .iter()
            .filter(|r| r.ca_key_id == ca_key_id)
            .collect();
        if !mine.is_empty() {
            per_ca.push((
                blob,
                mine.iter().map(|r| r.serial).collect(),
                mine.iter().map(|r| r.key_id.clone()).collect(),
            ));
        }
    };
    for key in &keys {
        let Ok(public) = <[u8; 32]>::try_from(key.public_key.as_slice()) else {
            continue;
        };
        add(crate::ssh::krl::ed25519_ca_blob(&public), &key.id);
    }
    // Certificates signed by Vault: their CA is the SSH mount's (ca_key_id `vault:MOUNT`).
    let mut mounts: Vec<&str> = revoked
        .iter()
        .filter_map(|r| {
            r.ca_key_id
                .strip_prefix(crate::sessions::credentials::VAULT_CA_PREFIX)
        })
        .collect();
    mounts.sort_unstable();
    mounts.dedup();
    for mount in mounts {
        let Some(vault) = &state.vault else {
            return Err(ApiError::unavailable(
                "the KRL names certificates signed by Vault, but the Vault backend is not configured",
            ));
        };
        let line = vault
            .ssh_ca_public_key(mount)
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot build the KRL: {e}")))?;
        let key = ssh_key::PublicKey::from_openssh(&line)
            .map_err(|e| ApiError::internal(format!("Vault's SSH CA key of {mount:?}: {e}")))?;
        let blob = key
            .to_bytes()
            .map_err(|e| ApiError::internal(format!("Vault's SSH CA key of {mount:?}: {e}")))?;
        add(
            blob,
            &format!("{}{mount}", crate::sessions::credentials::VAULT_CA_PREFIX),
        );
    }
    let sections: Vec<crate::ssh::krl::CaRevocations<'_>> = per_ca
        .iter()
        .map(|(blob, serials, ids)| crate::ssh::krl::CaRevocations {
            ca_blob: blob.clone(),
            serials,
            key_ids: ids,
        })
        .collect();
    let body = crate::ssh::krl::build(&sections, now, now);
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response())
}

pub(crate) async fn authorize_session(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AuthorizeSession>,
) -> Result<(StatusCode, Json<SessionAuthorization>), ApiError> {
    let spki = portcullis_proto::keys::unb64(&body.client_public_key).map_err(|_| {
        ApiError::field(
            "client_public_key",
            "must be base64url DER SubjectPublicKeyInfo",
        )
    })?;
    portcullis_proto::keys::ed25519_from_spki(&spki)
        .map_err(|e| ApiError::field("client_public_key", e.to_string()))?;
    let target = {
        let mut conn = state.store.conn().await?;
        targets::find(&mut conn, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("target", &id))?
    };
    if let Some(hash) = &body.local_secret_sha256 {
        let hex_sha256 = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_sha256 {
            return Err(ApiError::field(
                "local_secret_sha256",
                "must be the SHA-256 of the local secret in lower-case hex (64 characters)",
            ));
        }
    }
    let ask = authorize::Ask {
        client_spki: &spki,
        ssh_public_key: body.ssh_public_key.as_deref(),
        local_secret_sha256: body.local_secret_sha256.as_deref(),
        client_public_key: &body.client_public_key,
        under_request: body.under_request.as_ref(),
        step_up: body.step_up.as_ref(),
    };
    let started = std::time::Instant::now();
    let auth = authorize::authorize(&state, &principal, target, ask).await;
    let outcome = match &auth {
        Ok(_) => crate::metrics::Outcome::Allow,
        Err(_) => crate::metrics::Outcome::Deny,
    };
    state.metrics.authorized(outcome, started.elapsed());
    let auth = auth?;
    Ok((StatusCode::CREATED, Json(auth)))
}

fn conn_to_api(c: &ConnectionRecord) -> Connection {
    Connection {
        id: c.id.clone(),
        client_addr: c.client_addr.clone(),
        state: c.state.clone(),
        bytes_up: clock::to_u64(c.bytes_up),
        bytes_down: clock::to_u64(c.bytes_down),
        opened_at: clock::to_u64(c.opened_at),
        closed_at: c.closed_at.map(clock::to_u64),
        close_reason: c.close_reason.map(|r| r.to_string()),
    }
}

pub(crate) async fn to_api(
    state: &AppState,
    s: &SessionRecord,
    with_connections: bool,
) -> Result<Session, ApiError> {
    let mut conn = state.store.conn().await?;
    let username = users::get(&mut conn, &s.user_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    let target_name = targets::find(&mut conn, &s.target_id)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let connection_count = connection_rows::count(&mut conn, &s.id).await?;
    let connections = if with_connections {
        connection_rows::connections(&mut conn, &s.id)
            .await?
            .iter()
            .map(conn_to_api)
            .collect()
    } else {
        vec![]
    };
    Ok(Session {
        id: s.id.clone(),
        user_id: s.user_id.clone(),
        username,
        target_id: s.target_id.clone(),
        target_name,
        worker_id: s.worker_id.clone(),
        state: s.state.to_string(),
        termination_reason: s.termination_reason.map(|r| r.to_string()),
        client_addr: s.client_addr.clone(),
        endpoint: s.endpoint.clone(),
        connection_limit: u32::try_from(s.connection_limit).unwrap_or(0),
        created_at: clock::to_u64(s.created_at),
        expires_at: clock::to_u64(s.expires_at),
        activated_at: s.activated_at.map(clock::to_u64),
        terminated_at: s.terminated_at.map(clock::to_u64),
        connection_count: u32::try_from(connection_count).unwrap_or(u32::MAX),
        connections,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// At most this many sessions (default 100, at most 1000).
    limit: Option<i64>,
    /// Only sessions that have not ended.
    #[serde(default)]
    live: bool,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// `GET /v1/sessions`: the sessions the caller may see, newest first, a page at a time.
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Session>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let query = rows::PageQuery {
        user_id: (!principal.has(Permission::SessionsReadAll))
            .then_some(principal.user.id.as_str()),
        live_only: q.live,
        username: None,
        target: None,
        state: None,
        after,
        // One more than asked for tells whether another page follows.
        limit: limit + 1,
    };
    let mut records = {
        let mut conn = state.store.conn().await?;
        rows::page(&mut conn, &query).await?
    };
    let more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = more
        .then(|| records.last().map(|s| format!("{}.{}", s.created_at, s.id)))
        .flatten();
    let mut items = Vec::with_capacity(records.len());
    for s in &records {
        items.push(to_api(&state, s, false).await?);
    }
    Ok(Json(List { items, next }))
}

/// A page cursor, `CREATED_AT.ID` of the last session of the previous page.
pub(crate) fn parse_cursor(text: &str) -> Result<(i64, &str), ApiError> {
    text.split_once('.')
        .and_then(|(at, id)| Some((at.parse().ok()?, id)))
        .filter(|(_, id)| !id.is_empty())
        .ok_or_else(|| {
            ApiError::field(
                "after",
                "not a cursor: pass the `next` of the previous page",
            )
        })
}

/// The cancel body: none at all (or blank) means `{}`.
fn cancel_request(body: &[u8]) -> Result<CancelSession, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(CancelSession::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::field(
            "reason",
            format!("the body must be {{}} or {{\"reason\": \"canceled\" | \"closed\"}}: {e}"),
        )
    })
}

pub(crate) async fn visible(
    state: &AppState,
    principal: &Principal,
    id: &str,
    any: Permission,
) -> Result<SessionRecord, ApiError> {
    let session = {
        let mut conn = state.store.conn().await?;
        rows::get(&mut conn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("session", id))?
    };
    if session.user_id != principal.user.id {
        principal.require(any)?;
    }
    Ok(session)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let session = visible(&state, &principal, &id, Permission::SessionsReadAll).await?;
    crate::sessions::idle::client_seen(&state, &session, &principal.user.id).await;
    Ok(Json(to_api(&state, &session, true).await?))
}

/// `POST /v1/sessions/{id}/cancel`, with an optional [`CancelSession`] body.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Session>, ApiError> {
    let request = cancel_request(&body)?;
    let session = cancel_as(&state, &principal, &id, request).await?;
    Ok(Json(to_api(&state, &session, true).await?))
}

/// Ends session `id` on `principal`'s behalf (its own, or any with `sessions:cancel-any`),
/// as `POST /v1/sessions/{id}/cancel` and the console's Cancel button do; the session as it
/// is afterwards.
pub(crate) async fn cancel_as(
    state: &AppState,
    principal: &Principal,
    id: &str,
    request: CancelSession,
) -> Result<SessionRecord, ApiError> {
    let session = visible(state, principal, id, Permission::SessionsCancelAny).await?;
    let reason =
        match request.reason.unwrap_or(CancelReason::Canceled) {
            CancelReason::Canceled => EndReason::Canceled,
            CancelReason::Closed if session.user_id == principal.user.id => EndReason::Closed,
            CancelReason::Closed => return Err(ApiError::field(
                "reason",
                "only the session's own user ends it as `closed`; cancel it instead (`canceled`)",
            )),
        };
    lifecycle::end_session(state, &session.id, reason, principal.actor()).await?;
    let mut conn = state.store.conn().await?;
    rows::get(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("session", id))
}
