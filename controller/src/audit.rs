//! The audit hook: every state change commits with its events through one
//! [`AuditedTx`](tx::AuditedTx), inside the transaction of the change, so the event and the
//! change commit or fail together (fail closed: no event, no action).
//!
//! Invariant: no secret is ever put into an event. Events carry identifiers (session, token
//! and key ids, fingerprints), never tokens, keys or certificates; the event type
//! ([`portcullis_audit::Event`]) has no field that could hold one.
//!
//! The log is a hash chain (docs/audit.md): at the commit, [`Chain::advance`] takes the next
//! sequence number under the locked `audit_head` row, links each event to its predecessor's
//! hash and signs it with the audit key. The pure parts (the event type, hashing, signing,
//! verifying) are the `portcullis-audit` crate; here are the store side, the group commit
//! ([`batch`]), the shippers to external sinks ([`sink`], [`syslog`]) and the summed
//! unauthenticated failures ([`denials`]).

pub(crate) mod batch;
pub(crate) mod config;
pub(crate) mod denials;
pub(crate) mod sink;
pub(crate) mod syslog;
pub(crate) mod tx;
pub(crate) mod watermark;

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use sqlx::AnyConnection;

pub(crate) use portcullis_audit::event::{self, Actor, AuditEvent, Event};
pub(crate) use portcullis_audit::{chain, verify, Signer};
pub(crate) use tx::signer;
pub(crate) use tx::AuditedTx;

use crate::clock::SharedClock;
use crate::ids::{new_id, IdKind};
use crate::store::audit as rows;
use crate::store::StoreError;

/// Events of one transaction on their way into the chain. [`Chain::append`] only queues;
/// [`Chain::advance`], the transaction's last step before its commit, takes the head row's
/// lock, numbers, links and signs the queued events, and writes them with the new head. The
/// lock is thus held only from that step to the commit, and a [`batch`] of many actions
/// takes it once.
#[derive(Clone)]
pub(crate) struct Chain {
    /// `None` only while the keyset creates the audit key itself (see `Keyset::ensure`).
    signer: Option<Arc<Signer>>,
    pending: Vec<(AuditEvent, SystemTime)>,
    /// The events' times.
    clock: SharedClock,
}

impl Chain {
    pub(crate) fn new(signer: Option<Arc<Signer>>, clock: SharedClock) -> Chain {
        Chain {
            signer,
            pending: Vec::new(),
            clock,
        }
    }

    /// The key that signs the events at [`Chain::advance`].
    pub(crate) fn sign_with(&mut self, signer: Arc<Signer>) {
        self.signer = Some(signer);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues `event`; its time is now.
    pub(crate) fn append(&mut self, event: AuditEvent) {
        self.pending.push((event, self.clock.now()));
    }

    /// Locks the head, seals the queued events in order and writes them and the new head, in
    /// the caller's transaction (which should commit right after).
    pub(crate) async fn advance(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(signer) = &self.signer else {
            return Err(StoreError::Unavailable(
                "audit events were recorded before the audit key exists".into(),
            ));
        };
        let mut head = rows::lock_head(conn).await?;
        let mut sealed = Vec::with_capacity(self.pending.len());
        for (event, at) in &self.pending {
            let sequence = head.sequence + 1;
            let id = new_id(IdKind::Event);
            let time = humantime::format_rfc3339_millis(*at).to_string();
            let mut body = event.body(&id, sequence, &time, &head.hash);
            let hash = signer.seal(&mut body).map_err(|e| {
                StoreError::Corrupt(format!("an audit event cannot be sealed: {e}"))
            })?;
            // The columns come from the sealed body, as the verifier derives them again.
            let columns = chain::IndexColumns::of(&body).map_err(|e| {
                StoreError::Corrupt(format!("an audit event cannot be indexed: {e}"))
            })?;
            sealed.push(rows::NewEvent {
                columns,
                body: Value::Object(body).to_string(),
            });
            head = rows::HeadRow { sequence, hash };
        }
        rows::insert_many(conn, &sealed).await?;
        rows::advance_head(conn, head.sequence, &head.hash).await?;
        self.pending.clear();
        Ok(())
    }
}
