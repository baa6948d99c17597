//! The client's raw request heads, read beside hyper's parser: hyper settles some ambiguous
//! framings on its own before a head reaches [`super::vet`] (with both `Content-Length` and
//! `Transfer-Encoding` it drops the length and reads chunked; of several equal
//! `Content-Length` headers it keeps one), so `vet` could not refuse them. [`Scanned`] wraps
//! the client's stream and, as bytes are read, finds each request head (skipping bodies by
//! their framing), and queues a verdict per head in [`Verdicts`]; the server takes one per
//! request, in order, and refuses the request when its head was ambiguous.
//!
//! The queue stays in step with hyper up to the first refusal: both read the same bytes and
//! agree on where an unambiguous message ends, and a refusal closes the connection. A head
//! that this reader cannot parse is refused too (hyper would mostly refuse it itself).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Refusal, RefusalCode};

/// The largest head read (hyper's default buffer is about 400 KiB; Proxmox clients send
/// heads of a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

/// One verdict per request head, oldest first.
#[derive(Default)]
pub(super) struct Verdicts(Mutex<VecDeque<Result<(), Refusal>>>);

impl Verdicts {
    /// The verdict on the next request's head. None queued means the reader lost track:
    /// refused.
    pub(super) fn next(&self) -> Result<(), Refusal> {
        self.lock()
            .pop_front()
            .unwrap_or_else(|| Err(framing("the request's framing could not be read")))
    }

    fn push(&self, verdict: Result<(), Refusal>) {
        self.lock().push_back(verdict);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Result<(), Refusal>>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

fn framing(message: &str) -> Refusal {
    Refusal::new(
        RefusalCode::Framing,
        StatusCode::BAD_REQUEST,
        format!("{message}: send one Content-Length or Transfer-Encoding: chunked"),
    )
}

/// Where the reader is in the client's byte stream.
#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    /// Chunk data and its CRLF.
    ChunkData(u64),
    Trailers(Vec<u8>),
    /// After a refused head: the connection closes, nothing more is read.
    Stopped,
}

/// The reader of raw heads (sans I/O: [`Scanner::feed`] takes bytes as they arrive).
pub(super) struct Scanner {
    state: State,
    verdicts: Arc<Verdicts>,
}

impl Scanner {
    pub(super) fn new(verdicts: Arc<Verdicts>) -> Scanner {
        Scanner {
            state: State::Head(Vec::new()),
            verdicts,
        }
    }

    pub(super) fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            let used = match &mut self.state {
                State::Stopped => return,
                State::Head(buf) => {
                    let before = buf.len();
                    let take = input.len().min(MAX_HEAD - before);
                    buf.extend_from_slice(&input[..take]);
                    match parse_head(buf) {
                        Head::Partial if buf.len() >= MAX_HEAD => {
                            self.verdicts
                                .push(Err(framing("the request head is too large")));
                            self.state = State::Stopped;
                            return;
                        }
                        Head::Partial => take,
                        Head::Refused(refusal) => {
                            self.verdicts.push(Err(refusal));
                            self.state = State::Stopped;
                            return;
                        }
                        Head::Complete(len, next) => {
                            self.verdicts.push(Ok(()));
                            self.state = next;
                            len - before
                        }
                    }
                }
                State::Body(left) | State::ChunkData(left) => {
                    let take = input
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = match self.state {
                            State::Body(_) => State::Head(Vec::new()),
                            _ => State::ChunkSize(Vec::new()),
                        };
                    }
                    take
                }
                State::ChunkSize(line) | State::Trailers(line) => {
                    let end = input.iter().position(|b| *b == b'\n');
                    let take = end.map_or(input.len(), |i| i + 1);
                    line.extend_from_slice(&input[..take]);
                    if line.len() > MAX_LINE {
                        self.state = State::Stopped;
                        return;
                    }
                    if end.is_some() {
                        let next = match &self.state {
                            State::ChunkSize(line) => match httparse::parse_chunk_size(line) {
                                Ok(httparse::Status::Complete((_, 0))) => {
                                    State::Trailers(Vec::new())
                                }
                                Ok(httparse::Status::Complete((_, size))) => {
                                    State::ChunkData(size.saturating_add(2))
                                }
                                _ => State::Stopped,
                            },
                            // An empty line ends the trailers, and the message.
                            State::Trailers(line)
                                if line.as_slice() == b"\r\n" || line.as_slice() == b"\n" =>
                            {
                                State::Head(Vec::new())
                            }
                            _ => State::Trailers(Vec::new()),
                        };
                        self.state = next;
                    }
                    take
                }
            };
            input = &input[used..];
        }
    }
}

enum Head {
    Partial,
    Refused(Refusal),
    /// The head's length and what follows it.
    Complete(usize, State),
}

fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Refused(framing("the request head does not parse as HTTP/1.1")),
    };
    let named = |name: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    let (lengths, codings) = (named("content-length"), named("transfer-encoding"));
    let next = match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => State::Head(Vec::new()),
        ([_, ..], [_, ..]) => {
            return Head::Refused(framing("both Content-Length and Transfer-Encoding"))
        }
        ([_, _, ..], []) => return Head::Refused(framing("several Content-Length headers")),
        ([], [_, _, ..]) => return Head::Refused(framing("several Transfer-Encoding headers")),
        ([], [coding]) if coding.eq_ignore_ascii_case(b"chunked") => State::ChunkSize(Vec::new()),
        ([], [_]) => {
            return Head::Refused(framing("a Transfer-Encoding other than exactly chunked"))
        }
        ([length], []) => {
            let parsed = std::str::from_utf8(length)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok());
            match parsed {
                Some(0) => State::Head(Vec::new()),
                Some(n) => State::Body(n),
                None => {
                    return Head::Refused(framing("a Content-Length that is not a decimal number"))
                }
            }
        }
    };
    Head::Complete(len, next)
}

/// The client's stream, its reads shown to a [`Scanner`] on their way to hyper.
pub(super) struct Scanned<S> {
    inner: S,
    scanner: Scanner,
}

impl<S> Scanned<S> {
    pub(super) fn new(inner: S, verdicts: Arc<Verdicts>) -> Scanned<S> {
        Scanned {
            inner,
            scanner: Scanner::new(verdicts),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Scanned<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scanner.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Scanned<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The verdicts on `stream`, fed whole and a byte at a time (same answer both ways).
    fn verdicts(stream: &[u8]) -> Vec<Option<RefusalCode>> {
        let run = |chunk: usize| {
            let verdicts = Arc::new(Verdicts::default());
            let mut scanner = Scanner::new(verdicts.clone());
            for piece in stream.chunks(chunk) {
                scanner.feed(piece);
            }
            let queued: Vec<_> = verdicts
                .lock()
                .drain(..)
                .map(|v| v.err().map(|r| r.code))
                .collect();
            queued
        };
        let whole = run(stream.len().max(1));
        assert_eq!(whole, run(1), "fed byte by byte");
        assert_eq!(whole, run(7), "fed 7 bytes at a time");
        whole
    }

    #[test]
    fn keep_alive_requests_with_bodies_of_each_framing_each_get_a_verdict() {
        let stream = b"GET /api2/json/version HTTP/1.1\r\nHost: x\r\n\r\n\
POST /api2/json/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /\
POST /api2/json/nodes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nGE\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET /api2/json/cluster/status HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdicts(stream), [None, None, None, None]);
    }

    #[test]
    fn the_framings_hyper_would_settle_alone_are_refused() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 4\r\nCONTENT-LENGTH: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        ] {
            // After the refusal nothing more is read (a second head gets no verdict).
            let stream = format!("{head}GET / HTTP/1.1\r\n\r\n");
            assert_eq!(
                verdicts(stream.as_bytes()),
                [Some(RefusalCode::Framing)],
                "{head:?}"
            );
        }
        assert_eq!(
            Verdicts::default().next().unwrap_err().code,
            RefusalCode::Framing
        );
    }

    #[test]
    fn a_head_over_the_limit_is_refused() {
        let mut stream = b"GET / HTTP/1.1\r\n".to_vec();
        while stream.len() <= MAX_HEAD {
            stream.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(verdicts(&stream), [Some(RefusalCode::Framing)]);
    }
}
