//! What `read_hello` makes of a client that goes away and of one that sends a bad hello.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_proto::proxy::{self, ClientHello};
use tokio::io::{AsyncRead, ReadBuf};

use super::{read_hello, NoHello};

const LIMIT: Duration = Duration::from_secs(5);

/// A stream that yields `bytes`, then fails with `then` (or ends, without one).
struct Script {
    bytes: Vec<u8>,
    then: Option<io::ErrorKind>,
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.bytes.is_empty() {
            let n = buf.remaining().min(self.bytes.len());
            let rest = self.bytes.split_off(n);
            buf.put_slice(&self.bytes);
            self.bytes = rest;
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(match self.then {
            Some(kind) => Err(io::Error::from(kind)),
            None => Ok(()),
        })
    }
}

async fn read(bytes: &[u8], then: Option<io::ErrorKind>) -> Result<ClientHello, NoHello> {
    let mut stream = Script {
        bytes: bytes.to_vec(),
        then,
    };
    read_hello(&mut stream, LIMIT).await
}

#[tokio::test]
async fn a_client_gone_before_its_first_byte_is_no_refusal() {
    // A spare the CLI drops: closed, or reset because TLS's tickets were never read.
    for then in [
        None,
        Some(io::ErrorKind::UnexpectedEof),
        Some(io::ErrorKind::ConnectionReset),
        Some(io::ErrorKind::ConnectionAborted),
    ] {
        assert!(
            matches!(read(b"", then).await, Err(NoHello::Closed)),
            "{then:?}"
        );
    }
}

#[tokio::test]
async fn a_hello_cut_short_or_malformed_is_bad() {
    let hello = proxy::encode_frame(&ClientHello {
        protocol_version: 1,
        grant: "g".into(),
    })
    .unwrap();
    for cut in [1, 3, 4, hello.len() - 1] {
        for then in [None, Some(io::ErrorKind::ConnectionReset)] {
            assert!(
                matches!(read(&hello[..cut], then).await, Err(NoHello::Bad(_))),
                "cut at {cut}, then {then:?}"
            );
        }
    }
    let garbage = [0, 0, 0, 2, b'{', b'x'];
    assert!(matches!(read(&garbage, None).await, Err(NoHello::Bad(_))));
    let huge = u32::MAX.to_be_bytes();
    assert!(matches!(read(&huge, None).await, Err(NoHello::Bad(_))));
    // Any other failure before the first byte is bad too.
    assert!(matches!(
        read(b"", Some(io::ErrorKind::InvalidData)).await,
        Err(NoHello::Bad(_))
    ));
    let hello = read(&hello, None).await.unwrap();
    assert_eq!(hello.grant, "g");
}

/// A client may send its first bytes right behind the hello, in the same flight (the CLI
/// does): the hello is read exactly, and what follows stays in the stream for the relay,
/// which only starts once the connection is accepted.
#[tokio::test]
async fn bytes_behind_the_hello_stay_for_the_relay() {
    use tokio::io::AsyncReadExt as _;
    let hello = proxy::encode_frame(&ClientHello {
        protocol_version: portcullis_proto::PROTOCOL_VERSION,
        grant: "g".into(),
    })
    .unwrap();
    let mut bytes = hello.clone();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let mut stream = Script { bytes, then: None };
    let read = read_hello(&mut stream, LIMIT).await.unwrap();
    assert_eq!(read.grant, "g");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
}
