use std::sync::{Arc, Mutex};
use std::task::Waker;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Polls `pump` once over `reader` and `writer`.
fn poll_once<R, W>(
    pump: &mut Pump,
    reader: &mut R,
    writer: &mut W,
    moved: &AtomicU64,
) -> Poll<io::Result<u64>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    pump.poll_copy(&mut cx, Pin::new(reader), Pin::new(writer), moved)
}

#[tokio::test]
async fn everything_is_copied_and_counted_until_the_end() {
    let (mut feed, mut reader) = tokio::io::duplex(8 * 1024);
    let (mut writer, mut out) = tokio::io::duplex(8 * 1024);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let feeding = tokio::spawn(async move {
        feed.write_all(&sent).await.unwrap();
    });
    let draining = tokio::spawn(async move {
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();
        got
    });
    let moved = AtomicU64::new(0);
    let n = copy(&mut reader, &mut writer, &moved).await.unwrap();
    drop(writer);
    feeding.await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(moved.load(Ordering::Relaxed), data.len() as u64);
    assert_eq!(draining.await.unwrap(), data);
}

#[tokio::test]
async fn an_idle_direction_holds_no_buffer() {
    let (mut feed, mut reader) = tokio::io::duplex(1024);
    let mut writer = Vec::new();
    let moved = AtomicU64::new(0);
    let mut pump = Pump::default();
    assert!(poll_once(&mut pump, &mut reader, &mut writer, &moved).is_pending());
    assert!(
        !pump.holds_buffer(),
        "a direction waiting for its first byte holds a buffer"
    );
    feed.write_all(b"ping").await.unwrap();
    assert!(poll_once(&mut pump, &mut reader, &mut writer, &moved).is_pending());
    assert_eq!(writer, b"ping");
    assert!(
        !pump.holds_buffer(),
        "a direction that went idle again kept its buffer"
    );
    assert_eq!(moved.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn the_buffer_grows_with_full_reads_only() {
    let (mut feed, mut reader) = tokio::io::duplex(1 << 20);
    let mut writer = Vec::new();
    let moved = AtomicU64::new(0);
    let mut pump = Pump::default();
    // Interactive traffic: small reads never grow it.
    for _ in 0..10 {
        feed.write_all(b"ls -l\n").await.unwrap();
        assert!(poll_once(&mut pump, &mut reader, &mut writer, &moved).is_pending());
    }
    assert_eq!(pump.size, FIRST);
    // A burst: each full read grows it, up to MAX.
    feed.write_all(&vec![7u8; 1 << 19]).await.unwrap();
    assert!(poll_once(&mut pump, &mut reader, &mut writer, &moved).is_pending());
    assert_eq!(pump.size, MAX);
    assert_eq!(writer.len(), 60 + (1 << 19));
}

/// A writer that keeps what it accepts until it is flushed, as a TLS writer keeps the rest
/// of its records when the socket is full.
#[derive(Default)]
struct Holding {
    held: Vec<u8>,
    delivered: Arc<Mutex<Vec<u8>>>,
}

impl AsyncWrite for Holding {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let held = std::mem::take(&mut self.held);
        self.delivered.lock().unwrap().extend_from_slice(&held);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[tokio::test]
async fn what_the_writer_holds_is_flushed_before_waiting_for_the_reader() {
    let (mut feed, mut reader) = tokio::io::duplex(1024);
    let mut writer = Holding::default();
    let delivered = writer.delivered.clone();
    let moved = AtomicU64::new(0);
    let mut pump = Pump::default();
    // A request; the peer answers only once it has it, so the reader then waits.
    feed.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(poll_once(&mut pump, &mut reader, &mut writer, &moved).is_pending());
    assert_eq!(*delivered.lock().unwrap(), b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn the_end_of_the_reader_flushes_and_returns_the_count() {
    let (mut feed, mut reader) = tokio::io::duplex(1024);
    let mut writer = Holding::default();
    let delivered = writer.delivered.clone();
    feed.write_all(b"last words").await.unwrap();
    drop(feed);
    let moved = AtomicU64::new(0);
    assert_eq!(copy(&mut reader, &mut writer, &moved).await.unwrap(), 10);
    assert_eq!(*delivered.lock().unwrap(), b"last words");
}
