//! The run socket's protocol (`PORTCULLIS_RUN_SOCKET`): one JSON line per connection from
//! the command ([`Ask`]), one JSON line back ([`Answer`]); after `connected`, raw bytes both
//! ways to the target. The socket carries no key, token or grant: the run process opens the
//! worker connections itself.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use portcullis_policy::SshMode;
use portcullis_proto::pve::ProxmoxSession;
use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::UnixStream;

use portcullis_proto::access::RUN_SOCKET_ENV;

/// The longest line either side reads.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// What the command asks of its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Ask {
    /// A new session to `target` and one connection of it, carried on this socket.
    Connect { target: String },
    /// A new session to `target` that certifies `ssh_public_key` (for `ssh-prepare`):
    /// answered with what ssh needs, then closed.
    PrepareSsh {
        target: String,
        ssh_public_key: String,
    },
    /// One more connection of a session this run opened, carried on this socket.
    Join { session_id: String },
    /// A new session to `target` for a local listener of `connect` (each of its connections
    /// then a [`Ask::Join`]): answered with [`Answer::Opened`], then closed. A TCP listener
    /// sends the SHA-256 of its local secret (a Proxmox API target's worker requires the
    /// secret on every request); the secret itself stays with the listener.
    Open {
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local_secret_sha256: Option<String>,
    },
}

/// The run's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    /// The connection is open: raw bytes follow.
    Connected {
        session_id: String,
        /// When the session ends (for a new session; a joined one's the joiner knows).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    Prepared(SshPrepared),
    /// The session of an [`Ask::Open`].
    Opened(OpenedSession),
    /// Refused, and why (for people).
    Refused {
        message: String,
    },
}

/// A session opened for a listener: what it shows and how it serves the session. No
/// secret, key or grant (the run keeps those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OpenedSession {
    pub session_id: String,
    pub expires_at: u64,
    /// For an injecting Proxmox API target: the session's token id, roles and paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<ProxmoxSession>,
}

/// What `ssh-prepare` writes for ssh: no private key (ssh's own key stays with ssh-prepare).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SshPrepared {
    pub session_id: String,
    pub request_id: String,
    pub target: String,
    pub expires_at: u64,
    pub login: Option<String>,
    pub ssh_mode: SshMode,
    pub alias: String,
    pub known_hosts: String,
    pub certificate: Option<String>,
}

/// The run socket named in the environment, if this process runs under `portcullis run`.
pub(crate) fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os(RUN_SOCKET_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads one line (without its newline) of at most [`MAX_LINE`] bytes.
pub(crate) async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
    limited.read_until(b'\n', &mut line).await?;
    if line.len() > MAX_LINE {
        bail!("the line is longer than {MAX_LINE} bytes");
    }
    if line.pop() != Some(b'\n') {
        bail!("the connection closed before the end of the line");
    }
    String::from_utf8(line).context("the line is not UTF-8")
}

/// Writes `value` as one JSON line.
pub(crate) async fn write_line<W, T>(writer: &mut W, value: &T) -> anyhow::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let mut line = serde_json::to_vec(value).context("cannot encode the message")?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.flush().await?;
    Ok(())
}

/// Asks the run at `socket`; returns its answer (a refusal is an error worded for people)
/// and the stream, on which raw bytes follow a `connected`.
pub(crate) async fn ask(
    socket: &Path,
    ask: &Ask,
) -> anyhow::Result<(Answer, BufReader<UnixStream>)> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the `portcullis run` socket {} ({RUN_SOCKET_ENV}): has the run ended?",
            socket.display()
        )
    })?;
    let mut stream = BufReader::new(stream);
    write_line(&mut stream, ask)
        .await
        .context("cannot ask the `portcullis run` process")?;
    let line = read_line(&mut stream)
        .await
        .context("the `portcullis run` process did not answer")?;
    let answer: Answer = serde_json::from_str(&line)
        .context("the `portcullis run` process answered something this CLI does not understand")?;
    if let Answer::Refused { message } = answer {
        bail!("{message}");
    }
    Ok((answer, stream))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn asks_read_back_and_refuse_unknown_fields() {
        let ask = Ask::PrepareSsh {
            target: "web".into(),
            ssh_public_key: "ssh-ed25519 AAAA".into(),
        };
        let line = serde_json::to_string(&ask).unwrap();
        assert_eq!(
            line,
            r#"{"prepare_ssh":{"target":"web","ssh_public_key":"ssh-ed25519 AAAA"}}"#
        );
        assert_eq!(serde_json::from_str::<Ask>(&line).unwrap(), ask);
        assert!(serde_json::from_str::<Ask>(r#"{"connect":{"target":"w","token":"t"}}"#).is_err());
        // A listener's ask carries the hash of its local secret, never the secret.
        let ask = Ask::Open {
            target: "pve-1".into(),
            local_secret_sha256: Some("ab".repeat(32)),
        };
        let line = serde_json::to_string(&ask).unwrap();
        assert!(line.starts_with(r#"{"open":{"target":"pve-1","local_secret_sha256":""#));
        assert_eq!(serde_json::from_str::<Ask>(&line).unwrap(), ask);
        assert!(
            serde_json::from_str::<Ask>(r#"{"open":{"target":"w","local_secret":"s"}}"#).is_err()
        );
        let unix = Ask::Open {
            target: "pve-1".into(),
            local_secret_sha256: None,
        };
        assert_eq!(
            serde_json::to_string(&unix).unwrap(),
            r#"{"open":{"target":"pve-1"}}"#
        );
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut reader = BufReader::new(&long[..]);
        assert!(read_line(&mut reader).await.is_err());
        let mut reader = BufReader::new(&b"{\"a\":1}\nrest"[..]);
        assert_eq!(read_line(&mut reader).await.unwrap(), "{\"a\":1}");
        let mut reader = BufReader::new(&b"no newline"[..]);
        assert!(read_line(&mut reader).await.is_err());
    }
}
