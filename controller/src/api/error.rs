//! The one error type at the HTTP edge: every failure becomes a status and an
//! [`ErrorBody`] that says what failed and what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use portcullis_proto::api::ErrorBody;

use crate::keys::KeyError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// A refused permission, audited by [`super::audit_denials`] on the way out.
    pub denied: Option<Box<Denied>>,
}

/// Who was refused which permission: carried in the response's extensions so the one
/// middleware that audits denials sees every handler's refusals.
#[derive(Debug, Clone)]
pub struct Denied {
    pub actor: crate::audit::Actor,
    pub permission: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            field: None,
            denied: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::bad_request(message);
        e.field = Some(field.to_owned());
        e
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} {id:?}"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
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
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(denied) = self.denied {
            response.extensions_mut().insert(*denied);
        }
        response
    }
}
