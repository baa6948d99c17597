//! [`AccessError`]: why an access request operation failed, mapped to the API's answer at
//! the edge.

use axum::http::StatusCode;

use crate::api::error::{ApiError, Denied};
use crate::audit::Actor;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error("no access request {0}")]
    NotFound(String),
    /// A body that says the wrong thing (400), naming the field.
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    /// The policy refused what was asked (403).
    #[error("{0}")]
    Refused(String),
    /// The caller may not do this to this request (403), audited as `permission_denied`.
    #[error("{message}")]
    NotAllowed {
        message: String,
        actor: Box<Actor>,
        permission: &'static str,
    },
    /// The request is not in a state that allows it (409).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> ApiError {
        match err {
            AccessError::NotFound(id) => ApiError::not_found("access request", &id),
            AccessError::Field { field, message } => ApiError::field(field, message),
            AccessError::Refused(message) => ApiError::forbidden(message),
            AccessError::NotAllowed {
                message,
                actor,
                permission,
            } => {
                let mut api = ApiError::forbidden(message);
                api.denied = Some(Box::new(Denied {
                    actor: *actor,
                    permission: permission.to_owned(),
                }));
                api
            }
            AccessError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            AccessError::Unavailable(message) => ApiError::unavailable(message),
            AccessError::Store(e) => ApiError::from(e),
        }
    }
}
