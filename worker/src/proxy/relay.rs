//! The byte relay between a client and its target: both directions at once, an EOF on one
//! side becoming a half-close of the other, until both are done or the connection is ended.

use std::sync::atomic::{AtomicU64, Ordering};

use super::ClientStream;
use portcullis_proto::link::EndReason;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::Shared;

/// What a relayed connection carried, and why it closed.
pub(super) struct Relayed {
    pub(super) up: u64,
    pub(super) down: u64,
    pub(super) why: EndReason,
}

/// Relays until both directions are done (`closed`), or the session ends through the table
/// (reason `expired` when its grant expires), the drain times out (`shutdown`), or no
/// controller was heard for the live grace (`controller_unreachable`).
pub(super) async fn relay_until_ended(
    shared: &Shared,
    session_id: &str,
    client: ClientStream,
    target: TcpStream,
) -> Relayed {
    let ending = shared.table.ending(session_id);
    let isolated = shared.table.isolation_token();
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let why = tokio::select! {
        _ = relay(client, target, &up, &down) => EndReason::Closed,
        _ = ending.ended() => ending.reason(),
        _ = shared.hard_stop.cancelled() => EndReason::Shutdown,
        _ = isolated.cancelled() => EndReason::ControllerUnreachable,
    };
    Relayed {
        up: up.load(Ordering::Relaxed),
        down: down.load(Ordering::Relaxed),
        why,
    }
}

/// Copies both ways until both directions are done; an EOF on one side becomes a shutdown of
/// the other side's write half, and the other direction keeps flowing. An error in one
/// direction ends that direction only (its write half shut down); the session's end or the
/// other side's close ends the rest. Buffers are held only while bytes are in them
/// ([`portcullis_net::copy`]).
async fn relay(client: ClientStream, target: TcpStream, up: &AtomicU64, down: &AtomicU64) {
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut target_r, mut target_w) = target.into_split();
    let a = pump(&mut client_r, &mut target_w, up);
    let b = pump(&mut target_r, &mut client_w, down);
    tokio::join!(a, b);
}

async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    counter: &AtomicU64,
) {
    let _ = portcullis_net::copy::copy(r, w, counter).await;
    let _ = w.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's task keeps a copy of every value it holds across an await; the TLS
    /// stream (over a kilobyte) must be a pointer there, or each idle connection carries
    /// several dead copies of it.
    #[test]
    fn a_connections_tls_stream_is_held_by_pointer() {
        assert_eq!(
            std::mem::size_of::<ClientStream>(),
            std::mem::size_of::<usize>()
        );
    }
}
