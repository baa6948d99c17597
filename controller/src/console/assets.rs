//! The console's static files, built into the binary and served under
//! `/console/assets/NAME.HASH.EXT` with a year's cache: the hash of the content changes the
//! name, so a new binary's files are fetched again.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");
/// The page icon (browsers ask for one; without it each page logs a 404).
const ICON: &str = include_str!("assets/icon.svg");

/// `NAME.HASH.EXT` under `/console/assets/`, the hash the first 16 hex digits of the
/// content's SHA-256.
fn hashed(name: &str, ext: &str, content: &str) -> String {
    let digest = portcullis_crypto::digest::sha256(content.as_bytes());
    format!(
        "/console/assets/{name}.{}.{ext}",
        &hex::encode(digest)[..16]
    )
}

/// The stylesheet's path.
pub(crate) fn css_path() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| hashed("console", "css", CSS)).clone()
}

/// The icon's path.
pub(crate) fn icon_path() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| hashed("icon", "svg", ICON)).clone()
}

/// `GET /console/assets/{file}`.
pub(crate) async fn get(Path(file): Path<String>) -> Response {
    let path = format!("/console/assets/{file}");
    let (content, content_type) = if path == css_path() {
        (CSS, "text/css; charset=utf-8")
    } else if path == icon_path() {
        (ICON, "image/svg+xml")
    } else {
        return (StatusCode::NOT_FOUND, "no such console asset").into_response();
    };
    let mut response = content.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
