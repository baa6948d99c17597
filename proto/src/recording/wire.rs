//! Recordings on the wire: chunks on the cluster link (worker → controller, acknowledged one
//! by one), the failure a worker reports when a recording cannot be written, and the bodies
//! of the API under `/v1/sessions/{id}/recordings` and of an exported bundle.
//!
//! Chunk bytes travel as standard base64 of their canonical encoding ([`super::Chunk`]), so
//! that what the controller stores and what `recordings verify` reads is exactly what the
//! worker hashed.

use serde::{Deserialize, Serialize};

/// A chunk on its way from a worker's spool to the store: the link request
/// [`crate::link::Request::RecordingChunks`] carries a few, in seq order per recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledChunk {
    pub session_id: String,
    pub connection_id: String,
    /// The recording's id: the gateway connection's id (one recording per connection).
    pub recording_id: String,
    pub seq: u64,
    /// The chunk's canonical bytes.
    #[serde(with = "b64_bytes")]
    pub data: Vec<u8>,
}

/// What became of one [`SpooledChunk`] (the answer
/// [`crate::link::Response::ChunksStored`] has one per chunk sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAck {
    pub recording_id: String,
    pub seq: u64,
    #[serde(flatten)]
    pub outcome: ChunkOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChunkOutcome {
    /// Durable in the store (or already was, byte for byte): drop it from the spool.
    Stored,
    /// Never storable (it does not decode, does not chain onto the stored chunks, the
    /// recording is over its size, or the session is unknown): drop it from the spool; the
    /// recording is broken from here, and a required one closes its channels.
    Refused { reason: String },
    /// Not now (the store is unreachable, an earlier chunk has not arrived): keep it spooled
    /// and send it again later.
    Later { reason: String },
}

/// Why a worker could not write a recording, reported as a connection event
/// ([`crate::link::ConnectionEventKind::RecordingFailed`]) and audited as
/// `recording_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingFailure {
    pub recording_id: String,
    /// What failed: `size_cap`, `spool_full`, `store_refused`, `spool_write`.
    pub cause: String,
    /// A sentence for the reviewer.
    pub message: String,
    /// What the gateway did about it.
    pub action: FailureAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// The recording was required: the connection's channels were closed.
    ClosedChannels,
    /// The zone opted in to `unrecorded_fallback`: the session went on unrecorded.
    ContinuedUnrecorded,
}

/// `GET /v1/sessions/{id}/recordings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingList {
    pub session_id: String,
    pub recordings: Vec<RecordingInfo>,
}

/// One recording (one gateway connection) as the controller finds it in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub recording_id: String,
    pub session_id: String,
    pub connection_id: String,
    /// Chunks stored, and their body bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// Unix seconds of the first and the newest chunk stored.
    pub started_at: u64,
    pub updated_at: u64,
    /// The chain as the controller verified it just now.
    pub state: RecordingState,
    /// Chunks `0..verified_up_to` chain.
    pub verified_up_to: u64,
    /// Hex SHA-256 of chunk `verified_up_to - 1` (empty when none).
    pub head_hash: String,
    /// Why the recording is incomplete or broken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The newest head sealed into the audit chain, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedHead>,
    pub channels: Vec<ChannelSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Every chunk chains and the final chunk came.
    Complete,
    /// The chain holds but has no final chunk: the session is live, or its worker died.
    Incomplete,
    /// A stored chunk was altered, dropped or cannot be opened.
    Broken,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Complete => "complete",
            RecordingState::Incomplete => "incomplete",
            RecordingState::Broken => "broken",
        }
    }
}

/// A recording head sealed into the audit chain (`recording_checkpoint` or
/// `recording_finished`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHead {
    /// The number of chunks the sealed head covers (the head is chunk `chunks - 1`).
    pub chunks: u64,
    pub head_hash: String,
    /// The body bytes of those chunks.
    pub bytes: u64,
    /// Whether the sealed head is the recording's final chunk.
    pub complete: bool,
    /// The audit event that sealed it.
    pub audit_sequence: u64,
}

/// One channel of a recording, summarised from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub channel: u32,
    pub kind: ChannelKind,
    /// The exec command, the sftp subsystem, or the forward's destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Recorded lines (asciicast events or structured events).
    pub events: u64,
    /// Output bytes (pty), bytes transferred (sftp, forwards).
    pub bytes: u64,
    /// Seconds from the channel's first to its last event.
    pub duration_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A pty: shell or command, recorded as asciicast (`sessions play`).
    Pty,
    /// An exec request without a pty: its command and exit status.
    Exec,
    /// The sftp subsystem (and scp, which speaks it): its operations.
    Sftp,
    /// A forwarded channel: its destination and bytes.
    Forward,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Pty => "pty",
            ChannelKind::Exec => "exec",
            ChannelKind::Sftp => "sftp",
            ChannelKind::Forward => "forward",
        }
    }
}

/// A stored chunk as the API serves it: its canonical bytes, or why they cannot be read
/// (the ciphertext was altered in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChunk {
    pub seq: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "b64_opt_bytes"
    )]
    pub data: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// `GET /v1/sessions/{id}/recordings/{recording}/chunks?from=SEQ&limit=N`: chunks `from..`
/// in seq order; `next` is where the following page starts, `None` after the last stored
/// chunk. `finished` says whether the final chunk is stored (a watcher stops there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPage {
    pub recording_id: String,
    pub chunks: Vec<StoredChunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    pub finished: bool,
}

/// The format id of an exported bundle.
pub const BUNDLE_FORMAT: &str = "portcullis-recording-bundle/1";

/// `GET /v1/sessions/{id}/recordings/{recording}/bundle` and `sessions export --format
/// bundle`: everything `recordings verify` needs offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    pub session_id: String,
    pub recording_id: String,
    /// Every stored chunk, in seq order.
    pub chunks: Vec<StoredChunk>,
    /// The audit events about this session and recording, each exactly as it was signed
    /// (`session_authorized`, the connection events, `recording_checkpoint`,
    /// `recording_finished`, `recording_failed`), in sequence order.
    pub audit_events: Vec<serde_json::Value>,
    /// The audit public keys that signed them, in `audit keys` form (`key_id:base64`).
    pub public_keys: Vec<String>,
}

mod b64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("chunk data is not base64: {e}")))
    }
}

mod b64_opt_bytes {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::b64_bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(t.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("chunk data is not base64: {e}")))
        })
        .transpose()
    }
}
