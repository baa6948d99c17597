//! The player's files, built into the binary and served under
//! `/console/player/NAME.HASH.EXT` with a year's cache, as the console's own assets: the
//! vendored asciinema-player (its minified bundle, stylesheet and licence; version and how
//! to update it in docs/console.md) and `player.js`, ours, which creates it.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The asciinema-player release vendored under `assets/vendor/asciinema-player/`.
pub(crate) const PLAYER_VERSION: &str = "3.18.0";

const PLAYER_JS: &str = include_str!("../assets/vendor/asciinema-player/asciinema-player.min.js");
const PLAYER_CSS: &str = include_str!("../assets/vendor/asciinema-player/asciinema-player.css");
const PLAYER_LICENSE: &str = include_str!("../assets/vendor/asciinema-player/LICENSE");
const OURS_JS: &str = include_str!("../assets/player.js");

struct Asset {
    path: String,
    content: &'static str,
    content_type: &'static str,
}

fn asset(name: &str, ext: &str, content: &'static str, content_type: &'static str) -> Asset {
    let digest = portcullis_crypto::digest::sha256(content.as_bytes());
    Asset {
        path: format!(
            "/console/player/{name}.{}.{ext}",
            &hex::encode(digest)[..16]
        ),
        content,
        content_type,
    }
}

fn all() -> &'static [Asset; 4] {
    static ALL: OnceLock<[Asset; 4]> = OnceLock::new();
    ALL.get_or_init(|| {
        [
            asset(
                "asciinema-player",
                "js",
                PLAYER_JS,
                "text/javascript; charset=utf-8",
            ),
            asset(
                "asciinema-player",
                "css",
                PLAYER_CSS,
                "text/css; charset=utf-8",
            ),
            asset(
                "asciinema-player-LICENSE",
                "txt",
                PLAYER_LICENSE,
                "text/plain; charset=utf-8",
            ),
            asset("player", "js", OURS_JS, "text/javascript; charset=utf-8"),
        ]
    })
}

/// The paths of the player's script, its stylesheet, its licence and our script.
pub(crate) fn player_js() -> &'static str {
    &all()[0].path
}

pub(crate) fn player_css() -> &'static str {
    &all()[1].path
}

pub(crate) fn player_license() -> &'static str {
    &all()[2].path
}

pub(crate) fn ours_js() -> &'static str {
    &all()[3].path
}

/// `GET /console/player/{file}`.
pub(crate) async fn get(Path(file): Path<String>) -> Response {
    let path = format!("/console/player/{file}");
    let Some(found) = all().iter().find(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "no such console asset").into_response();
    };
    let mut response = found.content.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(found.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
