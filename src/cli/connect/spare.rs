//! A connection to the worker made ahead of need, so that the next local connection of a
//! burst (Terraform, Ansible and scripts open them back to back) skips TCP and TLS set-up.
//!
//! After each local connection the listener dials one spare: TCP and TLS only, no hello, so
//! the worker has admitted nothing and the target has seen nothing. The worker waits 5 s for
//! a hello; a spare unused for [`MAX_AGE`] is dropped and not replaced, so an idle session
//! holds nothing open.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::tunnel::SessionTicket;

/// How long a spare is kept: well within the worker's 5 s wait for the hello.
pub const MAX_AGE: Duration = Duration::from_secs(3);

/// A TLS stream to the worker being made, or made, in its own task.
pub struct Spare {
    making: JoinHandle<anyhow::Result<TlsStream<TcpStream>>>,
    started: Instant,
}

impl Spare {
    /// Starts dialling a spare for `ticket`'s worker.
    pub fn start(ticket: Arc<SessionTicket>) -> Self {
        Self {
            making: tokio::spawn(async move { ticket.dial().await }),
            started: Instant::now(),
        }
    }

    /// When the spare is too old to use.
    pub fn expires(&self) -> Instant {
        self.started + MAX_AGE
    }

    /// The stream, if it is ready, fresh and was made without error; otherwise `None` (the
    /// caller dials as usual).
    pub fn take(mut self) -> Option<TlsStream<TcpStream>> {
        if self.started.elapsed() >= MAX_AGE {
            return None;
        }
        match (&mut self.making).now_or_never() {
            Some(Ok(Ok(stream))) => Some(stream),
            _ => None,
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // An unfinished dial is abandoned; a finished one's stream is closed with the task.
        self.making.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unfinished_or_old_spare_is_not_used() {
        let never = Spare {
            making: tokio::spawn(std::future::pending()),
            started: Instant::now(),
        };
        assert!(
            never.take().is_none(),
            "a dial still under way is not waited for"
        );

        let failed = Spare {
            making: tokio::spawn(async { Err(anyhow::anyhow!("refused")) }),
            started: Instant::now(),
        };
        tokio::task::yield_now().await;
        assert!(failed.take().is_none(), "a failed dial gives nothing");

        let started = Instant::now().checked_sub(MAX_AGE).unwrap();
        let old = Spare {
            making: tokio::spawn(async { Err(anyhow::anyhow!("never looked at")) }),
            started,
        };
        assert_eq!(old.expires(), started + MAX_AGE);
        tokio::task::yield_now().await;
        assert!(old.take().is_none(), "a spare past its age is dropped");
    }
}
