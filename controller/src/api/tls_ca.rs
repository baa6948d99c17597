//! The TLS CA bundle for API clients: `GET /v1/tls/ca` serves it (PEM, the signing CA
//! first), and while the API presents a certificate of the internal CA every response names
//! the bundle's SHA-256 in [`HEADER`], so that a CLI holding an older copy notices a
//! rotation (a new CA trusted before it signs) and fetches the bundle over the connection it
//! already trusts. No authentication: CA certificates are public, and what makes the copy
//! trustworthy is the TLS connection it comes over, which the client verified with the CAs it
//! already had.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The response header naming the bundle's SHA-256 (hex).
pub(crate) const HEADER: &str = "portcullis-tls-ca-sha256";

/// `GET /v1/tls/ca`.
pub(crate) async fn bundle(State(state): State<AppState>) -> Response {
    match state.keys.ca_bundle().await {
        Ok(bundle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            bundle.pem(),
        )
            .into_response(),
        Err(err) => super::error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "keyset_unavailable",
            format!("the TLS CA cannot be read from the keyset: {err}"),
        )
        .into_response(),
    }
}

/// Adds [`HEADER`] to every response when the API presents the internal CA's certificate
/// (an own certificate, `api.tls_cert_file`, is trusted through the admin's own PKI).
pub(crate) async fn name_bundle(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(req).await;
    if state.config.api_certificate.is_some() {
        return response;
    }
    if let Ok(bundle) = state.keys.ca_bundle().await {
        if let Ok(value) = HeaderValue::from_str(&bundle.digest()) {
            response.headers_mut().insert(HEADER, value);
        }
    }
    response
}
