//! One connection on the run socket: read the command's [`Ask`], have the [`Opener`] open
//! the session (only to the run's targets) or a connection of one it opened, answer, and
//! carry the bytes. The opener is a trait object so that the relay is tested without a
//! controller or a worker.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use portcullis_proto::pve::ProxmoxSession;

use super::protocol::{read_line, write_line, Answer, Ask, OpenedSession, SshPrepared};

/// How long a command may take to send its one line.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream to the target (through the worker), as the opener hands it over.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A session opened for the command: its id and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    pub session_id: String,
    pub expires_at: u64,
    /// For an injecting Proxmox API target.
    pub proxmox: Option<ProxmoxSession>,
}

/// What opens sessions and connections for the run (the controller and workers, for real).
/// Errors are messages for the command's user.
pub(crate) trait Opener: Send + Sync {
    /// Authorises a session to `target` under the run (with the hash of a TCP listener's
    /// local secret, for `connect --listen-port` or `--exec`).
    fn open<'a>(
        &'a self,
        target: &'a str,
        local_secret_sha256: Option<String>,
    ) -> BoxFuture<'a, Result<Opened, String>>;
    /// Authorises a session to `target` that certifies `ssh_public_key`.
    fn prepare_ssh<'a>(
        &'a self,
        target: &'a str,
        ssh_public_key: &'a str,
    ) -> BoxFuture<'a, Result<SshPrepared, String>>;
    /// One more connection of a session this run opened (any other is refused).
    fn connect<'a>(&'a self, session_id: &'a str)
        -> BoxFuture<'a, Result<Box<dyn Stream>, String>>;
}

/// Serves one accepted connection to its end. `targets` are the run's (as the request names
/// them): a session to anything else is refused here (the controller refuses it anyway).
pub(crate) async fn serve<S>(stream: S, targets: &[String], opener: &dyn Opener)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    let ask = match tokio::time::timeout(ASK_TIMEOUT, read_line(&mut stream)).await {
        Ok(Ok(line)) => serde_json::from_str::<Ask>(&line)
            .map_err(|err| format!("not a request this run understands: {err}")),
        Ok(Err(err)) => Err(format!("cannot read the request: {err:#}")),
        Err(_) => Err("no request within 10 s".to_owned()),
    };
    let answered = match ask {
        Ok(ask) => answer(ask, targets, opener).await,
        Err(message) => Err(message),
    };
    match answered {
        Ok((answer, connection)) => {
            if write_line(&mut stream, &answer).await.is_err() {
                return;
            }
            if let Some(mut connection) = connection {
                let mut local = stream;
                if let Err(err) = tokio::io::copy_bidirectional(&mut local, &mut connection).await {
                    tracing::debug!(error = %err, "a run connection ended with an error");
                }
            }
        }
        Err(message) => {
            tracing::info!("refused a request of the run's command: {message}");
            let _ = write_line(&mut stream, &Answer::Refused { message }).await;
        }
    }
}

type Answered = (Answer, Option<Box<dyn Stream>>);

async fn answer(ask: Ask, targets: &[String], opener: &dyn Opener) -> Result<Answered, String> {
    match ask {
        Ask::Connect { target } => {
            check_target(&target, targets)?;
            let opened = opener.open(&target, None).await?;
            let connection = opener.connect(&opened.session_id).await?;
            Ok((
                Answer::Connected {
                    session_id: opened.session_id,
                    expires_at: Some(opened.expires_at),
                },
                Some(connection),
            ))
        }
        Ask::PrepareSsh {
            target,
            ssh_public_key,
        } => {
            check_target(&target, targets)?;
            let prepared = opener.prepare_ssh(&target, &ssh_public_key).await?;
            Ok((Answer::Prepared(prepared), None))
        }
        Ask::Open {
            target,
            local_secret_sha256,
        } => {
            check_target(&target, targets)?;
            let opened = opener.open(&target, local_secret_sha256).await?;
            let answer = Answer::Opened(OpenedSession {
                session_id: opened.session_id,
                expires_at: opened.expires_at,
                proxmox: opened.proxmox,
            });
            Ok((answer, None))
        }
        Ask::Join { session_id } => {
            let connection = opener.connect(&session_id).await?;
            Ok((
                Answer::Connected {
                    session_id,
                    expires_at: None,
                },
                Some(connection),
            ))
        }
    }
}

/// Refuses a target outside the run's list, naming the list.
pub(crate) fn check_target(target: &str, targets: &[String]) -> Result<(), String> {
    if targets.iter().any(|t| t == target) {
        return Ok(());
    }
    Err(format!(
        "{target} is not one of this run's targets ({}): start the run with --targets naming it",
        targets.join(", ")
    ))
}

#[cfg(test)]
mod tests;
