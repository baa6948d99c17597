//! What the browser sees at the end of an OIDC login: small self-contained pages (no scripts,
//! no external resources, `no-store`, no referrer) and redirects to the CLI's loopback port.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::store::oidc_logins::{self as logins, PendingLogin};

pub(crate) fn failure_response(login: &PendingLogin, message: &str) -> Response {
    if login.mode == logins::LOOPBACK {
        let port = login.redirect_port.unwrap_or(0);
        let error: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
        return redirect(&format!(
            "http://127.0.0.1:{port}/callback?login={}&error={error}",
            login.id
        ));
    }
    page(
        StatusCode::UNAUTHORIZED,
        "Login failed",
        &format!(
            "<p>{}</p><p>Nothing was issued. Run <code>portcullis login</code> again.</p>",
            html_escape(message)
        ),
    )
}

pub(crate) fn redirect(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location.to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response()
}

pub(crate) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A self-contained page (no external resources, no scripts), in English, its content one
/// `main` landmark (tests/browser_harness.rs checks it with axe-core in chromium).
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Portcullis: {title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}\
         .code{{font:bold 2em monospace;letter-spacing:.1em}}.warn{{color:#a00}}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        html,
    )
        .into_response()
}
