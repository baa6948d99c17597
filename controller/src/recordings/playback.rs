//! What the console's player reads: a pty channel as an asciicast v2 file (the chunks that
//! stand, as `sessions export --format asciicast` writes it), and, for a live session, the
//! chunks stored since the last read turned into the messages of asciinema-player's
//! `eventsource` driver, each chunk checked against the one before it as `sessions watch`
//! does. Every read is audited as `recording_read` before anything is returned.

use std::time::Duration;

use portcullis_proto::recording::{
    cast, CastError, Chunk, ChunkHash, ChunkKind, RecordingState, StoredChunk,
};
use serde_json::Value;

use super::crypt::Openers;
use super::read::{
    all_chunks, audited_read, newest_seal, page, recording_of, session_events, verdict, ReadError,
};
use crate::audit::Actor;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PlaybackError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{0}; the session page lists the recording's terminal (pty) channels")]
    Cast(#[from] CastError),
}

/// A pty channel's `.cast` text, from the chunks that stand, and how far the recording
/// verifies.
#[derive(Debug)]
pub(crate) struct Cast {
    pub text: String,
    pub state: RecordingState,
    /// Chunks `0..verified_up_to` chain (those the text was made of).
    pub verified_up_to: u64,
}

/// The asciicast v2 file of `channel` of a recording, audited as `recording_read` (`cast`).
/// A broken recording gives only what comes before the break; an incomplete one what there
/// is.
pub(crate) async fn cast_of(
    state: &AppState,
    actor: &Actor,
    session_id: &str,
    recording_id: &str,
    channel: u32,
) -> Result<Cast, PlaybackError> {
    let row = recording_of(state, session_id, recording_id).await?;
    let openers = Openers::load(&state.keys).await.map_err(ReadError::from)?;
    let chunks = all_chunks(state, &openers, &row)
        .await
        .map_err(ReadError::from)?;
    let events = session_events(state, session_id)
        .await
        .map_err(ReadError::from)?;
    let sealed = newest_seal(&events, recording_id);
    let (recording_state, verified_up_to, _head, _why) = verdict(&chunks, sealed.as_ref());
    audited_read(state, actor, session_id, Some(recording_id), "cast", None)
        .await
        .map_err(ReadError::from)?;
    let standing: Vec<Chunk> = chunks
        .iter()
        .take(usize::try_from(verified_up_to).unwrap_or(usize::MAX))
        .filter_map(|c| Chunk::decode(c.data.as_deref()?).ok())
        .collect();
    Ok(Cast {
        text: cast(&standing, channel)?,
        state: recording_state,
        verified_up_to,
    })
}

/// One message of asciinema-player's `eventsource` driver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LiveMessage {
    /// The terminal's size (the channel's asciicast header): the player resets to it.
    Reset { cols: u16, rows: u16 },
    /// An output (`o`) or resize (`r`) event; typed input is never sent.
    Event {
        time: f64,
        code: String,
        data: String,
    },
    /// The stream is over: the final chunk came, or the chain broke (`why`).
    Done { why: Option<String> },
}

impl LiveMessage {
    /// The SSE `data` of the message (`None` for [`LiveMessage::Done`], an event of its own).
    pub(crate) fn data(&self) -> Option<String> {
        match self {
            LiveMessage::Reset { cols, rows } => {
                Some(serde_json::json!({"cols": cols, "rows": rows}).to_string())
            }
            LiveMessage::Event { time, code, data } => {
                Some(serde_json::json!([time, code, data]).to_string())
            }
            LiveMessage::Done { .. } => None,
        }
    }
}

/// A follower of a live recording: where it is in the chain and which channel it shows.
#[derive(Debug)]
pub(crate) struct Follower {
    session_id: String,
    recording_id: String,
    /// The pty channel shown; the first one that appears when none was asked for.
    channel: Option<u32>,
    next_seq: u64,
    prev: ChunkHash,
    done: bool,
}

impl Follower {
    pub(crate) fn new(session_id: &str, recording_id: &str, channel: Option<u32>) -> Follower {
        Follower {
            session_id: session_id.to_owned(),
            recording_id: recording_id.to_owned(),
            channel,
            next_seq: 0,
            prev: ChunkHash::GENESIS,
            done: false,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// The chunks stored after the last read (waiting up to `wait` for one while the
    /// recording is not finished), as messages; audited like any chunk page.
    pub(crate) async fn next(
        &mut self,
        state: &AppState,
        actor: &Actor,
        wait: Duration,
    ) -> Result<Vec<LiveMessage>, PlaybackError> {
        let page = page(
            state,
            actor,
            &self.session_id,
            &self.recording_id,
            self.next_seq,
            super::read::DEFAULT_PAGE,
            wait,
        )
        .await?;
        Ok(self.take(&page.chunks))
    }

    /// Pure: `chunks` (the next ones, in seq order) checked link by link and turned into
    /// messages. A chunk that does not open, decode or chain ends the stream with why.
    pub(crate) fn take(&mut self, chunks: &[StoredChunk]) -> Vec<LiveMessage> {
        let mut out = Vec::new();
        for stored in chunks {
            if self.done {
                break;
            }
            let seq = self.next_seq;
            let Some(bytes) = stored.data.as_deref() else {
                out.push(self.broken(format!(
                    "chunk {seq} cannot be read: {}",
                    stored.unreadable.as_deref().unwrap_or("unknown")
                )));
                break;
            };
            let chunk = match Chunk::decode(bytes) {
                Ok(chunk) => chunk,
                Err(e) => {
                    out.push(self.broken(format!("chunk {seq} does not decode: {e}")));
                    break;
                }
            };
            if chunk.header.seq != seq || chunk.header.prev_hash != self.prev {
                out.push(self.broken(format!(
                    "chunk {seq} does not chain onto the chunk before it: it was altered, \
                     removed or reordered"
                )));
                break;
            }
            self.prev = ChunkHash(portcullis_crypto::digest::sha256(bytes));
            self.next_seq += 1;
            if chunk.header.kind == ChunkKind::Asciicast
                && *self.channel.get_or_insert(chunk.header.channel) == chunk.header.channel
            {
                out.extend(chunk.body.lines().filter_map(message));
            }
            if chunk.header.end.is_some() {
                self.done = true;
                out.push(LiveMessage::Done { why: None });
            }
        }
        out
    }

    fn broken(&mut self, why: String) -> LiveMessage {
        self.done = true;
        LiveMessage::Done { why: Some(why) }
    }
}

/// One asciicast line as a message: the header's size, an `o` or `r` event; nothing for
/// input (players do not show it, and it may hold what was typed at a password prompt) or a
/// line that does not parse.
fn message(line: &str) -> Option<LiveMessage> {
    match serde_json::from_str::<Value>(line).ok()? {
        Value::Object(header) => Some(LiveMessage::Reset {
            cols: u16::try_from(header.get("width")?.as_u64()?).ok()?,
            rows: u16::try_from(header.get("height")?.as_u64()?).ok()?,
        }),
        Value::Array(event) => {
            let code = event.get(1)?.as_str()?;
            if !matches!(code, "o" | "r") {
                return None;
            }
            Some(LiveMessage::Event {
                time: event.first()?.as_f64()?,
                code: code.to_owned(),
                data: event.get(2)?.as_str()?.to_owned(),
            })
        }
        _ => None,
    }
}
