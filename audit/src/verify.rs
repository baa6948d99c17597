//! Verifying the audit chain, sans I/O: feed events in store order to [`Verifier::push`]
//! (or, with the store's index columns, [`Verifier::push_stored`]), then call
//! [`Verifier::finish`]. The first problem stops the walk and names the event.
//! `portcullis audit verify` drives it over the API export or an exported file.

use std::fmt;

use serde_json::Value;

use crate::chain::{self, IndexColumns, KeyRing, GENESIS};

/// A chain position: an event's sequence and hash (`SEQ:HASH` on the command line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub sequence: u64,
    pub hash: String,
}

impl std::str::FromStr for Head {
    type Err = String;

    fn from_str(text: &str) -> Result<Head, String> {
        let (seq, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not SEQ:HASH"))?;
        let sequence = seq
            .parse()
            .map_err(|_| format!("{seq:?} is not a sequence number"))?;
        let hash = hash.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hash:?} is not a hex SHA-256 hash"));
        }
        Ok(Head { sequence, hash })
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.sequence, self.hash)
    }
}

/// The first line of an export (`portcullis audit export --format jsonl`): what a verifier
/// needs besides the events, namely the audit public keys and the head the store recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub version: u32,
    pub exported_at: String,
    pub head: Option<Head>,
    pub keys: Vec<crate::chain::PublicKeyInfo>,
}

/// [`ExportHeader::format`].
pub const EXPORT_FORMAT: &str = "portcullis-audit-export";

/// What is wrong at the first bad event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not a JSON object with the chain fields.
    Malformed(String),
    /// The event at this position carries another sequence number: events were deleted,
    /// inserted or reordered here.
    OutOfSequence { found: u64 },
    /// `prev_hash` is not the hash of the event before: the chain is broken here.
    BrokenLink,
    /// The content does not match the event's hash: the event was edited.
    Edited,
    /// A column stored beside the body for `audit list`'s filters says something else than
    /// the signed body: the index was edited, which steers what the filters return.
    IndexEdited { column: &'static str },
    /// Signed by a key the verifier does not hold.
    UnknownKey(String),
    /// The hash is right but the signature is not: forged or inserted.
    BadSignature,
    /// An event without a hash after the chain began.
    Unsealed,
    /// The event at the expected head has another hash.
    HeadMismatch { expected: String },
    /// The chain ends before the expected head: the newest events were cut off.
    Truncated { last: Option<u64>, expected: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed(what) => write!(f, "malformed event: {what}"),
            Problem::OutOfSequence { found } => write!(
                f,
                "found event {found} in its place: events were deleted, inserted or reordered"
            ),
            Problem::BrokenLink => f.write_str(
                "prev_hash is not the hash of the event before it: the chain is broken (an event before it was removed or replaced)",
            ),
            Problem::Edited => f.write_str("its content does not match its hash: it was edited"),
            Problem::IndexEdited { column } => write!(
                f,
                "its stored column `{column}` does not match its signed body: the index `audit list` filters on was edited"
            ),
            Problem::UnknownKey(id) => write!(
                f,
                "signed by key {id}, which is not among the audit public keys"
            ),
            Problem::BadSignature => {
                f.write_str("its signature does not verify: it was forged or inserted")
            }
            Problem::Unsealed => {
                f.write_str("it has no hash although the chain began before it (inserted)")
            }
            Problem::HeadMismatch { expected } => write!(
                f,
                "its hash is not the expected head hash {expected}: the chain was rewritten"
            ),
            Problem::Truncated { last, expected } => match last {
                Some(last) => write!(
                    f,
                    "missing: the chain ends at {last} but must reach {expected}; the newest events were cut off"
                ),
                None => write!(
                    f,
                    "missing: the chain is empty but must reach {expected}; events were cut off"
                ),
            },
        }
    }
}

/// The first bad event: its position in the chain, its id if it has one, and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub sequence: u64,
    pub id: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}", self.sequence)?;
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// The result of a clean walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Chained events checked.
    pub events: u64,
    /// Events from before the chain began (schema 1, no hash); they cannot be verified.
    pub unchained: u64,
    /// The last event checked.
    pub head: Option<Head>,
}

/// The chain members of one event, as [`Verifier::push`] reads them.
struct Sealed<'a> {
    sequence: u64,
    /// `sequence + 1`: no chain reaches the largest sequence, so it must exist.
    following: u64,
    hash: &'a str,
    prev_hash: &'a str,
    key_id: &'a str,
    signature: &'a str,
}

impl<'a> Sealed<'a> {
    fn of(map: &'a serde_json::Map<String, Value>) -> Result<Sealed<'a>, Problem> {
        let field = |name: &str| {
            map.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::Malformed(format!("no `{name}`")))
        };
        let sequence = map
            .get("sequence")
            .and_then(Value::as_u64)
            .ok_or_else(|| Problem::Malformed("no `sequence`".into()))?;
        let following = sequence
            .checked_add(1)
            .ok_or_else(|| Problem::Malformed("`sequence` is out of range".into()))?;
        Ok(Sealed {
            sequence,
            following,
            hash: field("hash")?,
            prev_hash: field("prev_hash")?,
            key_id: field("key_id")?,
            signature: field("signature")?,
        })
    }
}

pub struct Verifier {
    keys: KeyRing,
    expect: Option<Head>,
    next: Option<u64>,
    prev_hash: String,
    events: u64,
    unchained: u64,
    last: Option<Head>,
    redelivery: bool,
}

impl Verifier {
    pub fn new(keys: KeyRing, expect: Option<Head>) -> Verifier {
        Verifier {
            keys,
            expect,
            next: None,
            prev_hash: GENESIS.into(),
            events: 0,
            unchained: 0,
            last: None,
            redelivery: false,
        }
    }

    /// Resumes a walk that an earlier one verified up to `from` (the controller's stored
    /// watermark): the next event must be `from.sequence + 1` and link to `from.hash`. What
    /// lies before `from` is taken on trust; only a walk from the start re-checks it.
    pub fn resume(keys: KeyRing, from: Head) -> Verifier {
        let mut verifier = Verifier::new(keys, None);
        verifier.next = from.sequence.checked_add(1);
        verifier.prev_hash = from.hash.clone();
        verifier.last = Some(from);
        verifier
    }

    /// For a sink's copy, where delivery is at least once: an event with a sequence already
    /// passed is skipped as a duplicate if its own hash and signature are valid.
    pub fn allow_redelivery(mut self) -> Verifier {
        self.redelivery = true;
        self
    }

    /// The last event verified so far.
    pub fn last(&self) -> Option<&Head> {
        self.last.as_ref()
    }

    /// The next event in store order.
    pub fn push(&mut self, event: &Value) -> Result<(), Failure> {
        let position = self.next.unwrap_or(0);
        let id = event.get("id").and_then(Value::as_str).map(str::to_owned);
        let fail = |sequence: u64, problem: Problem| Failure {
            sequence,
            id: id.clone(),
            problem,
        };
        let map = event
            .as_object()
            .ok_or_else(|| fail(position, Problem::Malformed("not a JSON object".into())))?;
        if !map.contains_key("hash") {
            if self.next.is_none() {
                self.unchained += 1;
                return Ok(());
            }
            return Err(fail(position, Problem::Unsealed));
        }
        let Sealed {
            sequence,
            following,
            hash,
            prev_hash,
            key_id,
            signature,
        } = Sealed::of(map).map_err(|problem| fail(position, problem))?;
        let expected = self.next.unwrap_or(sequence);
        // The canonical form depends on the event's schema; one this version cannot
        // reproduce (or an event that breaks it) is malformed, not edited.
        let computed =
            chain::event_hash(map).map_err(|e| fail(sequence, Problem::Malformed(e.to_string())));
        if self.redelivery
            && sequence < expected
            && computed.as_deref().is_ok_and(|c| c == hash)
            && self.keys.verify_event(key_id, hash, signature)
        {
            return Ok(());
        }
        if sequence != expected {
            return Err(fail(expected, Problem::OutOfSequence { found: sequence }));
        }
        if prev_hash != self.prev_hash {
            return Err(fail(sequence, Problem::BrokenLink));
        }
        if computed? != hash {
            return Err(fail(sequence, Problem::Edited));
        }
        if !self.keys.contains(key_id) {
            return Err(fail(sequence, Problem::UnknownKey(key_id.to_owned())));
        }
        if !self.keys.verify_event(key_id, hash, signature) {
            return Err(fail(sequence, Problem::BadSignature));
        }
        if let Some(expect) = &self.expect {
            if expect.sequence == sequence && expect.hash != hash {
                return Err(fail(
                    sequence,
                    Problem::HeadMismatch {
                        expected: expect.hash.clone(),
                    },
                ));
            }
        }
        self.prev_hash = hash.to_owned();
        self.next = Some(following);
        self.events += 1;
        self.last = Some(Head {
            sequence,
            hash: hash.to_owned(),
        });
        Ok(())
    }

    /// The next event in store order with the columns the store keeps beside it: the event
    /// is checked as by [`Verifier::push`], then every column against its signed body.
    pub fn push_stored(&mut self, event: &Value, stored: &IndexColumns) -> Result<(), Failure> {
        self.push(event)?;
        let Some(map) = event.as_object().filter(|m| m.contains_key("hash")) else {
            // Events from before the chain: nothing signed to compare with.
            return Ok(());
        };
        let id = map.get("id").and_then(Value::as_str).map(str::to_owned);
        let fail = |sequence: u64, problem: Problem| Failure {
            sequence,
            id: id.clone(),
            problem,
        };
        let expected =
            IndexColumns::of(map).map_err(|e| fail(stored.seq, Problem::Malformed(e)))?;
        match stored.first_difference(&expected) {
            Some(column) => Err(fail(expected.seq, Problem::IndexEdited { column })),
            None => Ok(()),
        }
    }

    /// Ends the walk. `store_head` is the head the store itself records, when known (the
    /// export header): the chain must reach it, as it must reach `--expect-head`.
    pub fn finish(self, store_head: Option<&Head>) -> Result<Summary, Failure> {
        let last = self.last.as_ref().map(|h| h.sequence);
        let reach = |head: &Head| -> Result<(), Failure> {
            match &self.last {
                Some(l) if l.sequence > head.sequence => Ok(()),
                Some(l) if l.sequence == head.sequence && l.hash == head.hash => Ok(()),
                Some(l) if l.sequence == head.sequence => Err(Failure {
                    sequence: l.sequence,
                    id: None,
                    problem: Problem::HeadMismatch {
                        expected: head.hash.clone(),
                    },
                }),
                // A head with the genesis hash: no event has been chained yet.
                None if head.hash == GENESIS => Ok(()),
                _ => Err(Failure {
                    sequence: last.map_or(head.sequence, |l| l + 1),
                    id: None,
                    problem: Problem::Truncated {
                        last,
                        expected: head.sequence,
                    },
                }),
            }
        };
        if let Some(expect) = &self.expect {
            reach(expect)?;
        }
        if let Some(head) = store_head {
            reach(head)?;
        }
        Ok(Summary {
            events: self.events,
            unchained: self.unchained,
            head: self.last,
        })
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
