//! The console's login session: the `__Host-portcullis-console` cookie, its row (hashed like
//! API tokens: `store::console_sessions`) and the extractor that turns a request's cookie
//! into the same [`Principal`] the API's bearer token gives, so every permission check is
//! the API's own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use super::error::ConsoleError;
use crate::api::extract::{PeerAddr, Principal};
use crate::audit::denials::{Failure, FailureKind};
use crate::audit::AuditedTx;
use crate::clock;
use crate::keys::KeyError;
use crate::state::AppState;
use crate::store::console_sessions::{self as rows, NewConsoleSession};
use crate::store::users::UserRecord;

/// The session cookie's name: `__Host-` makes the browser require Secure, Path=/ and no
/// Domain, so no other host can set or read it.
pub(crate) const COOKIE: &str = "__Host-portcullis-console";

/// A console session just opened: the cookie value, shown once to the browser.
pub(crate) struct Opened {
    /// The random id (32 bytes, base64url); only its SHA-256 is stored.
    pub secret: String,
    /// The login's token id (in its `login_succeeded` event).
    pub token_id: String,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// Stores (or refreshes) `user`, issues the login's API token (lifetime: the shorter of the
/// API's and the console's absolute timeout) and the console session bound to it, and
/// commits them in `tx` (with the changes the login made) with `login_succeeded`.
pub(crate) async fn open_in(
    mut tx: AuditedTx,
    state: &AppState,
    user: &UserRecord,
    source: &str,
) -> Result<Opened, KeyError> {
    let console = state.config.console;
    let now = state.clock.unix_secs();
    let lifetime = state.config.token_lifetime.min(console.absolute_timeout);
    let issued = crate::tokens::insert(&mut tx, now, lifetime, user).await?;
    rows::delete_over(tx.write(), clock::to_i64(now)).await?;
    let secret = crate::ids::new_secret();
    rows::insert(
        tx.write(),
        &NewConsoleSession {
            id_hash: crate::ids::secret_hash(&secret),
            token_id: issued.token_id.clone(),
            user_id: issued.user.id.clone(),
            csrf_token: crate::ids::new_secret(),
            created_at: clock::to_i64(now),
            idle_timeout: clock::to_i64(console.idle_timeout.as_secs()),
            expires_at: clock::to_i64(issued.expires_at),
        },
    )
    .await?;
    let facts = crate::tokens::TokenFacts {
        token_id: &issued.token_id,
        expires_at: issued.expires_at,
    };
    tx.commit(crate::tokens::login_succeeded(&issued.user, &facts, source))
        .await?;
    Ok(Opened {
        secret,
        token_id: issued.token_id,
    })
}

/// The `Set-Cookie` of a new session. No Max-Age: the browser forgets it when it closes;
/// the server's timeouts end it before that.
pub(crate) fn set_cookie(secret: &str) -> String {
    format!("{COOKIE}={secret}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` that makes the browser forget the session.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session cookie's value in the request's `Cookie` headers, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
}

/// The value of the cookie `name` in the request's `Cookie` headers, if any and not empty.
pub(crate) fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// A request with a live console session: its caller as the API sees a bearer token's, and
/// the session's CSRF token.
pub(crate) struct ConsoleUser {
    pub principal: Principal,
    pub csrf_token: String,
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let PeerAddr(peer) = PeerAddr::from_request_parts(parts, state)
            .await
            .map_err(ConsoleError::from)?;
        let Some(secret) = cookie(&parts.headers) else {
            return Err(ConsoleError::LogIn);
        };
        let hash = crate::ids::secret_hash(secret);
        let now = clock::to_i64(state.clock.unix_secs());
        let mut conn = state.store.conn().await.map_err(ConsoleError::from)?;
        let found = rows::authenticate(&mut conn, &hash, now)
            .await
            .map_err(ConsoleError::from)?;
        let Some(live) = found else {
            // Summed per address like the API's rejected tokens (audit::denials).
            state.denials.note(Failure {
                kind: FailureKind::TokenRejected,
                source: peer.ip(),
                reason: "unknown, expired or revoked console session",
                attempted_name: None,
            });
            return Err(ConsoleError::LogIn);
        };
        rows::touch(&mut conn, &hash, now)
            .await
            .map_err(ConsoleError::from)?;
        drop(conn);
        let policy = state.policy();
        let permissions = crate::authz::permissions(policy.as_deref(), &live.user);
        Ok(ConsoleUser {
            principal: Principal {
                user: live.user,
                token_id: live.token_id,
                token_expires_at: live.token_expires_at,
                permissions,
                peer,
            },
            csrf_token: live.csrf_token,
        })
    }
}
