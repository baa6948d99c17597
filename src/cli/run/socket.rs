//! The run socket: a unix socket in a fresh 0700 directory of this user's, accepting only
//! connections from processes of the same uid (`SO_PEERCRED`), each served by the relay.
//! The directory and the socket go when the run ends.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::{UnixListener, UnixStream};

use super::relay::{self, Opener};

/// The socket's name in its directory.
const SOCKET_NAME: &str = "run.sock";

/// The listening socket and its private directory (removed on drop).
#[derive(Debug)]
pub(crate) struct RunSocket {
    dir: tempfile::TempDir,
    listener: UnixListener,
    uid: u32,
}

impl RunSocket {
    /// Makes a 0700 directory under `parent` (`$XDG_RUNTIME_DIR`, else the temporary
    /// directory) and listens on a socket in it.
    pub(crate) fn bind(parent: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-run-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "cannot make the run's socket directory in {}",
                    parent.display()
                )
            })?;
        // Whatever the umask: owner only.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let path = dir.path().join(SOCKET_NAME);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        Ok(Self {
            dir,
            listener,
            uid: rustix::process::geteuid().as_raw(),
        })
    }

    /// The directory for the socket: `$XDG_RUNTIME_DIR` (private to the user) when set,
    /// else the temporary directory.
    pub(crate) fn default_parent() -> PathBuf {
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty() && Path::new(d).is_dir())
            .map_or_else(std::env::temp_dir, PathBuf::from)
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join(SOCKET_NAME)
    }

    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Accepts connections for ever, each served on its own task; one from another uid is
    /// closed unanswered.
    pub(crate) async fn serve(&self, targets: Arc<Vec<String>>, opener: Arc<dyn Opener>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "the run socket cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(why) = same_user(&stream, self.uid) {
                tracing::warn!("refused a connection to the run socket: {why}");
                continue;
            }
            let targets = targets.clone();
            let opener = opener.clone();
            tokio::spawn(async move {
                relay::serve(stream, &targets, opener.as_ref()).await;
            });
        }
    }
}

/// Whether the peer of `stream` runs as `uid`.
pub(crate) fn same_user(stream: &UnixStream, uid: u32) -> Result<(), String> {
    let cred = stream
        .peer_cred()
        .map_err(|err| format!("cannot read the peer's credentials: {err}"))?;
    peer_allowed(cred.uid(), uid)
}

/// The decision: only the run's own uid.
pub(crate) fn peer_allowed(peer_uid: u32, uid: u32) -> Result<(), String> {
    if peer_uid == uid {
        Ok(())
    } else {
        Err(format!(
            "the peer runs as uid {peer_uid}, the run as uid {uid}"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn only_the_same_uid_is_served() {
        assert!(peer_allowed(1000, 1000).is_ok());
        let err = peer_allowed(0, 1000).unwrap_err();
        assert!(err.contains("uid 0") && err.contains("uid 1000"), "{err}");
    }

    #[tokio::test]
    async fn the_directory_is_private_and_goes_with_the_run() {
        let parent = tempfile::tempdir().unwrap();
        let socket = RunSocket::bind(parent.path()).unwrap();
        let meta = std::fs::metadata(socket.dir()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        assert!(socket.path().starts_with(socket.dir()));
        // A process of ours connects, and the peer check passes for it.
        let client = UnixStream::connect(socket.path()).await.unwrap();
        let (server, _) = socket.listener.accept().await.unwrap();
        assert!(same_user(&server, socket.uid).is_ok());
        assert!(same_user(&client, socket.uid + 1).is_err());
        let dir = socket.dir().to_path_buf();
        drop(socket);
        assert!(
            !dir.exists(),
            "the socket directory is removed with the run"
        );
    }
}
