//! The console's static files, built into the binary and served under
//! `/console/assets/NAME.HASH.EXT` with a year's cache: the hash of the content changes the
//! name, so a new binary's files are fetched again.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");

/// The stylesheet's path, with the first 16 hex digits of its SHA-256.
pub(crate) fn css_path() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let digest = portcullis_crypto::digest::sha256(CSS.as_bytes());
        format!("/console/assets/console.{}.css", &hex::encode(digest)[..16])
    })
    .clone()
}

/// `GET /console/assets/{file}`.
pub(crate) async fn get(Path(file): Path<String>) -> Response {
    if format!("/console/assets/{file}") != css_path() {
        return (StatusCode::NOT_FOUND, "no such console asset").into_response();
    }
    let mut response = CSS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
