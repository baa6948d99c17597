//! One line of the session's record per request: method, path with the query's values
//! redacted, status and bytes; never a body, never a header. Reviewers see what a tool
//! changed (`POST /api2/json/nodes/pve1/qemu` 200) without the values it sent.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// What replaces every query value.
pub const REDACTED: &str = "<redacted>";

/// Longest path kept in a record (bytes); a longer one is cut and ends in `...`.
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
/// requests are recorded too): bytes outside printable ASCII become `?`.
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
    if let Some(query) = query {
        line.push('?');
        let keys: Vec<String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let key = pair.split_once('=').map_or(pair, |(key, _)| key);
                // A key is a parameter name; anything else could be a value in disguise.
                if key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.[]".contains(&b)) {
                    format!("{key}={REDACTED}")
                } else {
                    format!("{REDACTED}={REDACTED}")
                }
            })
            .collect();
        line.push_str(&keys.join("&"));
    }
    if line.len() > MAX_PATH {
        // Printable ASCII only: any byte index is a char boundary.
        line.truncate(MAX_PATH);
        line.push_str("...");
    }
    RequestRecord {
        method: printable(method.as_str()),
        path: line,
        status: status.as_u16(),
        bytes_in,
        bytes_out,
    }
}

fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}
