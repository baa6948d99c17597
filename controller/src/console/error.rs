//! The console's one error type: a page with a status (and, for a refused permission, the
//! [`Denied`] the API's middleware audits), or a redirect to the login page.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, Denied};
use crate::store::StoreError;

#[derive(Debug)]
pub(crate) enum ConsoleError {
    /// No live console session: to the login page.
    LogIn,
    /// A refusal or failure, shown as a page saying what failed and what to do.
    Page {
        status: StatusCode,
        message: String,
        denied: Option<Box<Denied>>,
    },
}

impl ConsoleError {
    /// A 403 audited as `permission_denied` of `what` by `actor`.
    pub(crate) fn refused(
        actor: crate::audit::Actor,
        what: &str,
        message: impl Into<String>,
    ) -> ConsoleError {
        ConsoleError::Page {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
            denied: Some(Box::new(Denied {
                actor,
                permission: what.to_owned(),
            })),
        }
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        if e.status == StatusCode::UNAUTHORIZED {
            return ConsoleError::LogIn;
        }
        ConsoleError::Page {
            status: e.status,
            message: e.message,
            denied: e.denied,
        }
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::LogIn => (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/console/login".to_owned()),
                    (header::SET_COOKIE, super::session::clear_cookie()),
                ],
            )
                .into_response(),
            ConsoleError::Page {
                status,
                message,
                denied,
            } => {
                let mut response =
                    super::pages::page_response(status, super::pages::error(status, &message));
                if let Some(denied) = denied {
                    response.extensions_mut().insert(*denied);
                }
                response
            }
        }
    }
}
