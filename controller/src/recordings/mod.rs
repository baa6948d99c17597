//! Session recordings on the controller's side (docs/recordings.md): chunks a worker sends
//! on the link are checked against the stored chain and stored, encrypted, in the recordings
//! store (`store::recordings`, apart from the hot path); their heads are sealed into the audit
//! chain as they advance; reviewers read them through the API; the retention alone deletes
//! them.
//!
//! - `crypt`: chunks sealed under the keyset's `recording` keys, bound to their place.
//! - `ingest`: `Request::RecordingChunks`, the pure check of one chunk against the stored
//!   head (`check`) and the store around it.
//! - `seal`: which head is due for sealing (`due`, pure) and the audited seal, on ingest, at
//!   a session's end and as the sweeper's backstop.
//! - `read`: the list, the chunk pages and the bundle the API serves, each read audited.
//! - `playback`: a pty channel as an asciicast v2 file, and the chunks a live follower
//!   reads next, checked link by link (the console's player and live view).
//! - `retention`: the sweeper that deletes whole recordings of ended sessions by age and
//!   total size, each deletion audited.
//!
//! Invariant: nothing else deletes a recording, and a chunk that does not open is reported as
//! unreadable, never served altered.

pub(crate) mod crypt;
pub(crate) mod ingest;
pub(crate) mod playback;
pub(crate) mod read;
pub(crate) mod retention;
pub(crate) mod seal;

#[cfg(test)]
mod tests;
