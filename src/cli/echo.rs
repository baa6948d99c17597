//! A TCP echo service for `portcullis dev`: a target that needs nothing installed. It echoes
//! every byte and passes a half-close on (when the client stops sending, it finishes echoing
//! and then closes its side).

use std::net::SocketAddr;

use portcullis_net::accept::Acceptor;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub(crate) async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let mut accepting = Acceptor::new("echo");
    loop {
        let Some((mut stream, peer)) = accepting.next_until(|| listener.accept(), &shutdown).await
        else {
            return;
        };
        let span = tracing::debug_span!("echo", client.addr = %peer);
        tokio::spawn(
            async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            }
            .instrument(span),
        );
    }
}
