//! The byte relay between a client and its target: both directions at once, an EOF on one
//! side becoming a half-close of the other, until both are done or the connection is ended.

use std::sync::atomic::{AtomicU64, Ordering};

use super::ClientStream;
use portcullis_proto::link::EndReason;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
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
/// the other side's write half, and the other direction keeps flowing.
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
    // Buffers grow with the traffic: an idle connection holds a small one per direction, a
    // busy one grows to MAX_BUF (memory per idle connection matters at 10,000 connections).
    const FIRST_BUF: usize = 512;
    const MAX_BUF: usize = 64 * 1024;
    let mut buf = bytes::BytesMut::with_capacity(FIRST_BUF);
    loop {
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..]).await.is_err() {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
                let full = buf.len() == buf.capacity();
                let capacity = buf.capacity();
                buf.clear();
                if full && capacity < MAX_BUF {
                    buf.reserve((capacity * 4).min(MAX_BUF));
                }
            }
        }
    }
    let _ = w.shutdown().await;
}
