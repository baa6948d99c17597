#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use portcullis_policy::SshMode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Opens sessions `s_1`, `s_2`, ...; each connection is an in-memory echo of the target.
#[derive(Default)]
struct FakeOpener {
    opened: Mutex<Vec<String>>,
    /// The local secret hashes sessions were opened with, in order.
    secrets: Mutex<Vec<Option<String>>>,
}

impl Opener for FakeOpener {
    fn open<'a>(
        &'a self,
        _target: &'a str,
        local_secret_sha256: Option<String>,
    ) -> BoxFuture<'a, Result<Opened, String>> {
        Box::pin(async move {
            let mut opened = self.opened.lock().unwrap();
            let id = format!("s_{}", opened.len() + 1);
            opened.push(id.clone());
            self.secrets.lock().unwrap().push(local_secret_sha256);
            Ok(Opened {
                session_id: id,
                expires_at: 2_000_000_000,
                proxmox: None,
            })
        })
    }

    fn prepare_ssh<'a>(
        &'a self,
        target: &'a str,
        ssh_public_key: &'a str,
    ) -> BoxFuture<'a, Result<SshPrepared, String>> {
        Box::pin(async move {
            Ok(SshPrepared {
                session_id: "s_ssh".into(),
                request_id: "ar_1".into(),
                target: target.into(),
                expires_at: 2_000_000_000,
                login: Some("deploy".into()),
                ssh_mode: SshMode::Certificate,
                alias: "portcullis.web".into(),
                known_hosts: "portcullis.web ssh-ed25519 AAAA\n".into(),
                certificate: Some(format!("cert for {ssh_public_key}")),
            })
        })
    }

    fn connect<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Stream>, String>> {
        Box::pin(async move {
            if !self.opened.lock().unwrap().iter().any(|s| s == session_id) {
                return Err(format!("session {session_id} is not one of this run's"));
            }
            let (near, mut far) = tokio::io::duplex(1024);
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = far.read(&mut buf).await {
                    if n == 0 || far.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = far.shutdown().await;
            });
            Ok(Box::new(near) as Box<dyn Stream>)
        })
    }
}

fn targets() -> Vec<String> {
    vec!["echo".into(), "web".into()]
}

/// Sends `line` to a relay over an in-memory stream; returns the answer and the stream.
async fn exchange(
    opener: &'static FakeOpener,
    line: &str,
) -> (Answer, BufReader<tokio::io::DuplexStream>) {
    let (client, server) = tokio::io::duplex(4096);
    let mut client = BufReader::new(client);
    client.write_all(line.as_bytes()).await.unwrap();
    let targets: &'static [String] = Box::leak(targets().into_boxed_slice());
    // The relay serves until the connection ends (right after answering a refusal).
    tokio::spawn(serve(server, targets, opener));
    let answer = read_line(&mut client).await.unwrap();
    let answer = serde_json::from_str::<Answer>(&answer).unwrap();
    (answer, client)
}

#[tokio::test]
async fn a_connect_to_a_run_target_carries_bytes_after_the_answer() {
    let opener: &'static FakeOpener = Box::leak(Box::default());
    let (answer, mut client) = exchange(opener, "{\"connect\":{\"target\":\"echo\"}}\n").await;
    assert_eq!(
        answer,
        Answer::Connected {
            session_id: "s_1".into(),
            expires_at: Some(2_000_000_000)
        }
    );
    client.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");

    // A second connection joins the same session.
    let (answer, mut client) = exchange(opener, "{\"join\":{\"session_id\":\"s_1\"}}\n").await;
    assert_eq!(
        answer,
        Answer::Connected {
            session_id: "s_1".into(),
            expires_at: None
        }
    );
    client.write_all(b"again").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"again");
}

#[tokio::test]
async fn targets_outside_the_run_and_unknown_sessions_are_refused() {
    let opener: &'static FakeOpener = Box::leak(Box::default());
    let (answer, _) = exchange(opener, "{\"connect\":{\"target\":\"db\"}}\n").await;
    let Answer::Refused { message } = answer else {
        panic!("{answer:?}")
    };
    assert!(
        message.contains("db is not one of this run's targets (echo, web)"),
        "{message}"
    );
    assert!(
        opener.opened.lock().unwrap().is_empty(),
        "no session opened"
    );

    let (answer, _) = exchange(
        opener,
        "{\"prepare_ssh\":{\"target\":\"db\",\"ssh_public_key\":\"k\"}}\n",
    )
    .await;
    assert!(matches!(answer, Answer::Refused { .. }), "{answer:?}");

    let (answer, _) = exchange(opener, "{\"join\":{\"session_id\":\"s_9\"}}\n").await;
    let Answer::Refused { message } = answer else {
        panic!("{answer:?}")
    };
    assert!(
        message.contains("s_9 is not one of this run's"),
        "{message}"
    );

    let (answer, _) = exchange(
        opener,
        "{\"connect\":{\"target\":\"echo\",\"token\":\"x\"}}\n",
    )
    .await;
    let Answer::Refused { message } = answer else {
        panic!("{answer:?}")
    };
    assert!(
        message.contains("not a request this run understands"),
        "{message}"
    );
}

#[tokio::test]
async fn ssh_prepare_gets_what_ssh_needs_and_no_stream() {
    let opener: &'static FakeOpener = Box::leak(Box::default());
    let (answer, mut client) = exchange(
        opener,
        "{\"prepare_ssh\":{\"target\":\"web\",\"ssh_public_key\":\"ssh-ed25519 K\"}}\n",
    )
    .await;
    let Answer::Prepared(prepared) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(prepared.target, "web");
    assert_eq!(
        prepared.certificate.as_deref(),
        Some("cert for ssh-ed25519 K")
    );
    // Closed after the answer.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_listener_opens_its_session_then_joins_it_per_connection() {
    let opener: &'static FakeOpener = Box::leak(Box::default());
    let (answer, mut client) = exchange(
        opener,
        "{\"open\":{\"target\":\"web\",\"local_secret_sha256\":\"abc\"}}\n",
    )
    .await;
    assert_eq!(
        answer,
        Answer::Opened(OpenedSession {
            session_id: "s_1".into(),
            expires_at: 2_000_000_000,
            proxmox: None,
        })
    );
    assert_eq!(*opener.secrets.lock().unwrap(), [Some("abc".to_owned())]);
    // No connection of it on this socket: closed after the answer.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // Its connections join it.
    let (answer, mut client) = exchange(opener, "{\"join\":{\"session_id\":\"s_1\"}}\n").await;
    assert!(matches!(answer, Answer::Connected { .. }), "{answer:?}");
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // Only to the run's targets.
    let (answer, _) = exchange(opener, "{\"open\":{\"target\":\"pve-2\"}}\n").await;
    let Answer::Refused { message } = answer else {
        panic!("{answer:?}")
    };
    assert!(
        message.contains("pve-2 is not one of this run's targets"),
        "{message}"
    );
    assert_eq!(opener.opened.lock().unwrap().len(), 1);
}
