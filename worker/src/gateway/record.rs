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

#[cfg(test)]
mod tests;
mod utf8;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_policy::Fallback;
use portcullis_proto::recording::{CastHeader, Event};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub(super) use self::utf8::Utf8Carry;
use self::writer::{Cause, Note};
use super::sftp::SftpTracker;
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
        let mode = match mode {
            Opened::Session => Mode::Session { pty: None },
            Opened::Forward { destination } => Mode::Forward {
                destination: clip(destination),
                bytes_in: 0,
                bytes_out: 0,
            },
        };
        Arc::new(ChannelRec {
            recording: self.clone(),
            number: self.next_channel.fetch_add(1, Ordering::Relaxed),
            opened: Instant::now(),
            opened_unix: self.shared.clock.unix_secs(),
            mode: Mutex::new(mode),
        })
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

/// What kind of channel opened.
pub(super) enum Opened {
    /// A session channel: a shell, a command or a subsystem follows.
    Session,
    /// A forwarded channel (either way) to `destination`.
    Forward { destination: String },
}

/// What a channel turned out to be.
enum Mode {
    /// A session channel before its shell, command or subsystem; a pty asked for or not.
    Session {
        pty: Option<PtySize>,
    },
    Pty {
        output: Utf8Carry,
        errors: Utf8Carry,
        input: Utf8Carry,
    },
    /// A command without a pty, or a subsystem other than sftp.
    Exec,
    Sftp(SftpTracker),
    Forward {
        destination: String,
        /// From the destination towards the user.
        bytes_in: u64,
        /// From the user towards the destination.
        bytes_out: u64,
    },
}

struct PtySize {
    width: u16,
    height: u16,
    term: String,
}

/// What a session channel starts.
pub(super) enum Start<'a> {
    Shell,
    Exec(&'a [u8]),
    Subsystem(&'a str),
}

/// One channel's part of the recording: what its relay and the handler report.
pub(super) struct ChannelRec {
    recording: Arc<Recording>,
    number: u32,
    opened: Instant,
    opened_unix: u64,
    mode: Mutex<Mode>,
}

impl ChannelRec {
    fn mode(&self) -> std::sync::MutexGuard<'_, Mode> {
        match self.mode.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Sends events to the recorder task, waiting for room; nothing once the recording
    /// stopped.
    async fn send(&self, events: Vec<Event>) {
        for event in events {
            if self.recording.status.stopped.load(Ordering::Relaxed) {
                return;
            }
            let note = Note::Event {
                channel: self.number,
                at: self.opened.elapsed(),
                event,
                done: None,
            };
            if self.recording.tx.send(note).await.is_err() {
                return;
            }
        }
    }

    /// Tells the recorder that this channel's operations can no longer be followed.
    async fn untracked(&self, why: String) {
        if !self.recording.status.stopped.load(Ordering::Relaxed) {
            let _ = self.recording.tx.send(Note::Untracked(why)).await;
        }
    }

    /// Sends one event and waits until it is recorded (or the recording failed).
    async fn send_recorded(&self, event: Event) {
        if self.recording.status.stopped.load(Ordering::Relaxed) {
            return;
        }
        let (done, recorded) = oneshot::channel();
        let note = Note::Event {
            channel: self.number,
            at: self.opened.elapsed(),
            event,
            done: Some(done),
        };
        if self.recording.tx.send(note).await.is_ok() {
            let _ = recorded.await;
        }
    }

    /// Whether this channel is a forward (no stderr to write to).
    pub(super) fn is_forward(&self) -> bool {
        matches!(*self.mode(), Mode::Forward { .. })
    }

    /// A pty-req: its size and `TERM`, for the header.
    pub(super) fn pty_requested(&self, width: u32, height: u32, term: &str) {
        if let Mode::Session { pty } = &mut *self.mode() {
            let (width, height) = size(width, height);
            *pty = Some(PtySize {
                width,
                height,
                term: clip(term.to_owned()),
            });
        }
    }

    /// A shell, command or subsystem starts: recorded before the request reaches the
    /// target. Returns whether it may go on: not when the connection's channels are closed
    /// because the recording cannot be written (nothing starts unrecorded).
    pub(super) async fn started(&self, start: Start<'_>) -> bool {
        let events = {
            let mut mode = self.mode();
            let Mode::Session { pty } = &mut *mode else {
                return !self.recording.closed();
            };
            let pty = pty.take();
            let (next, events) = match (start, pty) {
                (Start::Subsystem("sftp"), _) => (Mode::Sftp(SftpTracker::new()), vec![]),
                (Start::Subsystem(name), _) => (
                    Mode::Exec,
                    vec![Event::Exec {
                        command: clip(format!("subsystem {name}")),
                    }],
                ),
                (Start::Exec(command), None) => (
                    Mode::Exec,
                    vec![Event::Exec {
                        command: clip(String::from_utf8_lossy(command).into_owned()),
                    }],
                ),
                (start, pty) => {
                    let command = match start {
                        Start::Exec(command) => {
                            Some(clip(String::from_utf8_lossy(command).into_owned()))
                        }
                        _ => None,
                    };
                    let size = pty.unwrap_or(PtySize {
                        width: NO_PTY_SIZE.0,
                        height: NO_PTY_SIZE.1,
                        term: String::new(),
                    });
                    let header = CastHeader {
                        width: size.width,
                        height: size.height,
                        timestamp: self.opened_unix,
                        term: size.term,
                        command,
                    };
                    let pty = Mode::Pty {
                        output: Utf8Carry::default(),
                        errors: Utf8Carry::default(),
                        input: Utf8Carry::default(),
                    };
                    (pty, vec![Event::PtyStarted(header)])
                }
            };
            *mode = next;
            events
        };
        for event in events {
            self.send_recorded(event).await;
        }
        !self.recording.closed()
    }

    /// A window-change.
    pub(super) async fn resized(&self, width: u32, height: u32) {
        if matches!(*self.mode(), Mode::Pty { .. }) {
            let (width, height) = size(width, height);
            let event = Event::Resized { width, height };
            self.send(vec![event]).await;
        }
    }

    /// Bytes the user sent on the channel.
    pub(super) async fn user_sent(&self, data: &[u8]) {
        let mut untracked = None;
        let events = match &mut *self.mode() {
            Mode::Pty { input, .. } if self.recording.input => {
                text(input.decode(data), Event::Input)
            }
            Mode::Sftp(tracker) => follow_sftp(tracker, data, Side::Client, &mut untracked),
            Mode::Forward { bytes_out, .. } => {
                *bytes_out += data.len() as u64;
                vec![]
            }
            _ => vec![],
        };
        self.send(events).await;
        if let Some(why) = untracked {
            self.untracked(why).await;
        }
    }

    /// Bytes the target (or the forward's destination) sent: `extended` is stderr.
    pub(super) async fn target_sent(&self, data: &[u8], extended: bool) {
        let mut untracked = None;
        let events = match &mut *self.mode() {
            Mode::Pty { output, errors, .. } => {
                let decoder = if extended { errors } else { output };
                text(decoder.decode(data), Event::Output)
            }
            Mode::Sftp(tracker) if !extended => {
                follow_sftp(tracker, data, Side::Server, &mut untracked)
            }
            Mode::Forward { bytes_in, .. } => {
                *bytes_in += data.len() as u64;
                vec![]
            }
            _ => vec![],
        };
        self.send(events).await;
        if let Some(why) = untracked {
            self.untracked(why).await;
        }
    }

    /// Bytes a forward relayed outside this record (a vetted forward counts its own).
    pub(super) fn forwarded(&self, bytes_out: u64, bytes_in: u64) {
        if let Mode::Forward {
            bytes_in: i,
            bytes_out: o,
            ..
        } = &mut *self.mode()
        {
            *i += bytes_in;
            *o += bytes_out;
        }
    }

    /// The exit status of the shell or command.
    pub(super) async fn exited(&self, status: u32) {
        let events = match &mut *self.mode() {
            Mode::Pty { output, errors, .. } => {
                let mut events = text(output.finish(), Event::Output);
                events.extend(text(errors.finish(), Event::Output));
                events.push(Event::Exited { status });
                events
            }
            Mode::Exec => vec![Event::Exited { status }],
            _ => vec![],
        };
        self.send(events).await;
    }

    /// The channel closed: what is still open (an sftp file, a forward's totals).
    pub(super) async fn closed(&self) {
        let events = match &mut *self.mode() {
            Mode::Pty { output, errors, .. } => {
                let mut events = text(output.finish(), Event::Output);
                events.extend(text(errors.finish(), Event::Output));
                events
            }
            Mode::Sftp(tracker) => tracker.finish(),
            Mode::Forward {
                destination,
                bytes_in,
                bytes_out,
            } => vec![Event::Forward {
                destination: destination.clone(),
                bytes_in: *bytes_in,
                bytes_out: *bytes_out,
            }],
            _ => vec![],
        };
        self.send(events).await;
    }

    /// Waits until the connection's channels must close for the recording.
    pub(super) async fn closing(&self) -> String {
        self.recording.closing().await
    }
}

/// A terminal's size as a cast can replay it: a client without a terminal of its own
/// (`ssh -tt` from a script) asks for 0×0, which no player takes.
fn size(width: u32, height: u32) -> (u16, u16) {
    let side = |n: u32, default: u16| match n {
        0 => default,
        n => u16::try_from(n).unwrap_or(u16::MAX),
    };
    (side(width, NO_PTY_SIZE.0), side(height, NO_PTY_SIZE.1))
}

/// Where sftp bytes came from.
enum Side {
    Client,
    Server,
}

/// Feeds an sftp channel's bytes to its tracker; sets `untracked` to why the tracker gave
/// up, the first time it does (an sftp channel nobody follows would escape the recording).
fn follow_sftp(
    tracker: &mut SftpTracker,
    data: &[u8],
    side: Side,
    untracked: &mut Option<String>,
) -> Vec<Event> {
    let followed = tracker.gave_up().is_none();
    let events = match side {
        Side::Client => tracker.from_client(data),
        Side::Server => tracker.from_server(data),
    };
    if followed {
        *untracked = tracker.gave_up().map(ToString::to_string);
    }
    events
}

/// A text event, unless the text is empty.
fn text(text: String, event: fn(String) -> Event) -> Vec<Event> {
    if text.is_empty() {
        vec![]
    } else {
        vec![event(text)]
    }
}

/// `text`, cut at [`MAX_FIELD`] bytes (on a character boundary) with a mark that it was.
fn clip(mut text: String) -> String {
    if text.len() > MAX_FIELD {
        let mut cut = MAX_FIELD;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("…[cut]");
    }
    text
}
