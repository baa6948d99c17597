//! The live links to controllers, as the worker's other tasks see them: a request goes out
//! on the newest link, or an older one when the newest is closing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use portcullis_proto::link::{LinkError, Request, Response};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::protocol::Reply;

/// A request handed to a link's task, where its answer goes, and how long it may take (the
/// link's peer fails it with [`LinkError::TimedOut`] after that).
pub(super) struct Outgoing {
    pub(super) body: Request,
    pub(super) reply: Reply,
    pub(super) timeout: Duration,
}

/// The live links to controllers, and requests sent on them: on the newest link, or an
/// older one when the newest is closing; fails fast when none is up.
///
/// Several controllers may hold links at once (each dials an outbound-only worker). A link
/// is registered only after its controller authenticated and answered the hello; only a newer
/// link from the same controller replaces it (the older one is told to close), and a link that
/// ends removes itself and nothing else. A task that found no link can wait for one to
/// register ([`LinkClient::wait_for_link`]).
#[derive(Default)]
pub struct LinkClient {
    links: Mutex<Vec<LiveLink>>,
    next_id: AtomicU64,
    /// How many links have registered so far; changes at every registration.
    registered: watch::Sender<u64>,
    /// When the last on-demand sync started ([`super::keys`]); held while one is in flight.
    pub(super) key_sync: tokio::sync::Mutex<Option<std::time::Instant>>,
}

struct LiveLink {
    id: u64,
    controller: String,
    sender: mpsc::Sender<Outgoing>,
    replaced: CancellationToken,
}

/// A link's place in the [`LinkClient`]; dropping it removes the link.
pub struct Registration<'a> {
    client: &'a LinkClient,
    id: u64,
    /// Fires when a newer link from the same controller took this one's place.
    pub replaced: CancellationToken,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.client.with(|links| links.retain(|l| l.id != self.id));
    }
}

impl LinkClient {
    /// How many controllers are linked now.
    pub fn linked(&self) -> usize {
        self.with(|links| links.len())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<LiveLink>) -> T) -> T {
        let mut guard = match self.links.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    /// Sends a request to a controller and waits up to `timeout` for its answer.
    pub async fn request(&self, body: Request, timeout: Duration) -> Result<Response, LinkError> {
        let senders: Vec<_> =
            self.with(|links| links.iter().rev().map(|l| l.sender.clone()).collect());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut body = Some(body);
        for sender in senders {
            let (reply, answer) = oneshot::channel();
            let Some(next) = body.take() else { break };
            let outgoing = Outgoing {
                body: next,
                reply,
                timeout,
            };
            match sender.send(outgoing).await {
                // The link's peer answers by the deadline (or fails the request); waiting
                // no longer than that also covers a link stuck writing.
                Ok(()) => {
                    return tokio::time::timeout_at(deadline, answer)
                        .await
                        .map_err(|_| LinkError::TimedOut { after: timeout })?
                        .map_err(|_| LinkError::Closed)?;
                }
                // That link is closing: try the next one.
                Err(mpsc::error::SendError(outgoing)) => body = Some(outgoing.body),
            }
        }
        Err(LinkError::NoLink)
    }

    /// How many links have registered so far (a counter, for telling whether one came up).
    pub(super) fn registrations(&self) -> u64 {
        *self.registered.borrow()
    }

    /// Waits until a link is up to send a request on, or `deadline` passes; true if one is.
    /// A request that failed because its link closed finds that link gone (a link leaves
    /// before it fails its requests), so this waits for another one.
    pub async fn wait_for_link(&self, deadline: tokio::time::Instant) -> bool {
        // Subscribed before looking: a link that registers after the look is not missed.
        let mut registrations = self.registered.subscribe();
        loop {
            if self.with(|links| !links.is_empty()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, registrations.changed()).await {
                Ok(Ok(())) => continue,
                // The deadline passed (the sender lives as long as `self`).
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// Registers an authenticated link to `controller`, replacing an older link to the same
    /// controller.
    pub(super) fn register(
        &self,
        controller: &str,
        sender: mpsc::Sender<Outgoing>,
    ) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        self.with(|links| {
            links.retain(|l| {
                let same = l.controller == controller;
                if same {
                    l.replaced.cancel();
                }
                !same
            });
            links.push(LiveLink {
                id,
                controller: controller.to_owned(),
                sender,
                replaced: replaced.clone(),
            });
        });
        self.registered.send_modify(|n| *n += 1);
        Registration {
            client: self,
            id,
            replaced,
        }
    }
}

#[cfg(test)]
impl LinkClient {
    /// A link whose controller answers every request with `answer` (for other modules'
    /// tests); it goes away with the registration.
    pub(crate) fn fake_link(
        &self,
        answer: impl Fn(Request) -> Response + Send + 'static,
    ) -> Registration<'_> {
        let (tx, mut rx) = mpsc::channel::<Outgoing>(16);
        tokio::spawn(async move {
            while let Some(outgoing) = rx.recv().await {
                let _ = outgoing.reply.send(Ok(answer(outgoing.body)));
            }
        });
        self.register("fake", tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_fails_with_what_became_of_it() {
        let client = LinkClient::default();
        let ask = || client.request(Request::Ping, Duration::from_millis(50));
        assert!(matches!(ask().await, Err(LinkError::NoLink)));

        // A link whose task goes away with the request: closed, at once.
        let (tx, mut rx) = mpsc::channel(1);
        let registration = client.register("c1", tx);
        let (answer, ()) = tokio::join!(ask(), async {
            drop(rx.recv().await);
        });
        assert!(matches!(answer, Err(LinkError::Closed)), "{answer:?}");

        // A link that never answers: timed out after the time asked for, not longer.
        let (answer, _kept) = tokio::join!(ask(), rx.recv());
        match answer {
            Err(LinkError::TimedOut { after }) => assert_eq!(after, Duration::from_millis(50)),
            other => panic!("unexpected {other:?}"),
        }

        // A link that answers.
        let (answer, ()) = tokio::join!(ask(), async {
            if let Some(outgoing) = rx.recv().await {
                let _ = outgoing.reply.send(Ok(Response::Ok));
            }
        });
        assert!(matches!(answer, Ok(Response::Ok)), "{answer:?}");

        // The link removed: none left.
        drop(registration);
        assert!(matches!(ask().await, Err(LinkError::NoLink)));
    }

    #[tokio::test]
    async fn a_wait_for_a_link_ends_when_one_registers_or_at_the_deadline() {
        let client = LinkClient::default();
        let after = |ms| tokio::time::Instant::now() + Duration::from_millis(ms);
        // None comes: false, at the deadline.
        let before = tokio::time::Instant::now();
        assert!(!client.wait_for_link(after(100)).await);
        assert!(before.elapsed() >= Duration::from_millis(100));

        // One registers while waiting: true, long before the deadline.
        let (tx, _rx) = mpsc::channel(1);
        let before = tokio::time::Instant::now();
        let (up, registration) = tokio::join!(client.wait_for_link(after(60_000)), async {
            tokio::task::yield_now().await;
            client.register("c1", tx)
        });
        assert!(up);
        assert!(before.elapsed() < Duration::from_secs(30));
        assert_eq!(client.registrations(), 1);

        // One is up already: true at once.
        assert!(client.wait_for_link(tokio::time::Instant::now()).await);
        drop(registration);
        assert!(!client.wait_for_link(tokio::time::Instant::now()).await);
    }
}
