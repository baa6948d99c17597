//! asciicast v2, the format `asciinema play` and asciinema-player read: newline-delimited
//! JSON, a header object first
//! (`{"version": 2, "width": W, "height": H, "timestamp": T, "env": {"TERM": ...}}`), then one
//! `[time, code, data]` array per event, time in seconds since the recording started, code
//! `"o"` (output), `"i"` (input) or `"r"` (resize, data `"WxH"`).
//!
//! A pty channel's asciicast chunk bodies are already these lines, so its `.cast` file is
//! their concatenation in chain order ([`cast`]), checked on the way.

use serde::{Deserialize, Serialize};

use super::chunk::{Chunk, ChunkKind};
use super::events::CastHeader;

/// What went wrong turning chunks into a `.cast` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CastError {
    #[error("channel {channel} has no terminal recording; it is not a pty channel")]
    NoPty { channel: u32 },
    #[error("line {line} of channel {channel}'s recording is not asciicast v2: {why}")]
    BadLine {
        channel: u32,
        line: usize,
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    version: u32,
    width: u16,
    height: u16,
    timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    env: Env,
}

#[derive(Serialize, Deserialize)]
struct Env {
    #[serde(rename = "TERM")]
    term: String,
}

/// The header line, newline-terminated.
pub(super) fn header_line(header: &CastHeader) -> String {
    let line = HeaderLine {
        version: 2,
        width: header.width,
        height: header.height,
        timestamp: header.timestamp,
        command: header.command.clone(),
        env: Env {
            term: header.term.clone(),
        },
    };
    // Numbers and strings always serialise.
    let mut out = serde_json::to_string(&line).unwrap_or_default();
    out.push('\n');
    out
}

/// One event line, newline-terminated: `[t, code, data]`.
pub(super) fn event_line(t: f64, code: &str, data: &str) -> String {
    let mut out = serde_json::to_string(&(t, code, data)).unwrap_or_default();
    out.push('\n');
    out
}

/// The `.cast` file of `channel`: its asciicast chunk bodies in `chunks`' order (verify the
/// chain first), each line checked, the first a v2 header.
pub fn cast<'a>(
    chunks: impl IntoIterator<Item = &'a Chunk>,
    channel: u32,
) -> Result<String, CastError> {
    let mut out = String::new();
    for chunk in chunks {
        if chunk.header.channel == channel && chunk.header.kind == ChunkKind::Asciicast {
            out.push_str(&chunk.body);
        }
    }
    if out.is_empty() {
        return Err(CastError::NoPty { channel });
    }
    for (index, line) in out.lines().enumerate() {
        let bad = |why: String| CastError::BadLine {
            channel,
            line: index + 1,
            why,
        };
        if index == 0 {
            let header: HeaderLine =
                serde_json::from_str(line).map_err(|e| bad(format!("not a header: {e}")))?;
            if header.version != 2 {
                return Err(bad(format!("version {}, not 2", header.version)));
            }
        } else {
            let (t, code, _data): (f64, String, String) =
                serde_json::from_str(line).map_err(|e| bad(format!("not an event: {e}")))?;
            if !t.is_finite() || t < 0.0 || !matches!(code.as_str(), "o" | "i" | "r") {
                return Err(bad(format!("time {t} or code {code:?} out of range")));
            }
        }
    }
    Ok(out)
}
