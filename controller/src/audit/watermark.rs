//! The console's incremental check of the audit chain (docs/console.md): each check walks
//! only the events after the stored watermark (`store::audit_verified`), at most
//! [`BATCH`] of them, with the same verifier as `portcullis audit verify`
//! ([`Verifier::resume`]), and moves the watermark to the last good event. A failure is
//! reported each time and the watermark never passes it. An event edited before the
//! watermark is not seen again until [`reset`] ("verify from the start").
//!
//! A convenience: the keys it checks against come from the store it checks, so an attacker
//! who controls the store can fool it. The trust anchor is offline `portcullis audit verify
//! --public-key` with keys pinned elsewhere.

use super::chain::KeyRing;
use super::event::AuditVerificationReset;
use super::verify::{Failure, Head, Verifier};
use super::{Actor, AuditEvent, Event};
use crate::api::audit::parse_body;
use crate::clock;
use crate::keys::KeyError;
use crate::state::AppState;
use crate::store::audit as rows;
use crate::store::audit_verified::{self as marks, Watermark};

/// Events one check verifies at most (bounded work per request).
pub(crate) const BATCH: u64 = 10_000;

/// Events read from the store at once.
const PAGE: u32 = 1000;

/// Where the chain stands after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Every event up to the store's head verified (`None`: no chained event yet), as of
    /// `verified_at` (unix seconds: this check).
    Verified {
        up_to: Option<Head>,
        verified_at: i64,
    },
    /// Verified up to `up_to`; `left` events wait for the next check.
    Partial { up_to: Option<Head>, left: u64 },
    /// The first bad event after `up_to` (the watermark, which stays before it).
    Broken {
        up_to: Option<Head>,
        failure: Failure,
    },
}

/// Verifies at most `batch` events after the watermark and moves it forward.
pub(crate) async fn check(state: &AppState, batch: u64) -> Result<Status, KeyError> {
    let keys = KeyRing::new(&state.keys.audit_public_keys().await?);
    // The connection is held only to read (on SQLite the store has one): not while
    // verifying.
    let (head, start) = {
        let mut conn = state.store.conn().await?;
        // The head first: the events read afterwards reach at least as far.
        (rows::head(&mut conn).await?, marks::get(&mut conn).await?)
    };
    let mut verifier = match &start {
        // A watermark inside the events from before the chain (no hash to link to): the
        // walk goes on as from the start, past the ones already walked.
        Some(mark) if mark.hash.is_empty() => Verifier::new(keys, None),
        Some(mark) => Verifier::resume(
            keys,
            Head {
                sequence: mark.sequence,
                hash: mark.hash.clone(),
            },
        ),
        None => Verifier::new(keys, None),
    };
    let mut after = start.as_ref().map_or(0, |m| m.sequence);
    let mut read = 0u64;
    let mut failure = None;
    let mut at_end = false;
    'walk: while read < batch {
        let want = u32::try_from((batch - read).min(u64::from(PAGE))).unwrap_or(PAGE);
        let events = {
            let mut conn = state.store.conn().await?;
            rows::after_stored(&mut conn, after, want).await?
        };
        for event in &events {
            let body = parse_body(event.columns.seq, &event.body);
            if let Err(bad) = verifier.push_stored(&body, &event.columns) {
                failure = Some(bad);
                break 'walk;
            }
            after = event.columns.seq;
        }
        read += events.len() as u64;
        if events.len() < want as usize {
            at_end = true;
            break;
        }
    }
    let last = verifier.last().cloned();
    let now = clock::to_i64(state.clock.unix_secs());
    // The last chained event verified; or, while the walk is still in the events from
    // before the chain, how far it got (an empty hash), so that the next check does not
    // walk them again.
    let reached = match &last {
        Some(l) => Some((l.sequence, l.hash.clone())),
        None if after > 0 => Some((after, String::new())),
        None => None,
    };
    let moved =
        reached.filter(|(sequence, _)| start.as_ref().is_none_or(|s| s.sequence < *sequence));
    if let Some((sequence, hash)) = moved {
        let mark = Watermark {
            sequence,
            hash,
            verified_at: now,
        };
        let mut conn = state.store.conn().await?;
        marks::advance(&mut conn, &mark).await?;
    }
    if let Some(failure) = failure {
        return Ok(Status::Broken {
            up_to: last,
            failure,
        });
    }
    let reached = after;
    if !at_end && reached < head.sequence {
        return Ok(Status::Partial {
            up_to: last,
            left: head.sequence - reached,
        });
    }
    let store_head = crate::audit::verify::Head {
        sequence: head.sequence,
        hash: head.hash,
    };
    match verifier.finish(Some(&store_head)) {
        Ok(_) => Ok(Status::Verified {
            up_to: last,
            verified_at: now,
        }),
        Err(failure) => Ok(Status::Broken {
            up_to: last,
            failure,
        }),
    }
}

/// Forgets the watermark: the next [`check`] starts at the first event. Committed with its
/// `audit_verification_reset` event by `actor`.
pub(crate) async fn reset(state: &AppState, actor: Actor) -> Result<(), KeyError> {
    let mut tx = state.begin_audited().await?;
    let before = marks::get(tx.read()).await?;
    marks::reset(tx.write()).await?;
    let event = Event::AuditVerificationReset {
        details: AuditVerificationReset {
            verified_up_to: before.map(|m| m.sequence),
        },
    };
    tx.commit(AuditEvent::new(actor, event)).await?;
    Ok(())
}
