//! A connection to the worker made ahead of need, so that the next local connection of a
//! burst (Terraform, Ansible and scripts open them back to back) skips TCP and TLS set-up.
//!
//! After each local connection the listener dials one spare: TCP and TLS only, no hello, so
//! the worker has admitted nothing and the target has seen nothing. The worker waits 5 s for
//! a hello; a spare unused for [`MAX_AGE`] is dropped and not replaced, so an idle session
//! holds nothing open.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::tunnel::{SessionTicket, WorkerStream};

/// How long a spare is kept: well within the worker's 5 s wait for the hello.
pub(super) const MAX_AGE: Duration = Duration::from_secs(3);

/// The dial of a spare: resolves to the TLS stream (or the dial's error).
pub(super) type Dialling = JoinHandle<anyhow::Result<WorkerStream>>;

/// A TLS stream to the worker being made, or made, in its own task.
pub(super) struct Spare {
    making: Option<Dialling>,
    started: Instant,
}

impl Spare {
    /// Starts dialling a spare for `ticket`'s worker.
    pub(super) fn start(ticket: Arc<SessionTicket>) -> Self {
        Self {
            making: Some(tokio::spawn(async move { ticket.dial().await })),
            started: Instant::now(),
        }
    }

    /// When the spare is too old to use.
    pub(super) fn expires(&self) -> Instant {
        self.started + MAX_AGE
    }

    /// The spare for a new local connection: its dial, finished or still under way (in a
    /// burst, waiting for it beats starting another), unless it is finished and too old for
    /// the worker to still wait for a hello.
    pub(super) fn claim(mut self) -> Option<Dialling> {
        let making = self.making.take()?;
        if making.is_finished() && self.started.elapsed() >= MAX_AGE {
            return None;
        }
        Some(making)
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // An unclaimed dial is abandoned; a finished one's stream is closed with the task.
        if let Some(making) = &self.making {
            making.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spare_is_claimed_while_dialling_but_not_when_finished_and_old() {
        let under_way = Spare {
            making: Some(tokio::spawn(std::future::pending())),
            started: Instant::now().checked_sub(MAX_AGE * 2).unwrap(),
        };
        let claimed = under_way.claim().expect("a dial under way is handed over");
        assert!(!claimed.is_finished());
        claimed.abort();

        let started = Instant::now().checked_sub(MAX_AGE).unwrap();
        let old = Spare {
            making: Some(tokio::spawn(async {
                Err(anyhow::anyhow!("never looked at"))
            })),
            started,
        };
        assert_eq!(old.expires(), started + MAX_AGE);
        while !old.making.as_ref().unwrap().is_finished() {
            tokio::task::yield_now().await;
        }
        assert!(
            old.claim().is_none(),
            "a finished spare past its age is dropped"
        );

        let fresh = Spare {
            making: Some(tokio::spawn(async { Err(anyhow::anyhow!("refused")) })),
            started: Instant::now(),
        };
        let failed = fresh.claim().expect("a fresh spare is handed over");
        assert!(
            failed.await.unwrap().is_err(),
            "its error reaches the caller"
        );
    }

    #[tokio::test]
    async fn an_unclaimed_spare_is_abandoned() {
        let spare = Spare {
            making: Some(tokio::spawn(std::future::pending())),
            started: Instant::now(),
        };
        let handle = spare.making.as_ref().unwrap().abort_handle();
        drop(spare);
        tokio::task::yield_now().await;
        assert!(handle.is_finished(), "dropping the spare stops its dial");
    }
}
