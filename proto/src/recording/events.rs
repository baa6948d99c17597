//! What a session does, as the lines of chunk bodies, and the [`Recorder`] that cuts them
//! into chained chunks.
//!
//! A pty channel's lines are asciicast v2 ([`ChunkKind::Asciicast`]): its header object, then
//! `[t, "o", data]`, `[t, "i", data]` and `[t, "r", "WxH"]`, so that the asciicast bodies of
//! one channel, in order, are a `.cast` file. Everything else is a JSON object a line
//! ([`ChunkKind::Events`]) with the time `t` and the `event` name. Times are seconds since the
//! channel opened, to the microsecond; the caller measures them (this module has no clock).
//!
//! The recorder keeps one buffer per channel and kind, and emits a buffer as a chunk when the
//! next line would not fit in [`MAX_BODY_LEN`], on [`Recorder::flush`] and on
//! [`Recorder::finish`], which also emits the final chunk with the recording's totals.
//! Output and input longer than [`MAX_TEXT_LEN`], or than a sixth of the chunk length (JSON
//! escaping grows a control character six-fold), are cut into several events at the same
//! time, on character boundaries, so that any text fits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::chunk::{
    hash, Chunk, ChunkError, ChunkHash, ChunkHeader, ChunkKind, RecordingEnd, RecordingId,
    MAX_BODY_LEN,
};

/// The most text one output or input event holds.
pub(super) const MAX_TEXT_LEN: usize = 16 * 1024;
/// The smallest body a recorder cuts chunks at.
pub(super) const MIN_CHUNK_LEN: usize = 256;
/// Room for an event line's time, code, brackets and quotes.
const LINE_OVERHEAD: usize = 64;

/// The start of a pty channel: the asciicast v2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastHeader {
    pub width: u16,
    pub height: u16,
    /// Unix seconds at which the channel opened.
    pub timestamp: u64,
    /// The client's `TERM`.
    pub term: String,
    /// The command, when the pty runs an exec request rather than a shell.
    pub command: Option<String>,
}

/// An sftp or scp operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SftpOp {
    Open,
    Read,
    Write,
    Rename,
    Remove,
    Mkdir,
    Rmdir,
    Setstat,
}

/// One thing that happened on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A pty channel opened; must come before its output.
    PtyStarted(CastHeader),
    /// What the terminal showed.
    Output(String),
    /// What the user typed; recorded only where the policy asks for it.
    Input(String),
    Resized {
        width: u16,
        height: u16,
    },
    /// An exec request's command line.
    Exec {
        command: String,
    },
    /// The channel's exit status.
    Exited {
        status: u32,
    },
    Sftp {
        op: SftpOp,
        path: String,
        /// The new path of a rename.
        to: Option<String>,
        mode: Option<u32>,
        bytes: u64,
    },
    /// A forwarded channel, when it closes.
    Forward {
        destination: String,
        bytes_in: u64,
        bytes_out: u64,
    },
}

/// What went wrong recording an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the recording is finished; a new session needs a new recording")]
    Finished,
    #[error("an event line is {len} bytes, more than a chunk holds; shorten its command or path")]
    EventTooLarge { len: usize },
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// A chunk as the recorder emits it: its canonical bytes (what is spooled and stored) and
/// their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub seq: u64,
    pub hash: ChunkHash,
    pub bytes: Vec<u8>,
}

/// Cuts a recording's events into chained chunks. Pure: the caller spools what it returns.
#[derive(Debug)]
pub struct Recorder {
    id: RecordingId,
    chunk_len: usize,
    next_seq: u64,
    head: ChunkHash,
    totals: RecordingEnd,
    buffers: BTreeMap<(u32, ChunkKind), Buffer>,
    finished: bool,
}

#[derive(Debug, Default)]
struct Buffer {
    body: String,
    lines: u64,
}

impl Recorder {
    pub fn new(id: RecordingId) -> Self {
        Self::with_chunk_len(id, MAX_BODY_LEN)
    }

    /// A recorder whose bodies stay under `chunk_len` bytes (from [`MIN_CHUNK_LEN`] to
    /// [`MAX_BODY_LEN`]), for smaller chunks (and tests).
    pub fn with_chunk_len(id: RecordingId, chunk_len: usize) -> Self {
        Recorder {
            id,
            chunk_len: chunk_len.clamp(MIN_CHUNK_LEN, MAX_BODY_LEN),
            next_seq: 0,
            head: ChunkHash::GENESIS,
            totals: RecordingEnd::default(),
            buffers: BTreeMap::new(),
            finished: false,
        }
    }

    /// The number of chunks emitted and the hash of the last: what the controller seals.
    pub fn head(&self) -> (u64, ChunkHash) {
        (self.next_seq, self.head)
    }

    /// Records `event` on `channel`, `at` after the channel opened; returns the chunks that
    /// filled up.
    pub fn record(
        &mut self,
        channel: u32,
        at: Duration,
        event: &Event,
    ) -> Result<Vec<Encoded>, RecordError> {
        if self.finished {
            return Err(RecordError::Finished);
        }
        let text_len = ((self.chunk_len - LINE_OVERHEAD) / 6).min(MAX_TEXT_LEN);
        let (kind, lines) = lines(at, event, text_len);
        let mut out = Vec::new();
        for line in lines {
            if line.len() > self.chunk_len {
                return Err(RecordError::EventTooLarge { len: line.len() });
            }
            let key = (channel, kind);
            let full = self
                .buffers
                .get(&key)
                .is_some_and(|b| b.body.len() + line.len() > self.chunk_len);
            if full {
                out.extend(self.emit(key, None)?);
            }
            let buffer = self.buffers.entry(key).or_default();
            buffer.body.push_str(&line);
            buffer.lines += 1;
        }
        Ok(out)
    }

    /// Emits every buffered line, channel by channel.
    pub fn flush(&mut self) -> Result<Vec<Encoded>, RecordError> {
        let keys: Vec<_> = self.buffers.keys().copied().collect();
        let mut out = Vec::new();
        for key in keys {
            out.extend(self.emit(key, None)?);
        }
        Ok(out)
    }

    /// Emits every buffered line, then the final chunk (channel 0, [`ChunkKind::Events`], an
    /// empty body, the totals); the recorder takes no more events.
    pub fn finish(&mut self) -> Result<Vec<Encoded>, RecordError> {
        if self.finished {
            return Err(RecordError::Finished);
        }
        let mut out = self.flush()?;
        self.finished = true;
        let end = self.totals;
        out.extend(self.emit((0, ChunkKind::Events), Some(end))?);
        Ok(out)
    }

    fn emit(
        &mut self,
        key: (u32, ChunkKind),
        end: Option<RecordingEnd>,
    ) -> Result<Option<Encoded>, RecordError> {
        let buffer = self.buffers.remove(&key).unwrap_or_default();
        if buffer.lines == 0 && end.is_none() {
            return Ok(None);
        }
        let chunk = Chunk {
            header: ChunkHeader {
                recording_id: self.id.clone(),
                seq: self.next_seq,
                prev_hash: self.head,
                channel: key.0,
                kind: key.1,
                end,
            },
            body: buffer.body,
        };
        let bytes = chunk.encode()?;
        let encoded = Encoded {
            seq: self.next_seq,
            hash: hash(&bytes),
            bytes,
        };
        self.next_seq += 1;
        self.head = encoded.hash;
        self.totals.bytes += chunk.body.len() as u64;
        self.totals.events += buffer.lines;
        Ok(Some(encoded))
    }
}

/// The body lines of one event, each newline-terminated, and the kind of body they go in;
/// output and input are cut every `text_len` bytes (at least one character a line).
pub(super) fn lines(at: Duration, event: &Event, text_len: usize) -> (ChunkKind, Vec<String>) {
    use super::asciicast::{event_line, header_line};
    let t = seconds(at);
    match event {
        Event::PtyStarted(header) => (ChunkKind::Asciicast, vec![header_line(header)]),
        Event::Output(text) => (ChunkKind::Asciicast, text_lines(t, "o", text, text_len)),
        Event::Input(text) => (ChunkKind::Asciicast, text_lines(t, "i", text, text_len)),
        Event::Resized { width, height } => (
            ChunkKind::Asciicast,
            vec![event_line(t, "r", &format!("{width}x{height}"))],
        ),
        Event::Exec { command } => structured(Structured::Exec { t, command }),
        Event::Exited { status } => structured(Structured::Exited { t, status: *status }),
        Event::Sftp {
            op,
            path,
            to,
            mode,
            bytes,
        } => structured(Structured::Sftp {
            t,
            op: *op,
            path,
            to: to.as_deref(),
            mode: *mode,
            bytes: *bytes,
        }),
        Event::Forward {
            destination,
            bytes_in,
            bytes_out,
        } => structured(Structured::Forward {
            t,
            destination,
            bytes_in: *bytes_in,
            bytes_out: *bytes_out,
        }),
    }
}

/// Seconds to the microsecond, as asciicast writes them.
fn seconds(at: Duration) -> f64 {
    at.as_micros() as f64 / 1e6
}

fn text_lines(t: f64, code: &str, text: &str, text_len: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(text_len.max(4));
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (part, tail) = rest.split_at(cut);
        out.push(super::asciicast::event_line(t, code, part));
        rest = tail;
    }
    out
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Structured<'a> {
    Exec {
        t: f64,
        command: &'a str,
    },
    Exited {
        t: f64,
        status: u32,
    },
    Sftp {
        t: f64,
        op: SftpOp,
        path: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        bytes: u64,
    },
    Forward {
        t: f64,
        destination: &'a str,
        bytes_in: u64,
        bytes_out: u64,
    },
}

fn structured(event: Structured<'_>) -> (ChunkKind, Vec<String>) {
    // Serialising strings and numbers cannot fail.
    let mut line = serde_json::to_string(&event).unwrap_or_default();
    line.push('\n');
    (ChunkKind::Events, vec![line])
}
