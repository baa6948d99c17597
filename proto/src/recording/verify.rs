//! The offline check of a recording's chain, shared by the CLI (`recordings verify`), the
//! controller and the tests.
//!
//! Chunks are checked in the order given (seq order): each must decode, belong to the same
//! recording, carry the next seq and the hash of the chunk before it. The first that does not
//! makes the recording [`Verdict::Broken`] at the earliest chunk that may have been altered;
//! everything before it stands. A chain that holds but has no final chunk is
//! [`Verdict::Incomplete`] (a worker killed mid-session); a final chunk whose totals disagree
//! with what came before is broken. A change to the last chunk itself changes the head hash,
//! which the caller compares with the head sealed into the audit chain.

use super::chunk::{hash, Chunk, ChunkHash, RecordingEnd, RecordingId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every chunk chains, the last is final and its totals match.
    Complete { chunks: u64, head_hash: ChunkHash },
    /// Chunks `0..verified_up_to` chain, but no final chunk came.
    Incomplete {
        verified_up_to: u64,
        head_hash: ChunkHash,
        why: String,
    },
    /// Chunk `at_seq` (or, for a hash mismatch, the one after it) was altered, dropped or
    /// reordered; chunks `0..at_seq` stand.
    Broken { at_seq: u64, why: String },
}

/// Verifies a recording from its chunks' canonical bytes, in seq order.
pub fn verify<B: AsRef<[u8]>>(chunks: impl IntoIterator<Item = B>) -> Verdict {
    let mut next_seq = 0u64;
    let mut head = ChunkHash::GENESIS;
    let mut id: Option<RecordingId> = None;
    let mut totals = RecordingEnd::default();
    let mut ended = false;
    for bytes in chunks {
        let bytes = bytes.as_ref();
        let broken = |at_seq, why: String| Verdict::Broken { at_seq, why };
        if ended {
            return broken(
                next_seq,
                format!("chunk {next_seq} follows the final chunk"),
            );
        }
        let chunk = match Chunk::decode(bytes) {
            Ok(chunk) => chunk,
            Err(e) => return broken(next_seq, format!("chunk {next_seq} does not decode: {e}")),
        };
        let h = &chunk.header;
        if h.seq != next_seq {
            return broken(
                next_seq,
                format!(
                    "expected chunk {next_seq}, found chunk {}: chunks are missing or out of order",
                    h.seq
                ),
            );
        }
        if id.get_or_insert_with(|| h.recording_id.clone()) != &h.recording_id {
            return broken(
                next_seq,
                format!("chunk {next_seq} belongs to recording {}", h.recording_id),
            );
        }
        if h.prev_hash != head {
            // Either the previous chunk's bytes or this chunk's record of them changed.
            let at_seq = next_seq.saturating_sub(1);
            return broken(
                at_seq,
                format!(
                    "chunk {next_seq} does not chain to chunk {at_seq}: one of them was altered"
                ),
            );
        }
        totals.bytes += chunk.body.len() as u64;
        totals.events += chunk.body.lines().count() as u64;
        if let Some(end) = h.end {
            if end != totals {
                return broken(
                    next_seq,
                    format!(
                        "the final chunk counts {} bytes and {} events, the chunks hold {} and {}",
                        end.bytes, end.events, totals.bytes, totals.events
                    ),
                );
            }
            ended = true;
        }
        head = hash(bytes);
        next_seq += 1;
    }
    if ended {
        Verdict::Complete {
            chunks: next_seq,
            head_hash: head,
        }
    } else {
        Verdict::Incomplete {
            verified_up_to: next_seq,
            head_hash: head,
            why: if next_seq == 0 {
                "the recording has no chunks".into()
            } else {
                format!(
                    "no final chunk after chunk {}: the recording was cut short",
                    next_seq - 1
                )
            },
        }
    }
}
