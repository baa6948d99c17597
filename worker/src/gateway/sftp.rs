//! What an sftp channel does, read from the SFTP packets that pass through the gateway
//! (version 3, draft-ietf-secsh-filexfer-02: what OpenSSH's sftp-server speaks, and what scp
//! uses since OpenSSH 9): the operations a recording lists (open, read, write, rename,
//! remove, mkdir, rmdir, setstat) with their paths, modes and byte counts. Pure: the channel
//! relay feeds it the bytes each way, in whatever pieces they come, and records the events
//! it returns; it never errors, so a hostile client cannot stop its channel's relay through
//! it.
//!
//! # What is recorded, and when
//! An operation is recorded when the server says it was done, never when it is only asked
//! for: `open` when the server grants a handle (with the permissions the client asked for,
//! if any); `rename` (and `posix-rename@openssh.com`), `remove`, `mkdir`, `rmdir`,
//! `setstat`, `fsetstat` (and `lsetstat@openssh.com`) when it answers `SSH_FX_OK`. A file's
//! bytes are counted per handle (`read`: the payloads of the server's `DATA` replies;
//! `write`: the writes the server acknowledged) and recorded as one `read` and one `write`
//! event, those that moved bytes, when the server answers the handle's `close`, or by
//! [`SftpTracker::finish`] for handles never closed. Failed requests (permission denied,
//! no such file...) are not recorded: an [`Event::Sftp`] has no status, and an operation
//! that did not happen must not read as one that did. Listing directories, stat, readlink,
//! symlink and the other extensions are not recorded either.
//!
//! Replies are matched to requests first in, first out per request id, as sftp-server
//! answers every request it knows (in order) and none it does not, so a client that reuses
//! ids cannot make the tracker pair a failure with a success.
//!
//! # Bounds
//! A packet's length field above the 256 KiB sftp-server accepts, a packet whose fields are
//! cut short (sftp-server ends the session on both), more than [`MAX_PENDING`] requests
//! awaiting an answer, more than [`MAX_FILES`] open files, more than [`MAX_HELD`] bytes of
//! paths held for them, or a server that speaks another version than 3: the tracker gives
//! up. It drops what it held, returns nothing more, and says why in
//! [`SftpTracker::gave_up`], so that the relay can treat the channel as one whose recording
//! failed. The payloads of writes and reads are passed over, never buffered: the tracker
//! holds at most one packet head per direction (at most 256 KiB) and [`MAX_HELD`] bytes of
//! paths. Paths are bytes: they are decoded lossily, and those longer than [`MAX_PATH`]
//! bytes (which no Linux server accepts) are cut, ending in `…`.

// Until the channel relay feeds it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};

use portcullis_proto::recording::{Event, SftpOp};

use self::packet::{fxp, Reader, Reply, Request, MAX_PACKET, STATUS_OK};

mod packet;

#[cfg(test)]
mod tests;

/// Requests awaiting an answer; OpenSSH's clients keep at most 64 (`sftp -R`).
pub(super) const MAX_PENDING: usize = 1024;
/// Files open at once.
pub(super) const MAX_FILES: usize = 1024;
/// Bytes of paths held for pending requests and open files.
pub(super) const MAX_HELD: usize = 1024 * 1024;
/// The longest path recorded whole (Linux's `PATH_MAX`, its terminating NUL included).
pub(super) const MAX_PATH: usize = 4096;

/// The only SFTP version the tracker reads.
const VERSION: u32 = 3;

/// Follows one sftp channel's packets both ways.
#[derive(Debug)]
pub(super) struct SftpTracker {
    state: State,
}

/// Why a tracker stopped following its channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum GaveUp {
    #[error("the sftp {from} sent a packet of {len} bytes, outside the 1 to {MAX_PACKET} sftp-server accepts")]
    BadLength { from: Side, len: u32 },
    #[error("the sftp {from} sent a packet of type {kind} whose fields are cut short")]
    Truncated { from: Side, kind: u8 },
    #[error("more than {MAX_PENDING} sftp requests awaited an answer at once")]
    TooManyPending,
    #[error("more than {MAX_FILES} files were open at once over sftp")]
    TooManyFiles,
    #[error("the paths of pending sftp requests and open files took more than {MAX_HELD} bytes")]
    TooMuchHeld,
    #[error("the sftp server speaks version {0}; only version 3 is followed")]
    Version(u32),
}

/// Which end of the channel sent a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

#[derive(Debug)]
enum State {
    Tracking(Box<Session>),
    GaveUp(GaveUp),
    Finished,
}

/// What a tracker knows of its channel.
#[derive(Debug)]
struct Session {
    from_client: Reader,
    from_server: Reader,
    /// Requests in the order sent, with their ids.
    pending: VecDeque<(u32, Pending)>,
    /// Open files by the order their handles were granted.
    files: BTreeMap<u64, OpenFile>,
    /// Each granted handle's file.
    handles: HashMap<Vec<u8>, u64>,
    granted: u64,
    /// Bytes of paths in `pending` and `files`.
    held: usize,
}

/// A request awaiting its answer, with what recording it needs.
#[derive(Debug)]
enum Pending {
    Open {
        path: Path,
        mode: Option<u32>,
    },
    Read {
        file: u64,
    },
    Write {
        file: u64,
        len: u64,
    },
    Close {
        file: u64,
    },
    Path(PathOp),
    Fsetstat {
        file: u64,
        mode: Option<u32>,
    },
    /// Answered, not recorded.
    Other,
}

#[derive(Debug)]
struct PathOp {
    op: SftpOp,
    path: Path,
    to: Option<Path>,
    mode: Option<u32>,
}

#[derive(Debug)]
struct OpenFile {
    handle: Vec<u8>,
    path: Path,
    read: u64,
    written: u64,
}

/// A path as sent, cut at [`MAX_PATH`] bytes.
#[derive(Debug, Clone)]
struct Path {
    bytes: Vec<u8>,
    cut: bool,
}

impl Path {
    fn new(raw: &[u8]) -> Path {
        Path {
            bytes: raw[..raw.len().min(MAX_PATH)].to_vec(),
            cut: raw.len() > MAX_PATH,
        }
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.cut {
            text.push('…');
        }
        text
    }
}

impl Pending {
    fn held(&self) -> usize {
        match self {
            Pending::Open { path, .. } => path.bytes.len(),
            Pending::Path(op) => {
                op.path.bytes.len() + op.to.as_ref().map_or(0, |to| to.bytes.len())
            }
            _ => 0,
        }
    }
}

impl Default for SftpTracker {
    fn default() -> SftpTracker {
        SftpTracker::new()
    }
}

impl SftpTracker {
    pub(super) fn new() -> SftpTracker {
        SftpTracker {
            state: State::Tracking(Box::new(Session {
                from_client: Reader::new(fxp::WRITE),
                from_server: Reader::new(fxp::DATA),
                pending: VecDeque::new(),
                files: BTreeMap::new(),
                handles: HashMap::new(),
                granted: 0,
                held: 0,
            })),
        }
    }

    /// Bytes the user's client sent to the target's sftp-server; returns the operations
    /// that are complete enough to record (none: operations complete with their answer).
    pub(super) fn from_client(&mut self, data: &[u8]) -> Vec<Event> {
        self.feed(Side::Client, data)
    }

    /// Bytes the target's sftp-server sent back.
    pub(super) fn from_server(&mut self, data: &[u8]) -> Vec<Event> {
        self.feed(Side::Server, data)
    }

    /// The channel closed: the files still open, read or written, with the bytes they
    /// moved. The tracker returns nothing after this.
    pub(super) fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if let State::Tracking(session) = &mut self.state {
            for file in std::mem::take(&mut session.files).into_values() {
                file.totals(&mut events);
            }
            self.state = State::Finished;
        }
        events
    }

    /// Why the tracker stopped following the channel before it finished, if it did.
    pub(super) fn gave_up(&self) -> Option<&GaveUp> {
        match &self.state {
            State::GaveUp(why) => Some(why),
            _ => None,
        }
    }

    fn feed(&mut self, side: Side, data: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let State::Tracking(session) = &mut self.state else {
            return events;
        };
        if let Err(why) = session.feed(side, data, &mut events) {
            // The operations completed before are kept; the files still open are dropped
            // with the rest, as their totals would be wrong.
            self.state = State::GaveUp(why);
        }
        events
    }
}

impl Session {
    fn feed(&mut self, side: Side, mut data: &[u8], events: &mut Vec<Event>) -> Result<(), GaveUp> {
        loop {
            let reader = match side {
                Side::Client => &mut self.from_client,
                Side::Server => &mut self.from_server,
            };
            let packet = match reader.next(&mut data) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(bad) => {
                    return Err(GaveUp::BadLength {
                        from: side,
                        len: bad.0,
                    })
                }
            };
            let kind = packet.kind;
            let truncated = |_| GaveUp::Truncated { from: side, kind };
            // The packet borrows its reader: what it says is copied out before the
            // session changes.
            match side {
                Side::Client => {
                    let request = packet::request(&packet).map_err(truncated)?;
                    if let Some((id, pending)) = pending_for(&self.handles, request) {
                        self.push(id, pending)?;
                    }
                }
                Side::Server => {
                    let reply = match packet::reply(&packet).map_err(truncated)? {
                        Reply::Version { version } if version != VERSION => {
                            return Err(GaveUp::Version(version))
                        }
                        Reply::Handle { id, handle } => Answer::Handle {
                            id,
                            handle: handle.to_vec(),
                        },
                        Reply::Status { id, code } => Answer::Status { id, code },
                        Reply::Data { id, len } => Answer::Data { id, len },
                        Reply::Other { id } => Answer::Other { id },
                        Reply::Version { .. } | Reply::Unknown => continue,
                    };
                    self.answer(reply, events)?;
                }
            }
        }
    }
}

/// What a request leaves to await its answer: `None` for those sftp-server does not answer.
fn pending_for(handles: &HashMap<Vec<u8>, u64>, request: Request<'_>) -> Option<(u32, Pending)> {
    let file = |handle: &[u8]| handles.get(handle).copied();
    Some(match request {
        Request::Init | Request::Unknown => return None,
        Request::Open { id, path, mode } => (
            id,
            Pending::Open {
                path: Path::new(path),
                mode,
            },
        ),
        // A handle the server never granted (a directory's, or made up) reads, writes
        // and closes nothing recorded.
        Request::Read { id, handle } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Read { file }),
        ),
        Request::Write { id, handle, len } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Write { file, len }),
        ),
        Request::Close { id, handle } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Close { file }),
        ),
        Request::Fsetstat { id, handle, mode } => (
            id,
            file(handle).map_or(Pending::Other, |file| Pending::Fsetstat { file, mode }),
        ),
        Request::Path {
            id,
            op,
            path,
            to,
            mode,
        } => (
            id,
            Pending::Path(PathOp {
                op,
                path: Path::new(path),
                to: to.map(Path::new),
                mode,
            }),
        ),
        Request::Other { id } => (id, Pending::Other),
    })
}

impl Session {
    fn push(&mut self, id: u32, pending: Pending) -> Result<(), GaveUp> {
        if self.pending.len() >= MAX_PENDING {
            return Err(GaveUp::TooManyPending);
        }
        self.hold(pending.held())?;
        self.pending.push_back((id, pending));
        Ok(())
    }

    fn hold(&mut self, bytes: usize) -> Result<(), GaveUp> {
        self.held += bytes;
        if self.held > MAX_HELD {
            return Err(GaveUp::TooMuchHeld);
        }
        Ok(())
    }

    /// The oldest request with this id, no longer pending.
    fn take(&mut self, id: u32) -> Option<Pending> {
        let at = self
            .pending
            .iter()
            .position(|(pending, _)| *pending == id)?;
        let (_, pending) = self.pending.remove(at)?;
        self.held -= pending.held();
        Some(pending)
    }

    fn answer(&mut self, answer: Answer, events: &mut Vec<Event>) -> Result<(), GaveUp> {
        let Some(pending) = self.take(answer.id()) else {
            return Ok(());
        };
        match (pending, answer) {
            (Pending::Open { path, mode }, Answer::Handle { handle, .. }) => {
                self.open(handle, path.clone())?;
                events.push(sftp(SftpOp::Open, &path, None, mode, 0));
            }
            (Pending::Read { file }, Answer::Data { len, .. }) => {
                if let Some(file) = self.files.get_mut(&file) {
                    file.read += len;
                }
            }
            (
                Pending::Write { file, len },
                Answer::Status {
                    code: STATUS_OK, ..
                },
            ) => {
                if let Some(file) = self.files.get_mut(&file) {
                    file.written += len;
                }
            }
            // sftp-server forgets the handle whatever the status: so does the tracker.
            (Pending::Close { file }, Answer::Status { .. }) => self.close(file, events),
            (
                Pending::Path(op),
                Answer::Status {
                    code: STATUS_OK, ..
                },
            ) => {
                events.push(sftp(op.op, &op.path, op.to.as_ref(), op.mode, 0));
            }
            (
                Pending::Fsetstat { file, mode },
                Answer::Status {
                    code: STATUS_OK, ..
                },
            ) => {
                if let Some(file) = self.files.get(&file) {
                    events.push(sftp(SftpOp::Setstat, &file.path, None, mode, 0));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn open(&mut self, handle: Vec<u8>, path: Path) -> Result<(), GaveUp> {
        // A server that grants a handle again without its close answered: the old file is
        // gone for it.
        if let Some(old) = self.handles.remove(&handle) {
            if let Some(old) = self.files.remove(&old) {
                self.held -= old.path.bytes.len();
            }
        }
        if self.files.len() >= MAX_FILES {
            return Err(GaveUp::TooManyFiles);
        }
        self.hold(path.bytes.len())?;
        self.granted += 1;
        self.handles.insert(handle.clone(), self.granted);
        self.files.insert(
            self.granted,
            OpenFile {
                handle,
                path,
                read: 0,
                written: 0,
            },
        );
        Ok(())
    }

    fn close(&mut self, file: u64, events: &mut Vec<Event>) {
        if let Some(file) = self.files.remove(&file) {
            self.handles.remove(&file.handle);
            self.held -= file.path.bytes.len();
            file.totals(events);
        }
    }
}

/// A server's reply, copied out of its packet.
#[derive(Debug)]
enum Answer {
    Status { id: u32, code: u32 },
    Handle { id: u32, handle: Vec<u8> },
    Data { id: u32, len: u64 },
    Other { id: u32 },
}

impl Answer {
    fn id(&self) -> u32 {
        match self {
            Answer::Status { id, .. }
            | Answer::Handle { id, .. }
            | Answer::Data { id, .. }
            | Answer::Other { id } => *id,
        }
    }
}

impl OpenFile {
    /// The file's `read` and `write` events, those that moved bytes.
    fn totals(&self, events: &mut Vec<Event>) {
        for (op, bytes) in [(SftpOp::Read, self.read), (SftpOp::Write, self.written)] {
            if bytes > 0 {
                events.push(sftp(op, &self.path, None, None, bytes));
            }
        }
    }
}

fn sftp(op: SftpOp, path: &Path, to: Option<&Path>, mode: Option<u32>, bytes: u64) -> Event {
    Event::Sftp {
        op,
        path: path.text(),
        to: to.map(Path::text),
        mode,
        bytes,
    }
}

/// The fuzz target `sftp_tracker` (see `fuzz/README.md`): `data` is a sequence of records,
/// each a byte (its low bit the direction, the rest the record's length) and that many bytes
/// of channel data, fed to one tracker; no input may panic it. Fed again one byte at a time,
/// the same input must give the same events, and events end when the tracker gives up.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_streams(data: &[u8]) {
    let whole = fuzz_run(data, usize::MAX);
    let bytewise = fuzz_run(data, 1);
    assert_eq!(
        whole, bytewise,
        "the events depend on how the bytes were split"
    );
}

#[cfg(any(test, fuzzing))]
fn fuzz_run(mut data: &[u8], piece: usize) -> Vec<Event> {
    let mut tracker = SftpTracker::new();
    let mut events = Vec::new();
    while let Some((&head, rest)) = data.split_first() {
        let len = usize::from(head >> 1).min(rest.len());
        let (record, rest) = rest.split_at(len);
        data = rest;
        for piece in record.chunks(piece) {
            let gave_up = tracker.gave_up().is_some();
            let new = if head & 1 == 0 {
                tracker.from_client(piece)
            } else {
                tracker.from_server(piece)
            };
            assert!(!gave_up || new.is_empty(), "events after giving up");
            events.extend(new);
        }
    }
    events.extend(tracker.finish());
    assert!(tracker.finish().is_empty(), "events after finish");
    for event in &events {
        if let Event::Sftp { path, to, .. } = event {
            for path in std::iter::once(path).chain(to) {
                assert!(path.len() <= 3 * MAX_PATH + 3, "a path longer than the cap");
            }
        }
    }
    events
}
