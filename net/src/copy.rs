//! One direction of a relay: [`copy`] carries bytes from a reader to a writer until the reader
//! ends, through a buffer that grows with the traffic and is held only while bytes are in it.
//!
//! - **Memory.** An idle direction holds no buffer: it is allocated when a read is attempted
//!   and released when that read would wait (memory per idle connection matters at tens of
//!   thousands of connections). Its size starts at [`FIRST`] and grows fourfold each time a
//!   read fills it, up to [`MAX`], so a busy direction moves large chunks (fewer, fuller TLS
//!   records) and an interactive one small ones.
//! - **Flushing.** Before waiting for the reader, whatever the writer still buffers is flushed.
//!   A TLS writer (tokio-rustls) may accept plaintext and keep part of its records when the
//!   socket is full; without the flush, those bytes would wait for the next write, and a peer
//!   that answers only once it has them would wait forever.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

/// The buffer's size for the first read of a direction.
pub const FIRST: usize = 512;
/// The most one read takes (and the largest buffer a direction holds).
pub const MAX: usize = 64 * 1024;

/// Copies `reader` to `writer` until the reader's end (returning the bytes copied) or an
/// error of either side. Every write is added to `moved` as it happens, so a caller that
/// drops this future early still knows what was carried. The writer is flushed at the end,
/// not shut down: a half-close is the caller's decision.
pub async fn copy<R, W>(reader: &mut R, writer: &mut W, moved: &AtomicU64) -> io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut pump = Pump::default();
    poll_fn(|cx| pump.poll_copy(cx, Pin::new(&mut *reader), Pin::new(&mut *writer), moved)).await
}

/// The state of one direction between polls.
#[derive(Debug)]
struct Pump {
    /// Bytes read and not yet all written (`buf[written..]`); no allocation while idle.
    buf: BytesMut,
    written: usize,
    /// The size the next buffer is allocated with.
    size: usize,
    /// Something was written since the last flush.
    unflushed: bool,
    total: u64,
}

impl Default for Pump {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            written: 0,
            size: FIRST,
            unflushed: false,
            total: 0,
        }
    }
}

impl Pump {
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        moved: &AtomicU64,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            while self.written < self.buf.len() {
                let n = ready!(writer.as_mut().poll_write(cx, &self.buf[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.total += n as u64;
                self.unflushed = true;
                moved.fetch_add(n as u64, Ordering::Relaxed);
            }
            self.buf.clear();
            self.written = 0;
            if self.buf.capacity() < self.size {
                self.buf.reserve(self.size);
            }
            match tokio_util::io::poll_read_buf(reader.as_mut(), cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => {
                    self.buf = BytesMut::new();
                    ready!(writer.as_mut().poll_flush(cx))?;
                    return Poll::Ready(Ok(self.total));
                }
                Poll::Ready(Ok(n)) => {
                    if n >= self.size && self.size < MAX {
                        self.size = (self.size * 4).min(MAX);
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    // Idle until the reader has more: hold no buffer meanwhile, and let
                    // nothing wait in the writer.
                    self.buf = BytesMut::new();
                    if self.unflushed {
                        ready!(writer.as_mut().poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
