//! Session recordings as the worker writes them and reviewers verify them (issue 18).
//!
//! A recording is a chain of chunks. Each chunk carries the SHA-256 of the previous chunk's
//! canonical bytes, so that changing, dropping or reordering a stored chunk breaks the chain
//! where it happened, and the last chunk is marked final with the recording's totals, so that
//! a recording cut short (a killed worker) verifies as "incomplete up to chunk N" rather than
//! as complete. The head hash the controller seals into the audit chain pins the last chunk.
//!
//! Nothing here does I/O: the worker feeds events to a [`Recorder`] and spools the chunks it
//! returns; the controller stores them; the CLI runs [`verify()`] and [`cast`] over them.
//! - [`chunk`]: the chunk header and its canonical binary encoding, capped at
//!   [`MAX_CHUNK_LEN`].
//! - [`events`]: what a session does, as lines of a chunk body, and the [`Recorder`] that
//!   cuts them into chained chunks.
//! - [`asciicast`]: a pty channel's chunks as an asciicast v2 `.cast` file.
//! - [`verify`](mod@verify): the offline check of a chain.
//! - `summary`: a recording's channels as a reviewer lists them ([`summarize`]).
//! - `wire`: chunks on the cluster link, the failure a worker reports, and the API's and
//!   an exported bundle's bodies.

mod asciicast;
mod chunk;
mod events;
mod summary;
mod verify;
mod wire;

pub use asciicast::{cast, CastError};
pub use chunk::{
    Chunk, ChunkError, ChunkHash, ChunkHeader, ChunkKind, RecordingEnd, RecordingId, MAX_CHUNK_LEN,
};
pub use events::{CastHeader, Encoded, Event, RecordError, Recorder, SftpOp};
pub use summary::summarize;
pub use verify::{verify, Verdict};
pub use wire::{
    Bundle, ChannelKind, ChannelSummary, ChunkAck, ChunkOutcome, ChunkPage, FailureAction,
    RecordingFailure, RecordingInfo, RecordingList, RecordingState, SealedHead, SpooledChunk,
    StoredChunk, BUNDLE_FORMAT,
};

#[cfg(test)]
mod tests;
