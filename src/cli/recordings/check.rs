//! Checking a recording's stored chunks against the heads the audit log sealed: the chain
//! (proto's [`verify`]) and, for every seal, that the chunk it names hashes to the head it
//! sealed. Pure: `recordings verify` feeds it a bundle, `audit verify` the chunks the API
//! serves, `sessions play` and `export` what they are about to show.
//!
//! A recording is **complete** when its chain holds, ends with its final chunk, and a seal
//! covers every chunk; **incomplete** when the chain holds but the final chunk never came
//! (a live session, a killed worker) or the newest chunks are not sealed yet; **broken**
//! when a chunk does not decode, does not chain, cannot be read, or differs from what a
//! seal says. Chunks after the newest seal chain but nothing signed proves them: whoever can
//! write the store could have appended them, so they never make a recording complete.

use portcullis_proto::recording::{verify, StoredChunk, Verdict};
use serde::Serialize;

use super::seal::Seal;

/// The state of a recording after [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Complete,
    Incomplete,
    Broken,
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ChainReport {
    pub(crate) state: State,
    /// Chunks stored.
    pub(crate) chunks: u64,
    /// Chunks `0..verified_up_to` chain (and match every seal among them).
    pub(crate) verified_up_to: u64,
    /// Hex SHA-256 of chunk `verified_up_to - 1` (empty when none).
    pub(crate) head_hash: String,
    /// The number of chunks the newest matching seal covers (0: none sealed).
    pub(crate) sealed_up_to: u64,
    /// The first chunk that is altered, missing or unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broken_at: Option<u64>,
    /// Why the recording is incomplete or broken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) why: Option<String>,
}

impl ChainReport {
    /// One line for people: `complete and sealed (12 chunks)`, `incomplete: verified up to
    /// chunk 4 (...)`, `BROKEN at chunk 3: ...`.
    pub(crate) fn summary(&self) -> String {
        let why = self.why.as_deref().unwrap_or("");
        match self.state {
            State::Complete => format!("complete and sealed ({} chunks)", self.chunks),
            State::Incomplete if self.verified_up_to == 0 => format!("incomplete: {why}"),
            State::Incomplete => format!(
                "incomplete: verified up to chunk {} ({why})",
                self.verified_up_to - 1
            ),
            State::Broken => match self.broken_at {
                Some(at) => format!("BROKEN at chunk {at}: {why}"),
                None => format!("BROKEN: {why}"),
            },
        }
    }
}

/// Checks `chunks` (in seq order, as stored) against `seals` (those of this recording).
pub(crate) fn check(chunks: &[StoredChunk], seals: &[&Seal]) -> ChainReport {
    // Chunks up to the first unreadable one go to the chain check.
    let readable: Vec<&[u8]> = chunks.iter().map_while(|c| c.data.as_deref()).collect();
    let unreadable = chunks.get(readable.len()).map(|c| {
        let why = c
            .unreadable
            .as_deref()
            .unwrap_or("the store served no data");
        (
            readable.len() as u64,
            format!("chunk {} cannot be read: {why}", c.seq),
        )
    });
    let mut broken = None;
    let (chain_end, chain_why) = match verify(readable.iter().copied()) {
        Verdict::Complete { chunks, .. } => (chunks, None),
        Verdict::Incomplete {
            verified_up_to,
            why,
            ..
        } => (verified_up_to, Some(why)),
        Verdict::Broken { at_seq, why } => {
            broken = Some((at_seq, why));
            (at_seq, None)
        }
    };
    if broken.is_none() {
        broken = unreadable;
    }
    let complete = broken.is_none() && chain_why.is_none();
    let hashes: Vec<String> = readable[..chain_end as usize]
        .iter()
        .map(|bytes| hex::encode(portcullis_crypto::digest::sha256(bytes)))
        .collect();
    let mut valid = chain_end;
    let mut sealed_up_to = 0;
    for seal in seals {
        let problem = seal_problem(seal, &hashes, complete, broken.is_some());
        if let Some((at, why)) = problem {
            if broken.as_ref().is_none_or(|(b, _)| at < *b) {
                broken = Some((at, why));
            }
            valid = valid.min(at);
        } else {
            sealed_up_to = sealed_up_to.max(seal.chunks);
        }
    }
    let head_hash = match valid {
        0 => String::new(),
        n => hashes[n as usize - 1].clone(),
    };
    let stored = chunks.len() as u64;
    let (state, why, broken_at) = match broken {
        Some((at, why)) => (State::Broken, Some(why), Some(at)),
        None if complete && sealed_up_to == stored => (State::Complete, None, None),
        None => (
            State::Incomplete,
            Some(match chain_why {
                Some(why) => why,
                None if sealed_up_to == 0 => {
                    "no audit event seals the final chunk, nor any other: nothing signed \
                     proves these chunks"
                        .into()
                }
                None => format!(
                    "no audit event seals the final chunk: chunks after chunk {} are not \
                     proven by a signed event",
                    sealed_up_to - 1
                ),
            }),
            None,
        ),
    };
    ChainReport {
        state,
        chunks: stored,
        verified_up_to: valid,
        head_hash,
        sealed_up_to: sealed_up_to.min(valid),
        broken_at,
        why,
    }
}

/// Where and why `seal` disagrees with the chain whose chunk hashes are `hashes`, if it does.
fn seal_problem(
    seal: &Seal,
    hashes: &[String],
    chain_complete: bool,
    chain_broken: bool,
) -> Option<(u64, String)> {
    let event = seal.audit_sequence;
    let held = hashes.len() as u64;
    if seal.chunks == 0 {
        return None;
    }
    if seal.chunks > held {
        let why = if chain_broken {
            format!(
                "audit event {event} sealed {} chunks, past the break",
                seal.chunks
            )
        } else {
            format!(
                "audit event {event} sealed {} chunks but only {held} chain: chunks were \
                 removed or never stored",
                seal.chunks
            )
        };
        return Some((held, why));
    }
    let at = seal.chunks - 1;
    if hashes[at as usize] != seal.head_hash {
        return Some((
            at,
            format!(
                "chunk {at} is not the head audit event {event} sealed: it was altered or \
                 replaced"
            ),
        ));
    }
    if seal.complete && !(chain_complete && seal.chunks == held) {
        return Some((
            at,
            format!(
                "audit event {event} sealed chunk {at} as the final chunk, but the stored \
                 chain does not end there"
            ),
        ));
    }
    None
}
