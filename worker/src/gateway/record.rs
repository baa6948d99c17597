//! The recording of a gateway connection, where the grant's `gw.rec` asks for one: one
//! recording per connection, its id the connection's id.
//!
//! The channel relays and the handler describe what each channel does through its
//! [`ChannelRec`]: a pty's header, output, input (only where the policy asks for it),
//! resizes and exit status; an exec's command and exit status; the sftp operations
//! ([`super::sftp`] reads them from the packets); a forward's destination and bytes when it
//! closes. The events go, with their time since the channel opened, through a bounded
//! channel to the connection's recorder task ([`writer`]), which cuts them into chained
//! chunks, spools each one on disk before it counts as recorded ([`crate::chunks`]), flushes
//! every second so that a live session can be followed and a killed worker loses little, and
//! writes the final chunk at the connection's end. A relay waits for its event to be taken
//! (back-pressure): the events of a required recording are never dropped.
//!
//! When the recording cannot be written (its size cap, a full spool, a failed write, the
//! store's refusal) and the policy requires it with `close_channel`, every channel of the
//! connection is closed with a line on the user's stderr and no new channel opens; with
//! `continue_unrecorded` the recording stops and the session goes on. Either way a
//! `recording_failed` connection event says so.
//!
//! A shell without a pty is recorded as a terminal too (80×24, no `TERM`): what it prints is
//! what a pty would have shown, and leaving out the pty must not escape the recording. An
//! exec without a pty records its command and exit status only.

mod channel;
#[cfg(test)]
mod tests;
mod utf8;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use portcullis_policy::Fallback;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub(super) use self::channel::{ChannelRec, Opened, Start};
pub(super) use self::utf8::Utf8Carry;
use self::writer::{Cause, Note};
use crate::Shared;

/// How many events may wait for the recorder task before a relay waits.
const QUEUE: usize = 256;
/// The size of a terminal that asked for no pty, or for a size of 0.
const NO_PTY_SIZE: (u16, u16) = (80, 24);
/// The longest command, path or destination recorded; longer ones are cut (and say so).
const MAX_FIELD: usize = 16 * 1024;

/// What bounds a recording.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// The most canonical chunk bytes, the final chunk included.
    pub(super) max_bytes: u64,
    /// The body size chunks are cut at.
    pub(super) chunk_len: usize,
    /// How often buffered events are written out.
    pub(super) flush_every: Duration,
}

impl Limits {
    pub(super) fn from_config(shared: &Shared) -> Limits {
        Limits {
            max_bytes: shared.config.recording.max_bytes,
            chunk_len: usize::MAX,
            flush_every: Duration::from_secs(1),
        }
    }
}

/// What a recording's channels and its task share about its state.
#[derive(Default)]
struct Status {
    /// Nothing more is recorded (the recording failed).
    stopped: AtomicBool,
    /// Cancelled when the connection's channels must close.
    close: CancellationToken,
    /// Why the recording failed.
    cause: OnceLock<Cause>,
}

/// One gateway connection's recording.
pub(super) struct Recording {
    tx: mpsc::Sender<Note>,
    status: Arc<Status>,
    input: bool,
    next_channel: AtomicU32,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The ids a recording is filed under.
pub(super) struct Ids {
    pub(super) session_id: String,
    pub(super) connection_id: String,
}

impl Recording {
    /// Starts the recording of a connection and its recorder task.
    pub(super) fn start(
        shared: &Arc<Shared>,
        ids: Ids,
        policy: portcullis_policy::Recording,
        limits: Limits,
    ) -> Arc<Recording> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let status = Arc::new(Status::default());
        // Only a required recording closes channels; one that is not goes on unrecorded.
        let fallback = if policy.required {
            policy.fallback
        } else {
            Fallback::ContinueUnrecorded
        };
        let task = writer::Task {
            shared: shared.clone(),
            ids,
            fallback,
            limits,
            status: status.clone(),
        };
        let task = tokio::spawn(task.run(rx).in_current_span());
        Arc::new(Recording {
            tx,
            status,
            input: policy.input,
            next_channel: AtomicU32::new(0),
            shared: shared.clone(),
            task: Mutex::new(Some(task)),
        })
    }

    /// A new channel's part of the recording, numbered in opening order from 0.
    pub(super) fn channel(self: &Arc<Self>, mode: Opened) -> Arc<ChannelRec> {
        ChannelRec::new(self, mode)
    }

    /// Whether the connection's channels are closed for the recording: no new one opens.
    pub(super) fn closed(&self) -> bool {
        self.status.close.is_cancelled()
    }

    /// Waits until the connection's channels must close for the recording; returns the line
    /// for the user.
    pub(super) async fn closing(&self) -> String {
        self.status.close.cancelled().await;
        self.closing_line()
    }

    /// The line a channel closed for the recording shows on the user's stderr.
    pub(super) fn closing_line(&self) -> String {
        let why = self
            .status
            .cause
            .get()
            .map(Cause::short)
            .unwrap_or("it failed");
        format!("portcullis gateway: this session's recording cannot be written ({why}); the channel is closed\r\n")
    }

    /// The connection ended: writes what is buffered and the final chunk, and waits for it.
    pub(super) async fn finish(&self) {
        let _ = self.tx.send(Note::Finish).await;
        let task = match self.task.lock() {
            Ok(mut t) => t.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
