//! The one way the controller changes state: an [`AuditedTx`], a store transaction whose
//! commit carries its audit events.
//!
//! Store functions that change state take a [`Write`], and only an `AuditedTx` hands one out
//! ([`AuditedTx::write`]); its commit either takes the final event ([`AuditedTx::commit`])
//! or commits only if events were recorded ([`AuditedTx::commit_recorded`]: a transaction
//! that recorded none is rolled back, whatever it wrote). So a change without its event does
//! not compile or does not commit, and the event and the change commit or fail together. `store/writes_tests.rs` holds the store to this: every function
//! there that writes takes a `Write`, except the few bookkeeping rows it names.

use std::sync::Arc;

use sqlx::{Any, AnyConnection, Transaction};

use super::{AuditEvent, Chain, Signer};
use crate::clock::SharedClock;
use crate::keys::{KeyError, Keyset};
use crate::store::{Store, StoreError, Write};

/// A transaction whose changes commit only with their audit events.
pub(crate) struct AuditedTx {
    tx: Transaction<'static, Any>,
    chain: Chain,
}

impl AuditedTx {
    /// Fetches the audit signing key, then begins the transaction (on SQLite the transaction
    /// holds the only connection, and the keyset may need to read the store first). A key
    /// that cannot be used fails the action: no event, no action.
    pub(crate) async fn begin(store: &Store, keys: &Keyset) -> Result<AuditedTx, StoreError> {
        let signer = signer(keys).await?;
        let tx = store.begin_write().await?;
        Ok(AuditedTx {
            tx,
            chain: Chain::new(Some(signer), keys.clock().clone()),
        })
    }

    /// A transaction for the keyset's first start, which creates the audit key itself: its
    /// events are signed by the key it creates ([`AuditedTx::sign_with`] before the commit).
    pub(crate) async fn begin_before_audit_key(
        store: &Store,
        clock: SharedClock,
    ) -> Result<AuditedTx, StoreError> {
        Ok(AuditedTx {
            tx: store.begin_write().await?,
            chain: Chain::new(None, clock),
        })
    }

    /// The key that signs this transaction's events (see [`AuditedTx::begin_before_audit_key`]).
    pub(crate) fn sign_with(&mut self, signer: Arc<Signer>) {
        self.chain.sign_with(signer);
    }

    /// The connection, for reads (and the advisory locks of `Store::lock`).
    pub(crate) fn read(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The connection, for a store function that changes state.
    pub(crate) fn write(&mut self) -> Write<'_> {
        Write::audited(&mut self.tx)
    }

    /// Queues an event; it is sealed into the chain at the commit.
    pub(crate) fn record(&mut self, event: AuditEvent) {
        self.chain.append(event);
    }

    /// Records `event`, the last of the transaction, seals the queued events into the chain
    /// and commits.
    pub(crate) async fn commit(mut self, event: AuditEvent) -> Result<(), StoreError> {
        self.chain.append(event);
        self.seal_and_commit().await
    }

    /// Commits the events recorded so far with the changes. A transaction that recorded no
    /// event is rolled back instead, whatever it wrote (a conditional update that matched
    /// nothing, say): nothing commits without an event. Returns whether it committed.
    pub(crate) async fn commit_recorded(self) -> Result<bool, StoreError> {
        if self.chain.is_empty() {
            self.tx.rollback().await?;
            return Ok(false);
        }
        self.seal_and_commit().await?;
        Ok(true)
    }

    async fn seal_and_commit(mut self) -> Result<(), StoreError> {
        self.chain.advance(&mut self.tx).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// The audit signing key (see [`AuditedTx::begin`]).
pub(crate) async fn signer(keys: &Keyset) -> Result<Arc<Signer>, StoreError> {
    keys.audit_signer().await.map_err(|e| match e {
        KeyError::Store(e) => e,
        other => StoreError::Unavailable(format!("the audit signing key is unusable: {other}")),
    })
}
