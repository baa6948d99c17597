//! A recording's task: it owns the [`Recorder`], records the events the channels send,
//! spools every chunk the recorder emits, flushes every [`Limits::flush_every`], writes the
//! final chunk when the connection ends, and keeps the recording under its size cap.
//!
//! The cap is on the canonical bytes of all chunks, the final chunk included. Before each
//! event the task checks that what is spooled, plus a bound on what the recorder buffers,
//! plus the event's own bound, plus a header for every buffer and the final chunk, still
//! fits: so when an event would not, the buffered lines and the final chunk are written
//! within the cap, and the recording ends there (`size_cap`).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::Fallback;
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind};
use portcullis_proto::recording::{
    ChunkKind, Encoded, Event, FailureAction, Recorder, RecordingFailure, RecordingId,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Ids, Limits, Status};
use crate::chunks::{ChunkName, SpoolError};
use crate::Shared;

/// The largest chunk header (magic, kind, final flag and totals, a 64-byte id, seq, hash,
/// channel, body length).
const HEADER_MAX: u64 = 4 + 1 + 1 + 16 + 1 + 64 + 8 + 32 + 4 + 4;
/// Room for an event line's time, code, brackets, quotes and keys besides its text.
const LINE_MAX_OVERHEAD: u64 = 160;
/// The text an output or input line holds at least (the recorder cuts longer text).
const MIN_LINE_TEXT: u64 = 32;
/// Chunk writes of one recording under way at once: their flushes to disk share the file
/// system's journal commits (about 17 times the throughput of one at a time, measured on
/// ext4), and the spool sends them in seq order whatever order they finish in.
const WRITES_IN_FLIGHT: usize = 8;

/// What the channels send the task.
pub(super) enum Note {
    Event {
        channel: u32,
        at: Duration,
        event: Event,
        /// Told once the event is recorded (or the recording failed).
        done: Option<oneshot::Sender<()>>,
    },
    /// A channel's events can no longer be followed (an sftp channel its tracker gave up on,
    /// e.g. more requests in flight than it keeps): what it does would go unrecorded.
    Untracked(String),
    /// The connection ended.
    Finish,
}

/// Why a recording could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cause {
    SizeCap { max_bytes: u64 },
    SpoolFull(String),
    SpoolWrite(String),
    StoreRefused(String),
    Untracked(String),
}

impl Cause {
    /// The cause as `recording_failed` names it.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Cause::SizeCap { .. } => "size_cap",
            Cause::SpoolFull(_) => "spool_full",
            Cause::SpoolWrite(_) => "spool_write",
            Cause::StoreRefused(_) => "store_refused",
            Cause::Untracked(_) => "untracked",
        }
    }

    /// A few words for the user's stderr.
    pub(super) fn short(&self) -> &'static str {
        match self {
            Cause::SizeCap { .. } => "size cap reached",
            Cause::SpoolFull(_) => "the worker's recording spool is full",
            Cause::SpoolWrite(_) => "the worker cannot write it to disk",
            Cause::StoreRefused(_) => "the controller's store refused it",
            Cause::Untracked(_) => "a channel's operations cannot be followed",
        }
    }

    /// A sentence for the reviewer.
    fn message(&self) -> String {
        match self {
            Cause::SizeCap { max_bytes } => format!(
                "the recording reached its size cap of {max_bytes} bytes (recording.max_bytes on the worker)"
            ),
            Cause::SpoolFull(why) | Cause::SpoolWrite(why) => why.clone(),
            Cause::StoreRefused(why) => format!("the store refused a chunk: {why}"),
            Cause::Untracked(why) => format!("a channel's operations cannot be followed: {why}"),
        }
    }
}

impl From<SpoolError> for Cause {
    fn from(e: SpoolError) -> Cause {
        match e {
            SpoolError::Full { .. } => Cause::SpoolFull(e.to_string()),
            SpoolError::Write(_) | SpoolError::BadName(_) => Cause::SpoolWrite(e.to_string()),
        }
    }
}

/// A recording's task, before it runs.
pub(super) struct Task {
    pub(super) shared: Arc<Shared>,
    pub(super) ids: Ids,
    pub(super) fallback: Fallback,
    pub(super) limits: Limits,
    pub(super) status: Arc<Status>,
}

impl Task {
    pub(super) async fn run(self, mut notes: mpsc::Receiver<Note>) {
        let recording_id = self.ids.connection_id.clone();
        let refusal = self.shared.chunks.watch(&recording_id);
        let mut writer = match RecordingId::new(recording_id.clone()) {
            Ok(id) => Some(Writer::new(&self, id)),
            Err(e) => {
                self.fail(Cause::SpoolWrite(format!(
                    "the connection id cannot name a recording: {e}"
                )))
                .await;
                None
            }
        };
        let mut flush = tokio::time::interval(self.limits.flush_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let live = writer.is_some();
            let failed = tokio::select! {
                note = notes.recv() => match note {
                    Some(Note::Event { channel, at, event, done }) => {
                        let failed = match writer.as_mut() {
                            Some(w) => w.record(channel, at, &event).await.err(),
                            // Stopped: the channels stop sending; what was under way is dropped.
                            None => None,
                        };
                        if let Some(cause) = failed {
                            self.stop(&mut writer, cause).await;
                        }
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        None
                    }
                    Some(Note::Untracked(why)) => Some(Cause::Untracked(why)),
                    Some(Note::Finish) | None => break,
                },
                _ = flush.tick(), if live => match writer.as_mut() {
                    Some(w) => w.flush().await.err(),
                    None => None,
                },
                _ = refusal.refused.cancelled(), if live => {
                    Some(Cause::StoreRefused(refusal.reason().to_owned()))
                }
            };
            if let Some(cause) = failed {
                self.stop(&mut writer, cause).await;
            }
        }
        if let Some(mut w) = writer {
            if let Err(cause) = w.finish().await {
                self.fail(cause).await;
            }
        }
        self.shared.chunks.unwatch(&recording_id);
    }

    /// Ends the recording after a failure: a capped one with its buffered lines and final
    /// chunk (room for them was kept), any other as it stands.
    async fn stop(&self, writer: &mut Option<Writer>, cause: Cause) {
        // What was recorded so far stands: it ends with its final chunk.
        if let (Cause::SizeCap { .. } | Cause::Untracked(_), Some(w)) = (&cause, writer.as_mut()) {
            if let Err(e) = w.finish().await {
                tracing::warn!(
                    cause = e.code(),
                    "the final chunk of a capped recording could not be written"
                );
            }
        }
        *writer = None;
        self.fail(cause).await;
    }

    /// Stops the recording, closes the channels where the policy says so, and reports it.
    async fn fail(&self, cause: Cause) {
        self.status.stopped.store(true, Ordering::Relaxed);
        let _ = self.status.cause.set(cause.clone());
        let action = match self.fallback {
            Fallback::CloseChannel => {
                self.status.close.cancel();
                FailureAction::ClosedChannels
            }
            Fallback::ContinueUnrecorded => FailureAction::ContinuedUnrecorded,
        };
        let message = cause.message();
        tracing::warn!(recording.id = %self.ids.connection_id, cause = cause.code(), ?action, %message, "the session's recording cannot be written");
        let event = ConnectionEvent {
            event_id: format!("{}:recording-failed", self.ids.connection_id),
            session_id: self.ids.session_id.clone(),
            connection_id: self.ids.connection_id.clone(),
            at: self.shared.clock.unix_secs(),
            kind: ConnectionEventKind::RecordingFailed(RecordingFailure {
                recording_id: self.ids.connection_id.clone(),
                cause: cause.code().to_owned(),
                message,
                action,
            }),
        };
        self.shared.spool.record(event).await;
    }
}

/// The recorder, the spool it writes to, and the cap's accounts.
struct Writer {
    shared: Arc<Shared>,
    session_id: String,
    recording_id: RecordingId,
    recorder: Recorder,
    max_bytes: u64,
    /// The text an output line holds at most (the recorder cuts there).
    line_text: u64,
    /// Canonical bytes spooled so far.
    spooled: u64,
    /// At least the bytes the recorder buffers.
    buffered: u64,
    /// The recorder's buffers (channel, kind) since the last flush.
    buffers: HashSet<(u32, ChunkKind)>,
    /// Chunk writes under way, oldest first.
    writes: VecDeque<JoinHandle<Result<(), SpoolError>>>,
}

impl Writer {
    fn new(task: &Task, id: RecordingId) -> Writer {
        let recorder = Recorder::with_chunk_len(id.clone(), task.limits.chunk_len);
        Writer {
            shared: task.shared.clone(),
            session_id: task.ids.session_id.clone(),
            recording_id: id,
            recorder,
            max_bytes: task.limits.max_bytes,
            line_text: (task.limits.chunk_len.min(256 * 1024) as u64 / 6)
                .clamp(MIN_LINE_TEXT, 16 * 1024),
            spooled: 0,
            buffered: 0,
            buffers: HashSet::new(),
            writes: VecDeque::new(),
        }
    }

    async fn record(&mut self, channel: u32, at: Duration, event: &Event) -> Result<(), Cause> {
        let bound = self.bound(event);
        let buffer = (channel, kind(event));
        let buffers = self.buffers.len() as u64 + u64::from(!self.buffers.contains(&buffer));
        // The buffers' chunks and the final chunk must still fit after this event.
        let needed = self.spooled + self.buffered + bound + HEADER_MAX * (buffers + 1);
        if needed > self.max_bytes {
            return Err(Cause::SizeCap {
                max_bytes: self.max_bytes,
            });
        }
        self.buffers.insert(buffer);
        self.buffered += bound;
        let chunks = self
            .recorder
            .record(channel, at, event)
            .map_err(|e| Cause::SpoolWrite(format!("the event cannot be recorded: {e}")))?;
        self.spool(chunks).await
    }

    async fn flush(&mut self) -> Result<(), Cause> {
        let chunks = self
            .recorder
            .flush()
            .map_err(|e| Cause::SpoolWrite(e.to_string()))?;
        self.spool(chunks).await?;
        self.written().await?;
        self.buffered = 0;
        self.buffers.clear();
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), Cause> {
        let chunks = self
            .recorder
            .finish()
            .map_err(|e| Cause::SpoolWrite(e.to_string()))?;
        self.spool(chunks).await?;
        self.written().await
    }

    /// Waits for every chunk write under way.
    async fn written(&mut self) -> Result<(), Cause> {
        while !self.writes.is_empty() {
            self.oldest_written().await?;
        }
        Ok(())
    }

    /// Waits for the oldest chunk write under way.
    async fn oldest_written(&mut self) -> Result<(), Cause> {
        match self.writes.pop_front() {
            Some(write) => match write.await {
                Ok(written) => written.map_err(Cause::from),
                Err(e) => Err(Cause::SpoolWrite(format!("the chunk's write failed: {e}"))),
            },
            None => Ok(()),
        }
    }

    async fn spool(&mut self, chunks: Vec<Encoded>) -> Result<(), Cause> {
        for chunk in chunks {
            let len = chunk.bytes.len() as u64;
            let name = ChunkName {
                session_id: self.session_id.clone(),
                connection_id: self.recording_id.as_str().to_owned(),
                recording_id: self.recording_id.as_str().to_owned(),
                seq: chunk.seq,
            };
            while self.writes.len() >= WRITES_IN_FLIGHT {
                self.oldest_written().await?;
            }
            let shared = self.shared.clone();
            let write = async move { shared.chunks.write(name, chunk.bytes).await };
            self.writes.push_back(tokio::spawn(write));
            self.spooled += len;
            // The chunk's body left a buffer.
            self.buffered = self.buffered.saturating_sub(len.saturating_sub(HEADER_MAX));
        }
        Ok(())
    }

    /// At least the bytes `event` adds to the chunks: its lines (text escaped at worst
    /// six-fold for control characters) and a header for each chunk they may fill.
    fn bound(&self, event: &Event) -> u64 {
        let field = |s: &str| escaped_bound(s) + LINE_MAX_OVERHEAD + HEADER_MAX;
        match event {
            Event::Output(text) | Event::Input(text) => {
                let lines = text.len() as u64 / (self.line_text / 2).max(1) + 1;
                escaped_bound(text) + lines * (LINE_MAX_OVERHEAD + HEADER_MAX)
            }
            Event::PtyStarted(h) => {
                field(&h.term) + h.command.as_deref().map_or(0, escaped_bound) + 64
            }
            Event::Exec { command } => field(command),
            Event::Sftp { path, to, .. } => field(path) + to.as_deref().map_or(0, escaped_bound),
            Event::Forward { destination, .. } => field(destination),
            Event::Resized { .. } | Event::Exited { .. } => LINE_MAX_OVERHEAD + HEADER_MAX,
        }
    }
}

/// The buffer an event goes to.
fn kind(event: &Event) -> ChunkKind {
    match event {
        Event::PtyStarted(_) | Event::Output(_) | Event::Input(_) | Event::Resized { .. } => {
            ChunkKind::Asciicast
        }
        _ => ChunkKind::Events,
    }
}

/// At least the length of `text` as a JSON string's content.
fn escaped_bound(text: &str) -> u64 {
    text.chars()
        .map(|c| match c {
            '\0'..='\x1f' => 6,
            '"' | '\\' => 2,
            c => c.len_utf8() as u64,
        })
        .sum()
}
