//! What the audit log says about a recording: the heads sealed into the chain
//! (`recording_checkpoint`, `recording_finished`) and the retention's deletions
//! (`recording_deleted`). The one place that reads those events' fields, for
//! `recordings verify` and `audit verify` alike.

use serde_json::Value;

/// The event types that seal a recording's head.
const SEAL_TYPES: [&str; 2] = ["recording_checkpoint", "recording_finished"];
/// The event type of a retention deletion.
const DELETED_TYPE: &str = "recording_deleted";

/// A recording head an audit event sealed: chunks `0..chunks` chain up to `head_hash`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Seal {
    /// The sealing event's sequence in the audit chain.
    pub(crate) audit_sequence: u64,
    pub(crate) session_id: String,
    pub(crate) recording_id: String,
    pub(crate) chunks: u64,
    /// Hex SHA-256 of chunk `chunks - 1`.
    pub(crate) head_hash: String,
    pub(crate) bytes: Option<u64>,
    /// Whether the sealed head is the recording's final chunk.
    pub(crate) complete: bool,
}

/// What one audit event says about recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordingEvent {
    Sealed(Seal),
    /// The retention deleted the recording.
    Deleted {
        session_id: String,
        recording_id: String,
    },
}

impl RecordingEvent {
    /// Reads `event`: `None` when it is not about a recording's head or deletion, an error
    /// naming the field when it is but cannot be read (an event of a newer controller?).
    pub(crate) fn of(event: &Value) -> Option<Result<RecordingEvent, String>> {
        let kind = event.get("type").and_then(Value::as_str)?;
        if !SEAL_TYPES.contains(&kind) && kind != DELETED_TYPE {
            return None;
        }
        Some(parse(kind, event))
    }
}

fn parse(kind: &str, event: &Value) -> Result<RecordingEvent, String> {
    let details = event.get("details").unwrap_or(&Value::Null);
    let field = |name: &str| details.get(name).or_else(|| event.get(name));
    let text = |name: &str| {
        field(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("its `{name}` is missing or not a string"))
    };
    let number = |name: &str| {
        field(name)
            .and_then(|v| {
                // Schema 3 events write integers beyond 2^53 as strings.
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| format!("its `{name}` is missing or not a number"))
    };
    // The session is the event's own `session` member; `session_id` in the details too.
    let session_id = field("session_id")
        .or_else(|| event.get("session"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let recording_id = text("recording_id")?;
    if kind == DELETED_TYPE {
        return Ok(RecordingEvent::Deleted {
            session_id,
            recording_id,
        });
    }
    let complete = match field("complete") {
        Some(value) => value
            .as_bool()
            .ok_or("its `complete` is not true or false")?,
        None => kind == "recording_finished",
    };
    Ok(RecordingEvent::Sealed(Seal {
        audit_sequence: number("sequence")?,
        session_id,
        recording_id,
        chunks: number("chunks")?,
        head_hash: text("head_hash")?.to_ascii_lowercase(),
        bytes: number("bytes").ok(),
        complete,
    }))
}
