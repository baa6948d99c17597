//! Group commit for audited actions. Every audited transaction must hold the chain's head
//! (one locked row) from its first event to its commit, so on PostgreSQL, where a commit
//! waits for the WAL flush, transactions that each take the head would commit one flush at a
//! time. The [`Writer`] runs the actions queued meanwhile in one transaction instead: one
//! head lock, one commit for all. If any action of a batch fails, the batch is rolled back and
//! each of its actions runs again in a transaction of its own, so a failing action fails
//! alone with its own error (actions are therefore `Fn`: they may run twice, and only one run
//! ever commits). An action's reply is sent only after its commit, so "the event is written"
//! still means "the action happened", and the other way round.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::AuditedTx;
use crate::keys::Keyset;
use crate::store::{Store, StoreError};

/// At most this many actions share one transaction.
const MAX_BATCH: usize = 64;

/// Batches in flight at once: their actions' own writes overlap; only the last step of each
/// (numbering and writing the events under the head lock, and the commit) takes turns.
const WRITERS: usize = 4;

/// The future of one action: its writes and events in the batch's transaction.
pub(crate) type ActionFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

type Erased = Box<dyn Any + Send>;
type Action = Box<dyn for<'c> Fn(&'c mut AuditedTx) -> ActionFuture<'c, Erased> + Send + Sync>;

struct Queued {
    action: Action,
    reply: oneshot::Sender<Result<Erased, StoreError>>,
}

/// The handle actions are submitted through; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts the writer task of this controller.
    pub(crate) fn spawn(store: Store, keys: Keyset) -> Writer {
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for n in 0..WRITERS {
            tokio::spawn(
                run(store.clone(), keys.clone(), rx.clone())
                    .instrument(tracing::info_span!("audit_writer", n)),
            );
        }
        Writer { queue }
    }

    /// How many actions wait for a batch.
    pub(crate) fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Runs `action` inside a shared transaction and returns its result once that
    /// transaction committed. `action` writes its rows and records its events in the
    /// transaction it is given.
    pub(crate) async fn run<T, F>(&self, action: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut AuditedTx) -> ActionFuture<'c, T> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let action: Action = Box::new(move |tx| {
            let fut = action(tx);
            Box::pin(async move { fut.await.map(|v| Box::new(v) as Erased) })
        });
        self.queue
            .send(Queued { action, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the audit writer has stopped".into()))?;
        let value = answer.await.map_err(|_| {
            StoreError::Unavailable("the audit writer stopped before committing".into())
        })??;
        value
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| StoreError::Corrupt("the audit writer returned another type".into()))
    }
}

async fn run(
    store: Store,
    keys: Keyset,
    rx: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
) {
    loop {
        // Take what is queued (at least one action), then let the next writer take more.
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        commit_batch(&store, &keys, batch).await;
    }
}

async fn commit_batch(store: &Store, keys: &Keyset, batch: Vec<Queued>) {
    let (actions, replies): (Vec<Action>, Vec<_>) =
        batch.into_iter().map(|q| (q.action, q.reply)).unzip();
    let started = std::time::Instant::now();
    let outcomes = if actions.len() == 1 {
        vec![commit(store, keys, &actions[0]).await]
    } else {
        match commit_all(store, keys, &actions).await {
            Ok(values) => values.into_iter().map(Ok).collect(),
            Err(err) => {
                tracing::debug!(error = %err, actions = actions.len(), "batch rolled back; running its actions one by one");
                let mut outcomes = Vec::with_capacity(actions.len());
                for action in &actions {
                    outcomes.push(commit(store, keys, action).await);
                }
                outcomes
            }
        }
    };
    tracing::debug!(
        actions = actions.len(),
        elapsed_us = started.elapsed().as_micros(),
        "audited batch committed"
    );
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
    }
}

/// All actions in one transaction; the first failure rolls all of them back.
async fn commit_all(
    store: &Store,
    keys: &Keyset,
    actions: &[Action],
) -> Result<Vec<Erased>, StoreError> {
    let mut tx = AuditedTx::begin(store, keys).await?;
    let mut values = Vec::with_capacity(actions.len());
    for action in actions {
        values.push(action(&mut tx).await?);
    }
    tx.commit_recorded().await?;
    Ok(values)
}

/// One action in its own transaction.
async fn commit(store: &Store, keys: &Keyset, action: &Action) -> Result<Erased, StoreError> {
    let mut tx = AuditedTx::begin(store, keys).await?;
    let value = action(&mut tx).await?;
    tx.commit_recorded().await?;
    Ok(value)
}
