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
//! up. It returns the operations the packets before completed, then nothing more, drops
//! what it held (the open files' counts with it), and says why in
//! [`SftpTracker::gave_up`], so that the relay can treat the channel as one whose recording
//! failed. The payloads of writes and reads are passed over, never buffered: the tracker
//! holds at most one packet head per direction (at most 256 KiB) and [`MAX_HELD`] bytes of
//! paths. Paths are bytes: they are decoded lossily, and those longer than [`MAX_PATH`]
//! bytes (which no Linux server accepts) are cut, ending in `…`.

// Until the channel relay feeds it.

use portcullis_proto::recording::Event;

#[cfg(any(test, fuzzing))]
pub(crate) use self::fuzz::fuzz_streams;
use self::packet::MAX_PACKET;
use self::session::Session;

#[cfg(any(test, fuzzing))]
mod fuzz;
mod packet;
mod session;

#[cfg(test)]
mod tests;

/// Requests awaiting an answer; OpenSSH's clients keep at most 64 (`sftp -R`).
const MAX_PENDING: usize = 1024;
/// Files open at once.
const MAX_FILES: usize = 1024;
/// Bytes of paths held for pending requests and open files.
const MAX_HELD: usize = 1024 * 1024;
/// The longest path recorded whole (Linux's `PATH_MAX`, its terminating NUL included).
const MAX_PATH: usize = 4096;

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
    #[error("more than {MAX_PENDING} sftp requests awaited an answer at once (OpenSSH's sftp sends 64 at most unless `-R` raises it)")]
    TooManyPending,
    #[error("more than {MAX_FILES} files were open at once over sftp")]
    TooManyFiles,
    #[error("the paths of pending sftp requests and open files took more than {MAX_HELD} bytes")]
    TooMuchHeld,
    #[error("the sftp server speaks version {0}; only version {VERSION} is followed", VERSION = session::VERSION)]
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

impl Default for SftpTracker {
    fn default() -> SftpTracker {
        SftpTracker::new()
    }
}

impl SftpTracker {
    pub(super) fn new() -> SftpTracker {
        SftpTracker {
            state: State::Tracking(Box::new(Session::new())),
        }
    }

    /// Bytes the user's client sent to the target's sftp-server; returns the operations
    /// that are complete enough to record (none: operations complete with their answer).
    #[allow(clippy::wrong_self_convention)] // `from_client` names where the bytes came from.
    pub(super) fn from_client(&mut self, data: &[u8]) -> Vec<Event> {
        self.feed(Side::Client, data)
    }

    /// Bytes the target's sftp-server sent back.
    #[allow(clippy::wrong_self_convention)] // `from_server` names where the bytes came from.
    pub(super) fn from_server(&mut self, data: &[u8]) -> Vec<Event> {
        self.feed(Side::Server, data)
    }

    /// The channel closed: the files still open, read or written, with the bytes they
    /// moved. The tracker returns nothing after this.
    pub(super) fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if let State::Tracking(session) = &mut self.state {
            session.finish(&mut events);
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
