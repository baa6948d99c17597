//! What the CLI says when a request fails: the API's error answers ([`ApiError`], read from
//! any non-2xx response) and transport failures, each worded so that people can act on it.

use std::fmt;

use portcullis_proto::api::ErrorBody;

use crate::cli::exit::Unreachable;

/// An error answer from the API: the HTTP status and the API's [`ErrorBody`].
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = &self.body.message;
        match self.status {
            401 => write!(f, "not authenticated: {message}")?,
            403 => write!(f, "forbidden: {message}")?,
            404 => write!(f, "not found: {message}")?,
            status => write!(f, "{message} (HTTP {status}, {})", self.body.error)?,
        }
        if let Some(field) = &self.body.field {
            write!(f, " [field `{field}`]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads a non-2xx answer. A body that is not an [`ErrorBody`] is quoted (its first 200
    /// bytes); a 401 to a request sent without a token says how to get one.
    pub(super) fn from_response(
        status: reqwest::StatusCode,
        bytes: &[u8],
        sent_token: bool,
    ) -> Self {
        let body = serde_json::from_slice::<ErrorBody>(bytes).unwrap_or_else(|_| ErrorBody {
            error: "unexpected_response".into(),
            message: format!(
                "the controller answered {status} with an unexpected body: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
            field: None,
            step_up: None,
        });
        let mut err = ApiError {
            status: status.as_u16(),
            body,
        };
        if err.status == 401 && !sent_token {
            err.body.message = format!(
                "{} (no token: set PORTCULLIS_TOKEN or log in)",
                err.body.message
            );
        }
        err
    }

    /// A 401 to a request that sent the token of a `portcullis dev` instance (dev.env sets
    /// [`DEV_STATE_VAR`] to its state directory, `state_dir`) says how to get a fresh one:
    /// dev's tokens expire (`api.token_lifetime`), and a restart on the same state directory
    /// issues a new one into its dev.env.
    pub(super) fn with_dev_hint(mut self, state_dir: Option<&str>) -> Self {
        if let (401, Some(dir)) = (self.status, state_dir) {
            self.body.message = format!(
                "{}; your `portcullis dev` token (from {dir}/dev.env) has expired or was \
                 revoked: stop that `portcullis dev`, start it again with `portcullis dev \
                 --state-dir {dir}` (it issues a fresh token into its dev.env), then run \
                 `. {dir}/dev.env` again in this shell",
                self.body.message
            );
        }
        self
    }
}

/// The variable `portcullis dev` sets in its dev.env: its state directory.
pub(crate) const DEV_STATE_VAR: &str = "PORTCULLIS_DEV_STATE";

/// A request to the controller at `addr` that got no answer: timed out, could not connect
/// (with a hint at the CA or the address), or failed otherwise; all [`Unreachable`].
pub(super) fn transport_error(addr: &str, err: &reqwest::Error) -> anyhow::Error {
    let cause = root_cause(err);
    let message = if err.is_timeout() {
        format!("the controller at {addr} did not answer in time ({cause})")
    } else if err.is_connect() {
        let hint = if cause.contains("certificate") || cause.contains("Certificate") {
            "is PORTCULLIS_CA the CA file of this controller?"
        } else {
            "is it running? set PORTCULLIS_ADDR"
        };
        format!("cannot reach the controller at {addr}: {cause}; {hint}")
    } else {
        format!("request to the controller at {addr} failed: {cause}")
    };
    Unreachable(message).into()
}

/// The innermost error message, which names the real problem (refused, unknown issuer, ...).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_well() {
        let err = ApiError {
            status: 403,
            body: ErrorBody {
                error: "forbidden".into(),
                message: "you may not reach db".into(),
                field: None,
                step_up: None,
            },
        };
        assert_eq!(err.to_string(), "forbidden: you may not reach db");
        let err = ApiError {
            status: 400,
            body: ErrorBody {
                error: "invalid_request".into(),
                message: "bad address".into(),
                field: Some("address".into()),
                step_up: None,
            },
        };
        assert_eq!(
            err.to_string(),
            "bad address (HTTP 400, invalid_request) [field `address`]"
        );
    }

    #[test]
    fn answers_that_are_not_error_bodies_are_quoted() {
        let status = reqwest::StatusCode::BAD_GATEWAY;
        let err = ApiError::from_response(status, b"<html>proxy</html>", true);
        assert_eq!(err.status, 502);
        assert_eq!(err.body.error, "unexpected_response");
        assert!(err.body.message.contains("502 Bad Gateway"), "{err}");
        assert!(err.body.message.contains("<html>proxy</html>"), "{err}");
    }

    #[test]
    fn unauthenticated_without_a_token_says_how_to_get_one() {
        let body = br#"{"error":"unauthenticated","message":"no valid token"}"#;
        let status = reqwest::StatusCode::UNAUTHORIZED;
        let without = ApiError::from_response(status, body, false).to_string();
        assert!(
            without.contains("set PORTCULLIS_TOKEN or log in"),
            "{without}"
        );
        let with = ApiError::from_response(status, body, true).to_string();
        assert_eq!(with, "not authenticated: no valid token");
    }

    #[test]
    fn an_expired_dev_token_says_how_to_get_a_fresh_one() {
        let body = br#"{"error":"unauthenticated","message":"no valid token"}"#;
        let status = reqwest::StatusCode::UNAUTHORIZED;
        let said = ApiError::from_response(status, body, true)
            .with_dev_hint(Some("/tmp/pc"))
            .to_string();
        assert!(
            said.starts_with("not authenticated: no valid token; "),
            "{said}"
        );
        assert!(
            said.contains("portcullis dev --state-dir /tmp/pc"),
            "{said}"
        );
        assert!(said.contains("`. /tmp/pc/dev.env`"), "{said}");
        // Not from a dev.env, or not a 401: unchanged.
        let plain = ApiError::from_response(status, body, true).with_dev_hint(None);
        assert_eq!(plain.to_string(), "not authenticated: no valid token");
        let forbidden = br#"{"error":"forbidden","message":"no"}"#;
        let said = ApiError::from_response(reqwest::StatusCode::FORBIDDEN, forbidden, true)
            .with_dev_hint(Some("/tmp/pc"))
            .to_string();
        assert_eq!(said, "forbidden: no");
    }
}
