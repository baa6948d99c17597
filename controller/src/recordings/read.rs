//! What reviewers read: a session's recordings (each verified just now, with its newest
//! sealed head and its channels), pages of a recording's chunks, and the bundle that
//! `recordings verify` checks offline. Who may read is the API's decision; every read here is
//! audited as `recording_read` before anything is returned (no event, no data).

use portcullis_proto::recording::{
    summarize, verify, Bundle, Chunk, ChunkPage, RecordingInfo, RecordingList, RecordingState,
    SealedHead, StoredChunk, Verdict, BUNDLE_FORMAT,
};
use std::time::Duration;

use serde_json::Value;

use super::crypt::Openers;
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::keys::KeyError;
use crate::state::AppState;
use crate::store::audit::{self as audit_rows, Filter};
use crate::store::recordings::{ChunkRow, RecordingRow};
use crate::store::StoreError;

/// The longest a chunk page waits for its first chunk (`wait`), under the CLI's request
/// timeout.
pub(crate) const MAX_WAIT_SECS: u64 = 25;
/// How often a waiting page looks for new chunks.
const WAIT_STEP: Duration = Duration::from_millis(250);

/// The most chunks one page holds.
pub(crate) const MAX_PAGE: u32 = 1024;
/// The page size when none is asked for.
pub(crate) const DEFAULT_PAGE: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("session {session_id} has no recording {recording_id:?}; list them with GET /v1/sessions/{session_id}/recordings")]
    UnknownRecording {
        session_id: String,
        recording_id: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// The audit event types a bundle carries.
const BUNDLE_EVENTS: &[&str] = &[
    "session_authorized",
    "connection_opened",
    "connection_closed",
    "recording_checkpoint",
    "recording_finished",
    "recording_failed",
];

pub(super) async fn audited_read(
    state: &AppState,
    actor: &Actor,
    session_id: &str,
    recording_id: Option<&str>,
    what: &str,
    from: Option<u64>,
) -> Result<(), StoreError> {
    let read = Event::RecordingRead {
        details: event::RecordingRead {
            recording_id: recording_id.map(str::to_owned),
            what: what.to_owned(),
            from,
        },
    };
    state
        .audit_alone(AuditEvent::new(actor.clone(), read).session(session_id))
        .await
}

/// `GET /v1/sessions/{id}/recordings`.
pub(crate) async fn list(
    state: &AppState,
    actor: &Actor,
    session_id: &str,
) -> Result<RecordingList, ReadError> {
    let rows = state.recordings.of_session(session_id).await?;
    let events = session_events(state, session_id).await?;
    let openers = Openers::load(&state.keys).await?;
    let mut recordings = Vec::with_capacity(rows.len());
    for row in &rows {
        let chunks = all_chunks(state, &openers, row).await?;
        recordings.push(info(row, &chunks, newest_seal(&events, &row.id)));
    }
    audited_read(state, actor, session_id, None, "list", None).await?;
    Ok(RecordingList {
        session_id: session_id.to_owned(),
        recordings,
    })
}

/// `GET /v1/sessions/{id}/recordings/{recording}/chunks?from=SEQ&limit=N&wait=SECS`. With
/// `wait`, a page that would be empty while the recording is not finished waits up to that
/// long for its first chunk (looking every [`WAIT_STEP`]), so that a watcher's read is one
/// audited request per new output rather than per poll.
pub(crate) async fn page(
    state: &AppState,
    actor: &Actor,
    session_id: &str,
    recording_id: &str,
    from: u64,
    limit: u32,
    wait: Duration,
) -> Result<ChunkPage, ReadError> {
    let deadline = tokio::time::Instant::now() + wait;
    let limit = limit.clamp(1, MAX_PAGE);
    let (row, rows) = loop {
        let row = recording_of(state, session_id, recording_id).await?;
        let rows = state.recordings.chunks(recording_id, from, limit).await?;
        if !rows.is_empty() || row.finished || tokio::time::Instant::now() >= deadline {
            break (row, rows);
        }
        tokio::time::sleep(WAIT_STEP).await;
    };
    let openers = Openers::load(&state.keys).await?;
    let chunks: Vec<StoredChunk> = rows.iter().map(|c| open(&openers, c)).collect();
    let next = chunks
        .last()
        .map(|c| c.seq + 1)
        .filter(|next| *next < row.chunks);
    audited_read(
        state,
        actor,
        session_id,
        Some(recording_id),
        "chunks",
        Some(from),
    )
    .await?;
    Ok(ChunkPage {
        recording_id: recording_id.to_owned(),
        chunks,
        next,
        finished: row.finished,
    })
}

/// `GET /v1/sessions/{id}/recordings/{recording}/bundle`.
pub(crate) async fn bundle(
    state: &AppState,
    actor: &Actor,
    session_id: &str,
    recording_id: &str,
) -> Result<Bundle, ReadError> {
    let row = recording_of(state, session_id, recording_id).await?;
    let openers = Openers::load(&state.keys).await?;
    let chunks = all_chunks(state, &openers, &row).await?;
    let audit_events = session_events(state, session_id)
        .await?
        .into_iter()
        .filter(|e| belongs_in_bundle(e, recording_id))
        .collect();
    let public_keys = state
        .keys
        .audit_public_keys()
        .await?
        .into_iter()
        .map(|k| format!("{}:{}", k.id, k.public_key))
        .collect();
    audited_read(state, actor, session_id, Some(recording_id), "bundle", None).await?;
    Ok(Bundle {
        format: BUNDLE_FORMAT.to_owned(),
        session_id: session_id.to_owned(),
        recording_id: recording_id.to_owned(),
        chunks,
        audit_events,
        public_keys,
    })
}

pub(super) async fn recording_of(
    state: &AppState,
    session_id: &str,
    recording_id: &str,
) -> Result<RecordingRow, ReadError> {
    state
        .recordings
        .get(recording_id)
        .await?
        .filter(|r| r.session_id == session_id)
        .ok_or_else(|| ReadError::UnknownRecording {
            session_id: session_id.to_owned(),
            recording_id: recording_id.to_owned(),
        })
}

pub(super) fn open(openers: &Openers, row: &ChunkRow) -> StoredChunk {
    match openers.open(&row.recording_id, row.seq, &row.key_id, &row.ciphertext) {
        Ok(data) => StoredChunk {
            seq: row.seq,
            data: Some(data),
            unreadable: None,
        },
        Err(why) => StoredChunk {
            seq: row.seq,
            data: None,
            unreadable: Some(why),
        },
    }
}

/// Every stored chunk of a recording, opened, in seq order.
pub(super) async fn all_chunks(
    state: &AppState,
    openers: &Openers,
    row: &RecordingRow,
) -> Result<Vec<StoredChunk>, StoreError> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let page = state.recordings.chunks(&row.id, from, MAX_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        from = last.seq + 1;
        let full = page.len() == MAX_PAGE as usize;
        out.extend(page.iter().map(|c| open(openers, c)));
        if !full {
            return Ok(out);
        }
    }
}

/// The session's audit events as stored and signed, oldest first.
pub(super) async fn session_events(
    state: &AppState,
    session_id: &str,
) -> Result<Vec<Value>, StoreError> {
    let mut conn = state.store.conn().await?;
    let filter = Filter {
        session: Some(session_id.to_owned()),
        ..Filter::default()
    };
    let mut events = audit_rows::list(&mut conn, &filter, 100_000).await?;
    events.reverse();
    events
        .into_iter()
        .map(|e| {
            serde_json::from_str(&e.body)
                .map_err(|err| StoreError::Corrupt(format!("audit event {}: {err}", e.columns.seq)))
        })
        .collect()
}

fn detail<'a>(event: &'a Value, key: &str) -> Option<&'a str> {
    event.get("details")?.get(key)?.as_str()
}

fn belongs_in_bundle(event: &Value, recording_id: &str) -> bool {
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !BUNDLE_EVENTS.contains(&kind) {
        return false;
    }
    match kind {
        "session_authorized" => true,
        "connection_opened" | "connection_closed" => {
            detail(event, "connection_id") == Some(recording_id)
        }
        _ => detail(event, "recording_id") == Some(recording_id),
    }
}

/// The newest head of `recording_id` sealed among `events`.
pub(crate) fn newest_seal(events: &[Value], recording_id: &str) -> Option<SealedHead> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.get("type").and_then(Value::as_str),
                Some("recording_checkpoint" | "recording_finished")
            ) && detail(e, "recording_id") == Some(recording_id)
        })
        .filter_map(|e| {
            let details = e.get("details")?;
            Some(SealedHead {
                chunks: details.get("chunks")?.as_u64()?,
                head_hash: details.get("head_hash")?.as_str()?.to_owned(),
                bytes: details.get("bytes")?.as_u64()?,
                complete: details.get("complete")?.as_bool()?,
                audit_sequence: e.get("sequence")?.as_u64()?,
            })
        })
        .max_by_key(|s| s.audit_sequence)
}

/// Where a recording's stored chain stands: its state, the chunks that verify, the hex head
/// hash of those, and why it is not complete.
pub(crate) fn verdict(
    chunks: &[StoredChunk],
    sealed: Option<&SealedHead>,
) -> (RecordingState, u64, String, Option<String>) {
    let readable: Vec<&[u8]> = chunks.iter().map_while(|c| c.data.as_deref()).collect();
    let hash_of = |n: u64| -> String {
        n.checked_sub(1)
            .and_then(|i| readable.get(usize::try_from(i).ok()?))
            .map(|bytes| portcullis_crypto::digest::sha256_hex(bytes))
            .unwrap_or_default()
    };
    let broken = |at: u64, why: String| (RecordingState::Broken, at, hash_of(at), Some(why));
    let mut out = match verify(readable.iter()) {
        Verdict::Broken { at_seq, why } => broken(at_seq, why),
        Verdict::Complete { chunks, head_hash } => {
            (RecordingState::Complete, chunks, head_hash.to_hex(), None)
        }
        Verdict::Incomplete {
            verified_up_to,
            head_hash,
            why,
        } => (
            RecordingState::Incomplete,
            verified_up_to,
            head_hash.to_hex(),
            Some(why),
        ),
    };
    if out.0 != RecordingState::Broken {
        if let Some(unreadable) = chunks.get(readable.len()) {
            let why = unreadable.unreadable.clone().unwrap_or_default();
            out = broken(unreadable.seq, why);
        }
    }
    if let Some(seal) = sealed.filter(|_| out.0 != RecordingState::Broken) {
        if seal.chunks > out.1 {
            let why = format!(
                "audit event {} sealed {} chunks but only {} are stored: chunks were removed",
                seal.audit_sequence, seal.chunks, out.1
            );
            out = broken(out.1, why);
        } else if hash_of(seal.chunks) != seal.head_hash {
            out = broken(
                seal.chunks.saturating_sub(1),
                format!(
                    "chunk {} differs from the head sealed in audit event {}",
                    seal.chunks.saturating_sub(1),
                    seal.audit_sequence
                ),
            );
        }
    }
    out
}

fn info(row: &RecordingRow, chunks: &[StoredChunk], sealed: Option<SealedHead>) -> RecordingInfo {
    let (state, verified_up_to, head_hash, why) = verdict(chunks, sealed.as_ref());
    let decoded: Vec<Chunk> = chunks
        .iter()
        .filter_map(|c| Chunk::decode(c.data.as_deref()?).ok())
        .collect();
    RecordingInfo {
        recording_id: row.id.clone(),
        session_id: row.session_id.clone(),
        connection_id: row.connection_id.clone(),
        chunks: row.chunks,
        bytes: row.bytes,
        started_at: crate::clock::to_u64(row.first_at),
        updated_at: crate::clock::to_u64(row.last_at),
        state,
        verified_up_to,
        head_hash,
        why,
        sealed,
        channels: summarize(&decoded),
    }
}
