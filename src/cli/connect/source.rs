//! Where a local listener's connections come from: the session this process authorised (its
//! [`SessionTicket`]: each connection dialled to the worker, with a spare dialled ahead), or
//! a session of the `portcullis run` this process runs under (each connection a `join` on the
//! run socket; the run holds the session's key and grant, this process none).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::io::BufReader;
use tokio::net::UnixStream;

use super::tunnel::SessionTicket;
use crate::cli::run::protocol::{self, Ask};

/// What a listener shows of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct About {
    pub(super) session_id: String,
    pub(super) target: String,
    pub(super) expires_at: u64,
}

impl About {
    pub(super) fn of(ticket: &SessionTicket) -> Self {
        Self {
            session_id: ticket.session_id.clone(),
            target: ticket.target.clone(),
            expires_at: ticket.expires_at,
        }
    }
}

/// The session a listener serves, and how its connections are opened.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// Ours: connections straight to the worker.
    Ticket(Arc<SessionTicket>),
    /// The run's: connections through the run socket.
    Run(Arc<RunJoin>),
}

impl Source {
    pub(super) fn about(&self) -> About {
        match self {
            Self::Ticket(ticket) => About::of(ticket),
            Self::Run(run) => run.about.clone(),
        }
    }

    pub(super) fn expires_at(&self) -> u64 {
        match self {
            Self::Ticket(ticket) => ticket.expires_at,
            Self::Run(run) => run.about.expires_at,
        }
    }
}

/// A session the run opened for this listener: each connection joins it.
#[derive(Debug)]
pub(super) struct RunJoin {
    pub(super) socket: PathBuf,
    pub(super) about: About,
}

/// Why a connection through the run failed, and whether the listener should stop.
#[derive(Debug)]
pub(super) struct JoinFailed {
    pub(super) error: anyhow::Error,
    /// The run socket is gone: the run has ended, and its sessions with it.
    pub(super) run_ended: bool,
}

impl RunJoin {
    /// One more connection of the session: raw bytes to the target follow on the stream.
    pub(super) async fn join(&self) -> Result<BufReader<UnixStream>, JoinFailed> {
        let ask = Ask::Join {
            session_id: self.about.session_id.clone(),
        };
        match protocol::ask(&self.socket, &ask).await {
            Ok((_, stream)) => Ok(stream),
            Err(error) => Err(JoinFailed {
                run_ended: run_is_gone(&error),
                error: error.context(format!(
                    "cannot open a connection of session {} through the run",
                    self.about.session_id
                )),
            }),
        }
    }
}

/// Whether `error` says the run socket is no longer there (nobody listens on it).
fn run_is_gone(error: &anyhow::Error) -> bool {
    error
        .root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            )
        })
}

/// Asks the run at `socket` for a session to `target` for a listener (with the hash of its
/// local secret, for a TCP listener).
pub(super) async fn open_through_run(
    socket: &std::path::Path,
    target: &str,
    local_secret_sha256: Option<String>,
) -> anyhow::Result<protocol::OpenedSession> {
    let ask = Ask::Open {
        target: target.to_owned(),
        local_secret_sha256,
    };
    let (answer, _) = protocol::ask(socket, &ask)
        .await
        .with_context(|| format!("the run opened no session to {target}"))?;
    match answer {
        protocol::Answer::Opened(opened) => Ok(opened),
        other => anyhow::bail!(
            "the `portcullis run` process answered {other:?} to a request for a session: \
             are the run and this command the same version of portcullis?"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_socket_that_is_gone_ends_the_listener() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunJoin {
            socket: dir.path().join("run.sock"),
            about: About {
                session_id: "s_1".into(),
                target: "pve-1".into(),
                expires_at: 2_000_000_000,
            },
        };
        let failed = run.join().await.unwrap_err();
        assert!(failed.run_ended);
        let text = format!("{:#}", failed.error);
        assert!(
            text.contains("session s_1") && text.contains("has the run ended"),
            "{text}"
        );

        // A run that refuses the join (the session is not its own) is not a run that ended.
        let path = dir.path().join("live.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let _ = protocol::read_line(&mut stream).await.unwrap();
            let refused = protocol::Answer::Refused {
                message: "session s_1 is not one of this run's sessions".into(),
            };
            protocol::write_line(&mut stream, &refused).await.unwrap();
        });
        let run = RunJoin {
            socket: path,
            about: run.about.clone(),
        };
        let failed = run.join().await.unwrap_err();
        assert!(!failed.run_ended);
        assert!(format!("{:#}", failed.error).contains("not one of this run's"));
    }

    /// A listener on a run's session: every local connection is a `join` of that session on
    /// the run socket, carrying the bytes both ways; the session's expiry bounds the listener.
    #[tokio::test]
    async fn a_listener_joins_the_runs_session_per_connection() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        use super::super::listen::{self, LocalListener, Stop};

        let dir = tempfile::tempdir().unwrap();
        let run_path = dir.path().join("run.sock");
        let run_socket = tokio::net::UnixListener::bind(&run_path).unwrap();
        let (asks_tx, mut asks) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = run_socket.accept().await.unwrap();
                let asks_tx = asks_tx.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let line = protocol::read_line(&mut stream).await.unwrap();
                    asks_tx
                        .send(serde_json::from_str::<Ask>(&line).unwrap())
                        .unwrap();
                    let answer = protocol::Answer::Connected {
                        session_id: "s_1".into(),
                        expires_at: None,
                    };
                    protocol::write_line(&mut stream, &answer).await.unwrap();
                    // The target: an echo.
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let local = dir.path().join("pve-1.sock");
        let listener = LocalListener::unix(&local).unwrap();
        let source = Source::Run(Arc::new(RunJoin {
            socket: run_path,
            about: About {
                session_id: "s_1".into(),
                target: "pve-1".into(),
                expires_at: 2_000_000_000,
            },
        }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = stop_rx.await;
            "asked".to_owned()
        };
        let served = tokio::spawn(listen::serve(listener, source, stop, false));
        for word in [&b"first"[..], b"second"] {
            let mut client = UnixStream::connect(&local).await.unwrap();
            client.write_all(word).await.unwrap();
            let mut back = vec![0u8; word.len()];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, word);
            let ask = asks.recv().await.unwrap();
            assert_eq!(
                ask,
                Ask::Join {
                    session_id: "s_1".into()
                }
            );
        }
        stop_tx.send(()).unwrap();
        assert_eq!(served.await.unwrap(), Stop::Requested("asked".into()));
    }
}
