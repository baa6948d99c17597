use std::collections::VecDeque;

use tokio::io::AsyncReadExt as _;

use super::*;

/// A socket stand-in: each step is what one read returns (bytes, or "would wait"); counts
/// the reads it serves.
struct Script {
    steps: VecDeque<Option<Vec<u8>>>,
    reads: usize,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Option<Vec<u8>>>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            reads: 0,
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reads += 1;
        match self.steps.pop_front() {
            // The end of the script is the end of the stream.
            None => Poll::Ready(Ok(())),
            Some(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Some(mut bytes)) => {
                let n = out.remaining().min(bytes.len());
                out.put_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.steps.push_front(Some(bytes.split_off(n)));
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn small_reads_are_served_from_one_large_read() {
    let data = pattern(CHUNK);
    let mut stream = ReadAhead::new(Script::new([Some(data.clone())]));
    let mut got = Vec::new();
    let mut piece = [0u8; 4096];
    while got.len() < data.len() {
        let n = stream.read(&mut piece).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&piece[..n]);
    }
    assert_eq!(got, data);
    assert_eq!(
        stream.get_ref().reads,
        1,
        "16 reads of 4 KiB, one of the socket"
    );
}

#[tokio::test]
async fn a_drained_buffer_is_released_while_the_socket_waits() {
    let mut stream = ReadAhead::new(Script::new([
        Some(b"hello".to_vec()),
        None,
        Some(b" world".to_vec()),
    ]));
    let mut piece = [0u8; 3];
    assert_eq!(stream.read(&mut piece).await.unwrap(), 3);
    assert!(stream.holds_buffer());
    assert_eq!(stream.buffered(), 2);
    assert_eq!(stream.read(&mut piece).await.unwrap(), 2);
    assert_eq!(&piece[..2], b"lo");
    // The next read waits once (the script's None): no buffer is held across the wait.
    let waker = futures_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = [0u8; 8];
    let mut buf = ReadBuf::new(&mut out);
    assert!(Pin::new(&mut stream)
        .poll_read(&mut cx, &mut buf)
        .is_pending());
    assert!(!stream.holds_buffer());
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b" world");
}

#[tokio::test]
async fn the_end_of_the_stream_is_passed_up() {
    let mut stream = ReadAhead::new(Script::new([Some(b"ab".to_vec())]));
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"ab");
    assert_eq!(stream.read(&mut [0u8; 16]).await.unwrap(), 0);
    assert!(!stream.holds_buffer() || stream.buffered() == 0);
}

#[tokio::test]
async fn a_reader_with_room_for_a_chunk_reads_directly() {
    let data = pattern(CHUNK * 2);
    let mut stream = ReadAhead::new(Script::new([Some(data.clone())]));
    let mut big = vec![0u8; CHUNK];
    let n = stream.read(&mut big).await.unwrap();
    assert_eq!(n, CHUNK);
    assert_eq!(&big[..], &data[..CHUNK]);
    assert!(!stream.holds_buffer(), "no copy through the buffer");
}

#[tokio::test]
async fn writes_pass_through() {
    use tokio::io::AsyncWriteExt as _;
    let (a, mut b) = tokio::io::duplex(1024);
    let mut stream = ReadAhead::new(a);
    let n = stream
        .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])
        .await
        .unwrap();
    stream.write_all(&b"abcd"[n..]).await.unwrap();
    stream.write_all(b"ef").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"abcdef");
}

fn futures_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}
