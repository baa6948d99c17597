//! The workers linked to this controller, and a handle to send each of them requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_proto::link::{LinkError, Request, Response};
use tokio::sync::{mpsc, oneshot};

/// Where the answer to a request this controller sent goes.
pub(crate) type Reply = oneshot::Sender<Result<Response, LinkError>>;

/// A request this controller sends to a worker, where to deliver the answer, and how long it
/// may take (the link's peer fails it with [`LinkError::TimedOut`] after that).
pub(crate) struct Outgoing {
    pub body: Request,
    pub reply: Reply,
    pub timeout: Duration,
}

/// A handle on one worker's live link.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    pub(crate) tx: mpsc::Sender<Outgoing>,
    pub(crate) generation: u64,
    pub(crate) closed: tokio_util::sync::CancellationToken,
    /// The worker's public key (DER SPKI) as its link certificate presented it.
    pub(crate) spki: Arc<[u8]>,
}

impl LinkHandle {
    /// Sends a request to the worker and waits up to `timeout` for its answer; an error
    /// answer is [`LinkError::Refused`].
    pub(crate) async fn request(
        &self,
        body: Request,
        timeout: Duration,
    ) -> Result<Response, LinkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Outgoing {
                body,
                reply,
                timeout,
            })
            .await
            .map_err(|_| LinkError::Closed)?;
        // The link's peer answers by the deadline (or fails the request); waiting no longer
        // than that also covers a link stuck writing.
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(Ok(Response::Error { message, .. }))) => Err(LinkError::Refused { message }),
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::TimedOut { after: timeout }),
        }
    }
}

/// Worker id → its link on this controller.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<HashMap<String, LinkHandle>>>,
    next_generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Registry {
    /// How many workers are linked.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map_or(0, |links| links.len())
    }

    pub(crate) fn get(&self, worker_id: &str) -> Option<LinkHandle> {
        self.inner.lock().ok()?.get(worker_id).cloned()
    }

    /// Registers a new link for a worker, closing any older one.
    pub(crate) fn insert(
        &self,
        worker_id: &str,
        tx: mpsc::Sender<Outgoing>,
        spki: &[u8],
    ) -> LinkHandle {
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handle = LinkHandle {
            tx,
            generation,
            closed: tokio_util::sync::CancellationToken::new(),
            spki: Arc::from(spki),
        };
        if let Ok(mut map) = self.inner.lock() {
            if let Some(old) = map.insert(worker_id.to_owned(), handle.clone()) {
                old.closed.cancel();
            }
        }
        handle
    }

    /// Forgets a link, if it is still the registered one.
    pub(crate) fn remove(&self, worker_id: &str, generation: u64) {
        if let Ok(mut map) = self.inner.lock() {
            if map
                .get(worker_id)
                .is_some_and(|h| h.generation == generation)
            {
                map.remove(worker_id);
            }
        }
    }

    /// Drops a worker's link (it was deleted).
    pub(crate) fn disconnect(&self, worker_id: &str) {
        if let Ok(mut map) = self.inner.lock() {
            if let Some(handle) = map.remove(worker_id) {
                handle.closed.cancel();
            }
        }
    }

    /// The public key a linked worker presented.
    pub(crate) fn spki(&self, worker_id: &str) -> Option<Vec<u8>> {
        self.get(worker_id).map(|h| h.spki.to_vec())
    }
}
