//! Ending access: `POST /v1/auth/logout` (the caller's token and the sessions it opened) and
//! `POST /v1/users/revoke` (every token and live session of a user).

use axum::extract::State;
use axum::Json;
use portcullis_policy::Permission;
use portcullis_proto::api::{LogoutResponse, RevokeUserRequest, RevokeUserResponse, RevokedUser};
use portcullis_proto::link::EndReason;

use super::error::ApiError;
use super::extract::{ApiJson, Principal};
use crate::audit::{event, AuditEvent, Event};
use crate::clock;
use crate::sessions::lifecycle::end_session;
use crate::state::AppState;
use crate::store::{sessions as session_rows, tokens, users};

/// `POST /v1/auth/logout`: revokes the caller's token and ends the sessions it authorised.
pub(crate) async fn logout(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<LogoutResponse>, ApiError> {
    let now = clock::to_i64(state.clock.unix_secs());
    let mut tx = state.begin_audited().await?;
    tokens::revoke(tx.write(), &principal.token_id, now).await?;
    tx.commit(AuditEvent::new(
        principal.actor(),
        Event::LoggedOut {
            details: event::TokenRef {
                token_id: principal.token_id.clone(),
            },
        },
    ))
    .await?;
    let live = {
        let mut conn = state.store.conn().await?;
        session_rows::live_of_tokens(&mut conn, std::slice::from_ref(&principal.token_id)).await?
    };
    let ended = end_all(&state, live, EndReason::Logout, &principal).await?;
    Ok(Json(LogoutResponse {
        token_id: principal.token_id,
        sessions_ended: ended,
    }))
}

/// `POST /v1/users/revoke` (`users:revoke`): revokes every token of a user and ends the
/// user's live sessions.
pub(crate) async fn revoke_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<RevokeUserRequest>,
) -> Result<Json<RevokeUserResponse>, ApiError> {
    principal.require(Permission::UsersRevoke)?;
    if body.subject.is_empty() {
        return Err(ApiError::field("subject", "name the user's subject"));
    }
    let found = {
        let mut conn = state.store.conn().await?;
        users::by_subject(&mut conn, &body.subject, body.issuer.as_deref()).await?
    };
    if found.is_empty() {
        return Err(ApiError::not_found("user with subject", &body.subject));
    }
    let mut out = Vec::new();
    for user in found {
        let now = clock::to_i64(state.clock.unix_secs());
        let mut tx = state.begin_audited().await?;
        let revoked = tokens::revoke_user(tx.write(), &user.id, now).await?;
        // The user's web console sessions end with their tokens (their rows go too).
        crate::store::console_sessions::delete_of_user(tx.write(), &user.id).await?;
        tx.commit(AuditEvent::new(
            principal.actor(),
            Event::UserTokensRevoked {
                details: event::UserTokensRevoked {
                    user_id: user.id.clone(),
                    issuer: user.issuer.clone(),
                    subject: user.subject.clone(),
                    token_ids: revoked.clone(),
                },
            },
        ))
        .await?;
        let ended = end_user_sessions(&state, &user.id, &principal).await?;
        out.push(RevokedUser {
            user_id: user.id,
            issuer: user.issuer,
            subject: user.subject,
            tokens_revoked: revoked,
            sessions_ended: ended,
        });
    }
    Ok(Json(RevokeUserResponse { users: out }))
}

/// Ends every live session of the user `user_id` (whose tokens were just revoked: `POST
/// /v1/users/revoke`, a local user disabled), on `principal`'s behalf; returns the ids of
/// those it ended.
pub(crate) async fn end_user_sessions(
    state: &AppState,
    user_id: &str,
    principal: &Principal,
) -> Result<Vec<String>, ApiError> {
    let live = {
        let mut conn = state.store.conn().await?;
        session_rows::live_of_user(&mut conn, user_id).await?
    };
    end_all(state, live, EndReason::UserRevoked, principal).await
}

/// Ends each of `sessions` with `reason`, on `principal`'s behalf; returns the ids of those it
/// ended (not those that had ended already).
async fn end_all(
    state: &AppState,
    sessions: Vec<String>,
    reason: EndReason,
    principal: &Principal,
) -> Result<Vec<String>, ApiError> {
    let mut ended = Vec::new();
    for id in sessions {
        if end_session(state, &id, reason, principal.actor())
            .await?
            .is_some()
        {
            ended.push(id);
        }
    }
    Ok(ended)
}
