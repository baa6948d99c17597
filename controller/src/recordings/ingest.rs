//! `Request::RecordingChunks`: each chunk a worker sends is checked against where its
//! recording's stored chain stands ([`check`], pure) and, when it is the next one, sealed and
//! appended in the recordings store, never on the hot store's connection. Every chunk gets
//! its own answer:
//!
//! - `Stored`: appended now, or already stored with the same bytes (a redelivery after a
//!   lost acknowledgement is idempotent);
//! - `Later`: an earlier chunk has not arrived, or a store is unreachable: the worker keeps
//!   it spooled and sends it again;
//! - `Refused`: it can never be stored (it does not decode, names another recording, session
//!   or worker, does not chain onto the stored head, differs from the chunk stored at its
//!   seq, follows the final chunk, or would take the recording over
//!   `recordings.max_bytes_per_recording`).
//!
//! After the chunks, the heads that are due are sealed into the audit chain (`super::seal`).

use std::collections::BTreeMap;

use portcullis_proto::link::Response;
use portcullis_proto::recording::{Chunk, ChunkAck, ChunkHash, ChunkOutcome, SpooledChunk};
use portcullis_proto::text;

use super::crypt::Sealer;
use crate::clock;
use crate::state::AppState;
use crate::store::recordings::{ChunkRow, NewChunk, RecordingRow};
use crate::store::sessions as session_rows;

/// What to do with one chunk, given the stored head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// It is the next chunk: append it.
    Append,
    /// Its seq is stored with these very bytes.
    AlreadyStored,
    Later(String),
    Refused(String),
}

/// The facts [`check`] decides on.
pub(crate) struct Facts<'a> {
    pub chunk: &'a Chunk,
    /// SHA-256 of the chunk's canonical bytes as sent.
    pub hash: ChunkHash,
    pub session_id: &'a str,
    /// The recording as stored, if any chunk of it is.
    pub head: Option<&'a RecordingRow>,
    /// The hash stored at the chunk's seq, when that seq is stored.
    pub stored_at_seq: Option<&'a str>,
    /// `recordings.max_bytes_per_recording`.
    pub cap: u64,
}

/// Decides what becomes of a decoded chunk whose recording, session and worker check out.
pub(crate) fn check(f: &Facts<'_>) -> Check {
    let seq = f.chunk.header.seq;
    let next = f.head.map_or(0, |h| h.chunks);
    if let Some(head) = f.head.filter(|h| h.session_id != f.session_id) {
        return Check::Refused(format!(
            "recording {} belongs to session {}, not {}",
            head.id, head.session_id, f.session_id
        ));
    }
    if seq < next {
        return match f.stored_at_seq {
            Some(stored) if stored == f.hash.to_hex() => Check::AlreadyStored,
            _ => Check::Refused(format!(
                "a different chunk {seq} is stored: a recording's chunks cannot be replaced"
            )),
        };
    }
    if f.head.is_some_and(|h| h.finished) {
        return Check::Refused(format!("chunk {seq} follows the recording's final chunk"));
    }
    if seq > next {
        return Check::Later(format!(
            "chunk {next} has not been stored yet; send the chunks in order"
        ));
    }
    let expected = match f.head {
        Some(head) if next > 0 => head.head_hash.clone(),
        _ => ChunkHash::GENESIS.to_hex(),
    };
    if f.chunk.header.prev_hash.to_hex() != expected {
        return Check::Refused(format!(
            "chunk {seq} does not chain onto the stored chunk {}: its previous hash differs",
            next.saturating_sub(1)
        ));
    }
    let bytes = f.head.map_or(0, |h| h.bytes);
    let body = f.chunk.body.len() as u64;
    if bytes.saturating_add(body) > f.cap {
        return Check::Refused(format!(
            "the recording would hold {} bytes, over the controller's cap of {} \
             (recordings.max_bytes_per_recording)",
            bytes.saturating_add(body),
            f.cap
        ));
    }
    Check::Append
}

/// Answers `Request::RecordingChunks` from `worker_id`.
pub(crate) async fn store_chunks(
    state: &AppState,
    worker_id: &str,
    chunks: Vec<SpooledChunk>,
) -> Response {
    let mut sessions = BTreeMap::new();
    let mut sealer = None;
    let mut advanced = BTreeMap::new();
    let mut acks = Vec::with_capacity(chunks.len());
    for spooled in chunks {
        let outcome = store_one(state, worker_id, &spooled, &mut sessions, &mut sealer).await;
        if let Ok(Some(row)) = &outcome {
            advanced.insert(row.id.clone(), row.clone());
        }
        let outcome = match outcome {
            Ok(_) => ChunkOutcome::Stored,
            Err(outcome) => outcome,
        };
        if let ChunkOutcome::Refused { reason } = &outcome {
            tracing::warn!(
                recording.id = %text::escaped(&spooled.recording_id),
                seq = spooled.seq,
                reason = %reason,
                "a recording chunk was refused"
            );
        }
        acks.push(ChunkAck {
            recording_id: spooled.recording_id,
            seq: spooled.seq,
            outcome,
        });
    }
    for row in advanced.values() {
        let ended = sessions
            .get(&row.session_id)
            .and_then(|s: &Option<session_rows::SessionRecord>| s.as_ref())
            .is_none_or(|s| !s.state.is_live());
        if let Err(err) = super::seal::if_due(state, row, ended).await {
            tracing::warn!(error = %text::escaped(&err), recording.id = %row.id, "could not seal a recording's head; the sweeper will");
        }
    }
    Response::ChunksStored { acks }
}

fn later(reason: impl Into<String>) -> ChunkOutcome {
    ChunkOutcome::Later {
        reason: reason.into(),
    }
}

fn refused(reason: impl Into<String>) -> ChunkOutcome {
    ChunkOutcome::Refused {
        reason: reason.into(),
    }
}

/// One chunk: `Ok(Some(head))` when it was appended (the recording's new head),
/// `Ok(None)` when it was already stored, otherwise the outcome to answer.
async fn store_one(
    state: &AppState,
    worker_id: &str,
    spooled: &SpooledChunk,
    sessions: &mut BTreeMap<String, Option<session_rows::SessionRecord>>,
    sealer: &mut Option<Sealer>,
) -> Result<Option<RecordingRow>, ChunkOutcome> {
    let chunk = Chunk::decode(&spooled.data)
        .map_err(|e| refused(format!("chunk {} does not decode: {e}", spooled.seq)))?;
    let header = &chunk.header;
    if header.recording_id.as_str() != spooled.recording_id
        || spooled.recording_id != spooled.connection_id
        || header.seq != spooled.seq
    {
        return Err(refused(
            "the chunk's recording id or seq is not the one it was sent under, or the recording \
             is not named for its connection",
        ));
    }
    let session = match sessions.get(&spooled.session_id) {
        Some(known) => known.clone(),
        None => {
            let found = async {
                let mut conn = state.store.conn().await?;
                session_rows::get(&mut conn, &spooled.session_id).await
            }
            .await
            .map_err(|e| later(format!("the controller's store is unreachable: {e}")))?;
            sessions.insert(spooled.session_id.clone(), found.clone());
            found
        }
    };
    match &session {
        None => return Err(refused(format!("unknown session {:?}", spooled.session_id))),
        Some(s) if s.worker_id != worker_id => {
            return Err(refused("the session belongs to another worker"))
        }
        Some(_) => {}
    }
    let unreachable =
        |e: crate::store::StoreError| later(format!("the recordings store is unreachable: {e}"));
    let recordings = &state.recordings;
    let head = recordings
        .get(&spooled.recording_id)
        .await
        .map_err(unreachable)?;
    let stored_at_seq = match &head {
        Some(h) if spooled.seq < h.chunks => recordings
            .chunk_hash(&spooled.recording_id, spooled.seq)
            .await
            .map_err(unreachable)?,
        _ => None,
    };
    let hash = ChunkHash(portcullis_crypto::digest::sha256(&spooled.data));
    let facts = Facts {
        chunk: &chunk,
        hash,
        session_id: &spooled.session_id,
        head: head.as_ref(),
        stored_at_seq: stored_at_seq.as_deref(),
        cap: state.config.recordings.max_bytes_per_recording,
    };
    match check(&facts) {
        Check::AlreadyStored => return Ok(None),
        Check::Later(reason) => return Err(later(reason)),
        Check::Refused(reason) => return Err(refused(reason)),
        Check::Append => {}
    }
    if sealer.is_none() {
        *sealer = Some(
            Sealer::active(&state.keys)
                .await
                .map_err(|e| later(format!("the recording key is unusable: {e}")))?,
        );
    }
    let Some(sealer) = sealer.as_ref() else {
        return Err(later("the recording key is unusable"));
    };
    let ciphertext = sealer
        .seal(&spooled.recording_id, spooled.seq, &spooled.data)
        .map_err(|e| later(e.to_string()))?;
    let row = ChunkRow {
        recording_id: spooled.recording_id.clone(),
        seq: spooled.seq,
        channel: header.channel,
        kind: match header.kind {
            portcullis_proto::recording::ChunkKind::Asciicast => "asciicast".into(),
            portcullis_proto::recording::ChunkKind::Events => "events".into(),
        },
        finished: header.end.is_some(),
        body_len: chunk.body.len() as u64,
        chunk_hash: hash.to_hex(),
        ciphertext,
        key_id: sealer.key_id().to_owned(),
        stored_at: clock::to_i64(state.clock.unix_secs()),
    };
    let new = NewChunk {
        session_id: &spooled.session_id,
        worker_id,
        row,
    };
    if !recordings.append(&new).await.map_err(unreachable)? {
        return Err(later(
            "another delivery of this recording was being stored; send the chunk again",
        ));
    }
    let head = recordings
        .get(&spooled.recording_id)
        .await
        .map_err(unreachable)?;
    Ok(head)
}
