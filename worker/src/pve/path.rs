//! The request path, read the way the most lenient server on the way could read it: every
//! percent escape decoded before any comparison, and every form that two servers could read
//! differently refused (dot segments, empty segments, encoded `/`, `\`, `.` or `%`, `;`).
//! What is left has one reading, so "is this under `/api2/json/access/`" has one answer.

use http::StatusCode;

use super::{Refusal, RefusalCode};

/// The API's prefix: Proxmox API clients (bpg, proxmoxer, Ansible, curl scripts) use JSON.
const API: [&[u8]; 2] = [b"api2", b"json"];

/// A path under `/api2/json/`: whether it is under `access/` (ASCII case ignored, after
/// decoding).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ApiPath {
    pub(super) access: bool,
}

pub(super) fn api_path(raw: &str) -> Result<ApiPath, Refusal> {
    let ambiguous = |why: &str| {
        Refusal::new(
            RefusalCode::AmbiguousPath,
            StatusCode::BAD_REQUEST,
            format!("the request path {why}: send the plain path, without dot segments, doubled slashes or encoded separators"),
        )
    };
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(ambiguous("does not start with /"));
    };
    let raw_segments: Vec<&str> = rest.split('/').collect();
    let last = raw_segments.len() - 1;
    let mut segments = Vec::with_capacity(raw_segments.len());
    for (i, segment) in raw_segments.iter().enumerate() {
        if segment.is_empty() && i != last {
            return Err(ambiguous("has an empty segment (//)"));
        }
        if *segment == "." || *segment == ".." {
            return Err(ambiguous("has a dot segment (. or ..)"));
        }
        segments.push(decode(segment).map_err(ambiguous)?);
    }
    if segments.len() < 3 || segments[..2] != API {
        return Err(Refusal::new(
            RefusalCode::OutsideApi,
            StatusCode::FORBIDDEN,
            "only the Proxmox JSON API (/api2/json/...) goes through this proxy: the web UI and the other formats are not served",
        ));
    }
    Ok(ApiPath {
        access: segments[2].eq_ignore_ascii_case(b"access"),
    })
}

/// One segment percent-decoded; an escape that is malformed or decodes to a byte that could
/// change the path's shape or reading is refused.
fn decode(segment: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let byte = if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a malformed percent escape")?;
            if !hex_digits(&bytes[i + 1..i + 3]) {
                return Err("has a malformed percent escape");
            }
            i += 3;
            if matches!(hex, b'/' | b'\\' | b'.' | b'%' | b';') {
                return Err("encodes a separator, a dot or a percent sign");
            }
            hex
        } else {
            i += 1;
            b
        };
        if byte.is_ascii_control() || byte == b'\\' || byte == b';' {
            return Err("has a control character, a backslash or a semicolon");
        }
        if b != b'%' && !b.is_ascii_graphic() {
            return Err("has a byte outside printable ASCII");
        }
        out.push(byte);
    }
    if out == b"." || out == b".." {
        return Err("has a dot segment (. or ..)");
    }
    Ok(out)
}

/// `u8::from_str_radix` also takes a sign (`%+f`): both bytes must be hex digits.
fn hex_digits(pair: &[u8]) -> bool {
    pair.iter().all(u8::is_ascii_hexdigit)
}
