//! The one error type at the HTTP edge: every failure becomes a status and an
//! [`ErrorBody`] that says what failed and what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_proto::api::ErrorBody;

use crate::keys::KeyError;
use crate::sessions::error::SessionError;
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// A refused permission, audited by [`super::audit_denials`] on the way out.
    pub denied: Option<Box<Denied>>,
    /// A step-up challenge, for a `step_up_required` refusal.
    pub step_up: Option<Box<portcullis_proto::step_up::StepUpChallenge>>,
}

/// Who was refused which permission: carried in the response's extensions so the one
/// middleware that audits denials sees every handler's refusals.
#[derive(Debug, Clone)]
pub(crate) struct Denied {
    pub actor: crate::audit::Actor,
    pub permission: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            field: None,
            denied: None,
            step_up: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::bad_request(message);
        e.field = Some(field.to_owned());
        e
    }

    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} {id:?}"),
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(m) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("already exists: {m}"),
            ),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %portcullis_proto::text::escaped(&m), "store unavailable");
                ApiError::unavailable("the controller's database is unavailable; retry shortly")
            }
            other => {
                tracing::error!(error = %portcullis_proto::text::escaped(&other), "store error");
                ApiError::internal("internal store error; see the controller's log")
            }
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %portcullis_proto::text::escaped(&other), "keyset error");
                ApiError::internal("internal key error; see the controller's log")
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        let message = err.to_string();
        match err {
            SessionError::RateLimited { .. } | SessionError::TooManyLive { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "session_limit", message)
            }
            SessionError::Unresolvable { .. } | SessionError::ResolvesToNothing { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "resolve_failed", message)
            }
            SessionError::Denied { .. } => ApiError::forbidden(message),
            SessionError::NoWorker
            | SessionError::VaultNotConfigured { .. }
            | SessionError::NoVaultSshRole { .. }
            | SessionError::ProxmoxNotConfigured { .. } => ApiError::unavailable(message),
            SessionError::BadSshKey(_) => ApiError::field("ssh_public_key", message),
            SessionError::Signing(_) => ApiError::internal(message),
            SessionError::MintFailed { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "credential_mint_failed", message)
            }
            SessionError::PveMintFailed { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "pve_token_mint_failed", message)
            }
            SessionError::StepUpRequired { challenge, .. } => {
                let mut api = ApiError::new(
                    StatusCode::FORBIDDEN,
                    portcullis_proto::step_up::STEP_UP_REQUIRED,
                    message,
                );
                api.step_up = Some(challenge);
                api
            }
            SessionError::StepUpRefused(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "step_up_refused", message)
            }
            SessionError::Store(e) => e.into(),
            SessionError::Key(e) => e.into(),
        }
    }
}

impl From<crate::step_up::StepUpError> for ApiError {
    fn from(err: crate::step_up::StepUpError) -> Self {
        use crate::step_up::StepUpError;
        match err {
            StepUpError::Refused(m) => ApiError::new(StatusCode::FORBIDDEN, "step_up_refused", m),
            StepUpError::Store(e) => e.into(),
            StepUpError::Key(e) => e.into(),
        }
    }
}

impl From<crate::step_up::StepUpError> for SessionError {
    fn from(err: crate::step_up::StepUpError) -> Self {
        use crate::step_up::StepUpError;
        match err {
            StepUpError::Refused(m) => SessionError::StepUpRefused(m),
            StepUpError::Store(e) => SessionError::Store(e),
            StepUpError::Key(e) => SessionError::Key(e),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(err).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.kind.to_owned(),
            message: self.message,
            field: self.field,
            step_up: self.step_up.map(|c| *c),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(denied) = self.denied {
            response.extensions_mut().insert(*denied);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refusal of authorize-session keeps the status, code and message it had when the
    /// domain built `ApiError` itself.
    fn assert_maps(cases: Vec<(SessionError, StatusCode, &str)>) {
        for (err, status, kind) in cases {
            let message = err.to_string();
            let api = ApiError::from(err);
            assert_eq!((api.status, api.kind), (status, kind), "{message}");
            assert_eq!(api.message, message);
        }
    }

    #[test]
    fn session_refusals_map_to_their_status_and_code() {
        let too_many = StatusCode::TOO_MANY_REQUESTS;
        assert_maps(vec![
            (
                SessionError::RateLimited {
                    per_minute: 5,
                    retry_after: 40,
                },
                too_many,
                "session_limit",
            ),
            (
                SessionError::TooManyLive {
                    max_live: 3,
                    live: 3,
                },
                too_many,
                "session_limit",
            ),
            (
                SessionError::Denied {
                    reason: "no role".into(),
                    admitting_cell: None,
                },
                StatusCode::FORBIDDEN,
                "forbidden",
            ),
            (
                SessionError::BadSshKey("bad key".into()),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
        ]);
        let api = ApiError::from(SessionError::BadSshKey("bad key".into()));
        assert_eq!(api.field.as_deref(), Some("ssh_public_key"));
        let api = ApiError::from(SessionError::RateLimited {
            per_minute: 5,
            retry_after: 40,
        });
        assert_eq!(
            api.message,
            "too many sessions requested: at most 5 a minute per user \
             (sessions.per_user.authorize_per_minute); retry in 40 s, or reuse an open session \
             (`portcullis connect --listen-port` carries many connections)"
        );
    }

    #[test]
    fn session_failures_map_to_their_status_and_code() {
        let (gateway, unavailable) = (StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE);
        let address = || "db:22".to_string();
        let target = || "db".to_string();
        assert_maps(vec![
            (
                SessionError::Unresolvable {
                    address: address(),
                    detail: "no such host".into(),
                },
                gateway,
                "resolve_failed",
            ),
            (
                SessionError::ResolvesToNothing { address: address() },
                gateway,
                "resolve_failed",
            ),
            (SessionError::NoWorker, unavailable, "unavailable"),
            (
                SessionError::VaultNotConfigured { target: target() },
                unavailable,
                "unavailable",
            ),
            (
                SessionError::NoVaultSshRole { target: target() },
                unavailable,
                "unavailable",
            ),
            (
                SessionError::Signing("cannot sign".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                SessionError::MintFailed {
                    message: "refused".into(),
                    hint: "try again",
                },
                gateway,
                "credential_mint_failed",
            ),
            (
                SessionError::PveMintFailed {
                    message: "HTTP 403".into(),
                    hint: "try again",
                },
                gateway,
                "pve_token_mint_failed",
            ),
            (
                SessionError::ProxmoxNotConfigured {
                    target: target(),
                    cluster: "lab".into(),
                },
                unavailable,
                "unavailable",
            ),
        ]);
    }
}
