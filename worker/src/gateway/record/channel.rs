//! One channel's part of a recording: what its relay and the handler report, turned into
//! the recording's events by what the channel turned out to be (a pty, an exec, sftp, a
//! forward).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_proto::recording::{CastHeader, Event};
use tokio::sync::oneshot;

use super::writer::Note;
use super::{Recording, Utf8Carry, MAX_FIELD, NO_PTY_SIZE};
use crate::gateway::sftp::SftpTracker;

/// What kind of channel opened.
pub(in crate::gateway) enum Opened {
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
pub(in crate::gateway) enum Start<'a> {
    Shell,
    Exec(&'a [u8]),
    Subsystem(&'a str),
}

/// One channel's part of the recording: what its relay and the handler report.
pub(in crate::gateway) struct ChannelRec {
    recording: Arc<Recording>,
    number: u32,
    opened: Instant,
    opened_unix: u64,
    mode: Mutex<Mode>,
}

impl ChannelRec {
    /// A new channel's part of `recording`, numbered in opening order from 0.
    pub(super) fn new(recording: &Arc<Recording>, mode: Opened) -> Arc<ChannelRec> {
        let mode = match mode {
            Opened::Session => Mode::Session { pty: None },
            Opened::Forward { destination } => Mode::Forward {
                destination: clip(destination),
                bytes_in: 0,
                bytes_out: 0,
            },
        };
        Arc::new(ChannelRec {
            recording: recording.clone(),
            number: recording.next_channel.fetch_add(1, Ordering::Relaxed),
            opened: Instant::now(),
            opened_unix: recording.shared.clock.unix_secs(),
            mode: Mutex::new(mode),
        })
    }

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
    pub(in crate::gateway) fn is_forward(&self) -> bool {
        matches!(*self.mode(), Mode::Forward { .. })
    }

    /// A pty-req: its size and `TERM`, for the header.
    pub(in crate::gateway) fn pty_requested(&self, width: u32, height: u32, term: &str) {
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
    pub(in crate::gateway) async fn started(&self, start: Start<'_>) -> bool {
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
    pub(in crate::gateway) async fn resized(&self, width: u32, height: u32) {
        if matches!(*self.mode(), Mode::Pty { .. }) {
            let (width, height) = size(width, height);
            let event = Event::Resized { width, height };
            self.send(vec![event]).await;
        }
    }

    /// Bytes the user sent on the channel.
    pub(in crate::gateway) async fn user_sent(&self, data: &[u8]) {
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
    pub(in crate::gateway) async fn target_sent(&self, data: &[u8], extended: bool) {
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
    pub(in crate::gateway) fn forwarded(&self, bytes_out: u64, bytes_in: u64) {
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
    pub(in crate::gateway) async fn exited(&self, status: u32) {
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
    pub(in crate::gateway) async fn closed(&self) {
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
    pub(in crate::gateway) async fn closing(&self) -> String {
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
