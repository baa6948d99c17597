//! Large reads under a TLS layer: [`ReadAhead`] reads the socket in chunks of up to
//! [`CHUNK`] bytes and hands them to the reader above in whatever pieces it asks for.
//!
//! rustls reads its records 4 KiB at a time (`read_tls`), so a busy TLS stream costs one
//! `recv` per 4 KiB: five system calls for each 16 KiB record. Under it, a `ReadAhead` turns
//! those into copies from one buffer filled by a single `recv` of up to 64 KiB. The buffer
//! is allocated when a read needs it and released as soon as it is drained and the socket
//! has nothing more (the read would wait): an idle connection holds none (memory per idle
//! connection matters at 10,000 connections). Writes pass straight through, vectored ones
//! included.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most a single read of the socket takes.
pub const CHUNK: usize = 64 * 1024;

/// A stream whose reads are served from one large read of `inner` at a time.
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    /// Read from `inner`, not yet handed up; empty (no allocation) while idle.
    buf: BytesMut,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes read from the socket and not yet handed up (what a test may ask).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a buffer is held (never while idle).
    pub fn holds_buffer(&self) -> bool {
        self.buf.capacity() > 0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            // A reader asking for a chunk or more reads straight into its own buffer.
            if out.remaining() >= CHUNK {
                this.buf = BytesMut::new();
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buf.clear();
            this.buf.reserve(CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(err)) => {
                    this.buf = BytesMut::new();
                    return Poll::Ready(Err(err));
                }
                Poll::Pending => {
                    // Idle until the socket has more: hold no buffer meanwhile.
                    this.buf = BytesMut::new();
                    return Poll::Pending;
                }
            }
            // An empty read is the end of the stream: handed up as such.
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
