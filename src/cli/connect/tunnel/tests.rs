use super::super::tls::tests::{server_config, worker_identity};
use super::*;

pub(in crate::cli::connect) enum Behaviour {
    /// Accept, read everything until the client's half-close, then answer with it
    /// reversed followed by a trailer.
    ReverseAfterEof,
    Refuse(RefusalCode, &'static str),
    /// Read these bytes behind the hello before replying (a client that waited for the
    /// reply to send them would hang), accept, send them back and close.
    EarlyBeforeReply(&'static [u8]),
}

/// A stand-in worker proxy listener on 127.0.0.1:0; returns its address and fingerprint.
pub(in crate::cli::connect) async fn mock_worker(behaviour: Behaviour) -> (String, String) {
    let (cert, key, fingerprint) = worker_identity();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert, key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let behaviour = Arc::new(behaviour);
    tokio::spawn(async move {
        // Every connection is served (a listener also dials a spare one ahead).
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_mock(acceptor.clone(), tcp, behaviour.clone()));
        }
    });
    (addr, fingerprint)
}

async fn serve_mock(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    behaviour: Arc<Behaviour>,
) {
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return; // The client refused our key.
    };
    let mut len = [0u8; 4];
    if tls.read_exact(&mut len).await.is_err() {
        return; // A spare connection, dropped unused.
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut body).await.unwrap();
    let hello: proxy::ClientHello = serde_json::from_slice(&body).unwrap();
    assert_eq!(hello.grant, "the-grant");
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    match &*behaviour {
        Behaviour::Refuse(code, reason) => {
            let reply = WorkerReply::Refused {
                code: *code,
                reason: (*reason).into(),
            };
            tls.write_all(&proxy::encode_frame(&reply).unwrap())
                .await
                .unwrap();
            tls.shutdown().await.unwrap();
        }
        Behaviour::EarlyBeforeReply(expected) => {
            let mut early = vec![0u8; expected.len()];
            tls.read_exact(&mut early).await.unwrap();
            assert_eq!(&early, expected);
            let reply = WorkerReply::Accepted {
                connection_id: "c_2".into(),
            };
            tls.write_all(&proxy::encode_frame(&reply).unwrap())
                .await
                .unwrap();
            tls.write_all(&early).await.unwrap();
            tls.shutdown().await.unwrap();
        }
        Behaviour::ReverseAfterEof => {
            let reply = WorkerReply::Accepted {
                connection_id: "c_1".into(),
            };
            tls.write_all(&proxy::encode_frame(&reply).unwrap())
                .await
                .unwrap();
            let mut data = Vec::new();
            tls.read_to_end(&mut data).await.unwrap();
            data.reverse();
            tls.write_all(&data).await.unwrap();
            tls.write_all(b"<end>").await.unwrap();
            tls.shutdown().await.unwrap();
        }
    }
}

pub(in crate::cli::connect) fn ticket(worker_addr: String, fingerprint: String) -> SessionTicket {
    let identity = ClientIdentity::generate().unwrap();
    SessionTicket::new(
        TicketParts {
            session_id: "s_1".into(),
            target: "web".into(),
            worker_addr,
            worker_key_fingerprint: fingerprint,
            grant: "the-grant".into(),
            expires_at: u64::MAX,
        },
        &identity,
    )
    .unwrap()
}

/// See the worker's `a_connections_tls_stream_is_held_by_pointer`: the same holds for
/// the CLI's connection tasks.
#[test]
fn a_connections_worker_stream_is_held_by_pointer() {
    assert_eq!(
        std::mem::size_of::<WorkerStream>(),
        std::mem::size_of::<usize>()
    );
}

#[tokio::test]
async fn half_closing_client_gets_the_whole_reply() {
    let (addr, fingerprint) = mock_worker(Behaviour::ReverseAfterEof).await;
    let connection = ticket(addr, fingerprint).open().await.unwrap();
    assert_eq!(connection.id, "c_1");

    let (mut app, local) = tokio::io::duplex(64 * 1024);
    let (local_read, local_write) = tokio::io::split(local);
    let splice = tokio::spawn(connection.splice(local_read, local_write));

    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let (mut app_read, mut app_write) = tokio::io::split(&mut app);
    let send = async {
        app_write.write_all(&payload).await.unwrap();
        app_write.shutdown().await.unwrap(); // half-close: we still read the reply.
    };
    let mut answer = Vec::new();
    let receive = app_read.read_to_end(&mut answer);
    let ((), read) = tokio::join!(send, receive);
    read.unwrap();

    let mut expected = payload.clone();
    expected.reverse();
    expected.extend_from_slice(b"<end>");
    assert_eq!(answer.len(), expected.len());
    assert!(answer == expected);
    let transfer = splice.await.unwrap().unwrap();
    assert_eq!(transfer.up, payload.len() as u64);
    assert_eq!(transfer.down, expected.len() as u64);
}

#[tokio::test]
async fn the_first_bytes_go_with_the_hello() {
    let (addr, fingerprint) = mock_worker(Behaviour::EarlyBeforeReply(b"ping")).await;
    let (mut app, local) = tokio::io::duplex(1024);
    app.write_all(b"ping").await.unwrap();
    let (mut local_read, local_write) = tokio::io::split(local);
    let mut early = Vec::new();
    let connection = ticket(addr, fingerprint)
        .open_with(&mut local_read, &mut early)
        .await
        .unwrap();
    assert_eq!(connection.id, "c_2");
    assert_eq!(early, b"ping");
    app.shutdown().await.unwrap();
    let splice = tokio::spawn(connection.splice(local_read, local_write));
    let mut answer = Vec::new();
    app.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"ping");
    let transfer = splice.await.unwrap().unwrap();
    assert_eq!(transfer.up, 4, "the first bytes count as sent");
    assert_eq!(transfer.down, 4);
}

#[tokio::test]
async fn a_local_side_that_says_nothing_does_not_hold_up_the_reply() {
    let (addr, fingerprint) = mock_worker(Behaviour::ReverseAfterEof).await;
    let (_app, local) = tokio::io::duplex(1024);
    let (mut local_read, _local_write) = tokio::io::split(local);
    let mut early = Vec::new();
    let connection = ticket(addr, fingerprint)
        .open_with(&mut local_read, &mut early)
        .await
        .unwrap();
    assert_eq!(connection.id, "c_1");
    assert!(early.is_empty());
}

#[tokio::test]
async fn a_refusal_is_reported_when_first_bytes_went_with_the_hello() {
    let (addr, fingerprint) =
        mock_worker(Behaviour::Refuse(RefusalCode::SessionEnded, "ended")).await;
    let (mut app, local) = tokio::io::duplex(1024);
    app.write_all(&[7u8; 900]).await.unwrap();
    let (mut local_read, _) = tokio::io::split(local);
    let mut early = Vec::new();
    let err = ticket(addr, fingerprint)
        .open_with(&mut local_read, &mut early)
        .await
        .err()
        .unwrap();
    assert!(err.downcast_ref::<Refused>().is_some(), "{err:#}");
}

#[tokio::test]
async fn refusal_is_reported_with_its_code() {
    let (addr, fingerprint) = mock_worker(Behaviour::Refuse(
        RefusalCode::ConnectionLimit,
        "connection limit reached",
    ))
    .await;
    let err = ticket(addr, fingerprint).open().await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "worker refused the connection: connection limit reached (connection_limit)"
    );
    let refused = err.downcast_ref::<Refused>().unwrap();
    assert!(!refused.ends_session());
}

#[tokio::test]
async fn refusal_without_reason_is_described() {
    let (addr, fingerprint) = mock_worker(Behaviour::Refuse(RefusalCode::SessionEnded, "")).await;
    let err = ticket(addr, fingerprint).open().await.err().unwrap();
    assert!(
        err.to_string()
            .contains("the session has ended (session_ended)"),
        "{err}"
    );
    assert!(err.downcast_ref::<Refused>().unwrap().ends_session());
}

#[tokio::test]
async fn another_worker_key_is_refused_in_words() {
    let (addr, _, seen) = gated_worker(0).await;
    let (_, _, other) = worker_identity();
    let err = ticket(addr, other).open().await.err().unwrap().to_string();
    // Refused by TLS, not closed by the worker: one attempt only.
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(err.contains("TLS with the worker at 127.0.0.1:"), "{err}");
    assert!(
        err.contains("is not the key") && !err.contains("OtherError"),
        "{err}"
    );
}

/// A worker that closes the first `closes` connections at once, as its gate does when too
/// many from one address are in their handshake, and then serves like [`mock_worker`].
async fn gated_worker(closes: usize) -> (String, String, Arc<std::sync::atomic::AtomicUsize>) {
    let (cert, key, fingerprint) = worker_identity();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert, key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < closes {
                drop(tcp);
                continue;
            }
            let behaviour = Arc::new(Behaviour::ReverseAfterEof);
            tokio::spawn(serve_mock(acceptor.clone(), tcp, behaviour));
        }
    });
    (addr, fingerprint, seen)
}

#[tokio::test]
async fn a_handshake_the_worker_closed_is_tried_again() {
    let (addr, fingerprint, seen) = gated_worker(3).await;
    let connection = ticket(addr, fingerprint).open().await.unwrap();
    assert_eq!(connection.id, "c_1");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_worker_that_keeps_closing_the_handshake_is_explained() {
    let (addr, fingerprint, seen) = gated_worker(usize::MAX).await;
    let err = ticket(addr, fingerprint)
        .open()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("closed the connection during the handshake 6 times"),
        "{err}"
    );
    assert!(err.contains("max_handshakes_per_source"), "{err}");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        DIAL_ATTEMPTS
    );
}

#[tokio::test]
async fn unreachable_worker_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = ticket(format!("127.0.0.1:{port}"), "ab".repeat(32))
        .open()
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("cannot reach the worker at 127.0.0.1:"),
        "{err}"
    );
}
