//! One line of the session's record per request: method, path with the query's values
//! redacted, status and bytes; never a body, never a header. Reviewers see what a tool
//! changed (`POST /api2/json/nodes/pve1/qemu` 200) without the values it sent.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// What replaces every query value.
pub const REDACTED: &str = "<redacted>";

/// Longest path kept in a record (bytes): a longer path is cut and ends in `...`, a longer
/// query loses its last pairs to a `...`.
const MAX_PATH: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    /// The path, and the query with every value replaced by `<redacted>`.
    pub path: String,
    pub status: u16,
    /// Body bytes from the client.
    pub bytes_in: u64,
    /// Body bytes to the client.
    pub bytes_out: u64,
}

/// The record of one exchange. `path_and_query` may be anything a client sent (refused
/// requests are recorded too): bytes outside printable ASCII are percent-encoded.
pub fn record_line(
    method: &Method,
    path_and_query: &str,
    status: StatusCode,
    bytes_in: u64,
    bytes_out: u64,
) -> RequestRecord {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let mut line = printable(path);
    if line.len() > MAX_PATH {
        // Printable ASCII only: any byte index is a char boundary.
        line.truncate(MAX_PATH);
        line.push_str("...");
        return record(method, line, status, bytes_in, bytes_out);
    }
    if let Some(query) = query {
        let mut separator = '?';
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            // A key is a parameter name; anything else could be a value in disguise.
            let key = if key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b))
            {
                key
            } else {
                REDACTED
            };
            if line.len() + key.len() + REDACTED.len() + 2 > MAX_PATH {
                line.push(separator);
                line.push_str("...");
                break;
            }
            line.push(separator);
            line.push_str(key);
            line.push('=');
            line.push_str(REDACTED);
            separator = '&';
        }
    }
    record(method, line, status, bytes_in, bytes_out)
}

fn record(
    method: &Method,
    path: String,
    status: StatusCode,
    bytes_in: u64,
    bytes_out: u64,
) -> RequestRecord {
    RequestRecord {
        method: printable(method.as_str()),
        path,
        status: status.as_u16(),
        bytes_in,
        bytes_out,
    }
}

/// `text` in printable ASCII: other bytes percent-encoded (so a record never holds a control
/// byte, and a `?` in it always starts the query).
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
