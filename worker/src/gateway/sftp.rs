//! What an sftp channel does, read from the SFTP packets that pass through the gateway
//! (draft v3, what OpenSSH's sftp-server speaks, and what scp uses since OpenSSH 9): the
//! operations a recording lists (open, read, write, rename, remove, mkdir, rmdir, setstat)
//! with their paths, modes and byte counts. Pure: the channel relay feeds it the bytes each
//! way and records the events it returns; bytes that are not SFTP are ignored, never an
//! error, so a hostile client cannot stop its channel's relay through it.
//!
//! Skeleton: the contract the recording relay calls; the parser lands with its tests.

#![allow(dead_code)]

use portcullis_proto::recording::Event;

/// Follows one sftp channel's packets both ways.
#[derive(Debug, Default)]
pub(super) struct SftpTracker {}

impl SftpTracker {
    pub(super) fn new() -> SftpTracker {
        SftpTracker::default()
    }

    /// Bytes the user's client sent to the target's sftp-server; returns the operations
    /// that are complete enough to record.
    pub(super) fn from_client(&mut self, _data: &[u8]) -> Vec<Event> {
        Vec::new()
    }

    /// Bytes the target's sftp-server sent back.
    pub(super) fn from_server(&mut self, _data: &[u8]) -> Vec<Event> {
        Vec::new()
    }

    /// The channel closed: the operations still open (files read or written but not
    /// closed) with the bytes they moved.
    pub(super) fn finish(&mut self) -> Vec<Event> {
        Vec::new()
    }
}
