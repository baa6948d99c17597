//! Request extractors: the authenticated caller, and JSON bodies whose errors name the field.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use portcullis_policy::Permission;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::audit::denials::Failure;
use crate::audit::Actor;
use crate::state::AppState;
use crate::store::users::UserRecord;

/// The peer address of the TLS connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<PeerAddr>()
            .copied()
            .ok_or_else(|| ApiError::internal("peer address missing"))
    }
}

/// The `amr` values (RFC 8176) that count as MFA for the controller's own checks (user
/// administration): `otp` (a local user's TOTP), `mfa`, `hwk` (a hardware key), `swk`.
pub(crate) const MFA_AMR: &[&str] = &["otp", "mfa", "hwk", "swk"];

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub user: UserRecord,
    pub token_id: String,
    pub token_expires_at: i64,
    pub permissions: BTreeSet<Permission>,
    pub peer: SocketAddr,
}

impl Principal {
    pub(crate) fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Fails with 403 unless the caller holds `permission`.
    pub(crate) fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.has(permission) {
            Ok(())
        } else {
            let mut err = ApiError::forbidden(format!(
                "this needs the `{permission}` permission, which none of your roles grants"
            ));
            err.denied = Some(Box::new(super::error::Denied {
                actor: self.actor(),
                permission: permission.to_string(),
            }));
            Err(err)
        }
    }

    /// Fails with 403 unless the caller holds `users:admin` and its login met MFA (its `amr`
    /// has one of [`MFA_AMR`]): a stolen password-only token must not make new users.
    pub(crate) fn require_user_admin(&self) -> Result<(), ApiError> {
        self.require(Permission::UsersAdmin)?;
        if self.user.amr.iter().any(|m| MFA_AMR.contains(&m.as_str())) {
            return Ok(());
        }
        let mut err = ApiError::forbidden(format!(
            "administering users needs a login that met MFA (amr one of {}; yours: {}): log \
             in again with your second factor, e.g. `portcullis login --password` with TOTP",
            MFA_AMR.join(", "),
            if self.user.amr.is_empty() {
                "none".to_owned()
            } else {
                self.user.amr.join(", ")
            }
        ));
        err.denied = Some(Box::new(super::error::Denied {
            actor: self.actor(),
            permission: format!("{} with MFA", Permission::UsersAdmin),
        }));
        Err(err)
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user.id.clone()),
            username: Some(self.user.username.clone()),
            groups: self.user.groups.clone(),
            source: Some(self.peer.ip().to_string()),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let PeerAddr(peer) = PeerAddr::from_request_parts(parts, state).await?;
        // Every refusal is counted for the audit log, summed per address (audit::denials):
        // an unauthenticated caller cannot grow the log at the rate it sends requests.
        let refuse = |reason: &'static str, message: &str| {
            state.denials.note(Failure {
                kind: crate::audit::denials::FailureKind::TokenRejected,
                source: peer.ip(),
                reason,
                attempted_name: None,
            });
            ApiError::unauthorized(message)
        };
        let token = match bearer(&parts.headers) {
            Ok(token) => token,
            Err(BearerError::Missing) => {
                return Err(refuse(
                    "no Authorization header",
                    "missing `Authorization: Bearer TOKEN`; log in first",
                ))
            }
            Err(BearerError::NotBearer) => {
                return Err(refuse(
                    "Authorization is not a bearer token",
                    "the Authorization header must be `Bearer TOKEN`",
                ))
            }
            Err(BearerError::Empty) => {
                return Err(refuse(
                    "empty bearer token",
                    "the Authorization header must be `Bearer TOKEN`",
                ))
            }
        };
        let hash = crate::ids::secret_hash(token);
        let now = crate::clock::to_i64(state.clock.unix_secs());
        let mut conn = state.store.conn().await?;
        let found = crate::store::tokens::authenticate(&mut conn, &hash, now).await?;
        drop(conn);
        let Some((user, token_id, token_expires_at)) = found else {
            return Err(refuse(
                "unknown, expired or revoked token",
                "the token is unknown, expired or revoked; log in again",
            ));
        };
        let policy = state.policy();
        let permissions = crate::authz::permissions(policy.as_deref(), &user);
        Ok(Principal {
            user,
            token_id,
            token_expires_at,
            permissions,
            peer,
        })
    }
}

/// Why a request carries no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerError {
    /// No `Authorization` header.
    Missing,
    /// Another scheme (`Basic ...`), or a value that is not visible ASCII.
    NotBearer,
    /// `Bearer` with nothing after it.
    Empty,
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, BearerError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(BearerError::Missing)?
        .to_str()
        .map_err(|_| BearerError::NotBearer)?;
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    match rest.trim() {
        "" => Err(BearerError::Empty),
        token => Ok(token),
    }
}

/// A JSON body; a malformed, mistyped or oversized body is a 4xx naming the problem.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(status, "payload_too_large", "the request body is too large");
    }
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return ApiError::new(
            status,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        );
    }
    let mut err = ApiError::bad_request(text.clone());
    err.field = field_of(&text);
    err
}

/// Pulls the field name out of serde's messages (`unknown field `x``, `missing field `x``,
/// or a `path: message` prefix).
fn field_of(text: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(start) = text.find(marker) {
            let rest = &text[start + marker.len()..];
            return rest.split('`').next().map(str::to_owned);
        }
    }
    let body = text.split("target type: ").nth(1)?;
    let (path, _) = body.split_once(": ")?;
    (!path.contains(' ') && path != ".").then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use axum::http::{header::AUTHORIZATION, HeaderMap, HeaderValue};

    use super::{bearer, BearerError};

    fn with(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn bearer_tokens_are_told_apart_from_what_is_not_one() {
        assert_eq!(bearer(&HeaderMap::new()), Err(BearerError::Missing));
        assert_eq!(bearer(&with(b"Basic YTpi")), Err(BearerError::NotBearer));
        assert_eq!(bearer(&with(b"Bearer")), Err(BearerError::Empty));
        assert_eq!(bearer(&with(b"Bearer   ")), Err(BearerError::Empty));
        assert_eq!(bearer(&with(b"Bearer\xffx")), Err(BearerError::NotBearer));
        assert_eq!(bearer(&with(b"Bearer abc ")), Ok("abc"));
        assert_eq!(bearer(&with(b"bearer abc")), Ok("abc"));
    }

    #[test]
    fn field_names_are_extracted() {
        assert_eq!(
            super::field_of("... unknown field `nmae`, expected one of"),
            Some("nmae".into())
        );
        assert_eq!(
            super::field_of("... missing field `address` at line 1"),
            Some("address".into())
        );
        assert_eq!(
            super::field_of(
                "Failed to deserialize the JSON body into the target type: vmid: invalid type"
            ),
            Some("vmid".into())
        );
    }
}
