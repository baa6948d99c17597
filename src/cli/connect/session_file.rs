//! The session hand-off file: what one `portcullis connect` process gives another so that it
//! can open connections of the same session (e.g. ssh's `ProxyCommand` running
//! `portcullis connect TARGET --stdio --session-file PATH`).
//!
//! It holds the session's private key and grant, so it is written mode 0600 (atomically, by
//! `portcullis_files`: a 0600 temporary file renamed into place) and a reader refuses a file
//! that other users could read or write.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// Everything needed to open connections of an authorised session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionFile {
    pub session_id: String,
    /// The target's name or id as the user gave it; for messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `HOST:PORT` of the worker's proxy listener.
    pub worker_addr: String,
    /// Hex SHA-256 of the worker's SPKI, pinned.
    pub worker_key_fingerprint: String,
    /// The signed grant presented to the worker.
    pub grant: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The session's client certificate and PKCS#8 key, PEM.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl fmt::Debug for SessionFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionFile")
            .field("session_id", &self.session_id)
            .field("target", &self.target)
            .field("worker_addr", &self.worker_addr)
            .field("worker_key_fingerprint", &self.worker_key_fingerprint)
            .field("grant", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("client_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Writes `session` to `path` with mode 0600, replacing any file there atomically.
pub(crate) fn write_session_file(path: &Path, session: &SessionFile) -> anyhow::Result<()> {
    let json = zeroize::Zeroizing::new(
        serde_json::to_vec_pretty(session).context("cannot encode the session file")?,
    );
    portcullis_files::write_private_atomic(path, &json)?;
    Ok(())
}

/// A hand-off file this process wrote; removed when dropped (the session ends with us).
#[derive(Debug)]
pub(crate) struct HandoffFile {
    path: PathBuf,
}

impl HandoffFile {
    pub(crate) fn write(path: &Path, session: &SessionFile) -> anyhow::Result<Self> {
        write_session_file(path, session)
            .with_context(|| format!("cannot write the session file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HandoffFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads a hand-off file, refusing one that is not a regular file owned by this user with no
/// access for group or others, and one whose session has expired.
pub(crate) fn read_session_file(path: &Path, now_unix: u64) -> anyhow::Result<SessionFile> {
    let text = read_private(path)?;
    let session: SessionFile = serde_json::from_str(&text).with_context(|| {
        if serde_json::from_str::<RunSessionFile>(&text).is_ok() {
            format!(
                "{} holds a session of a `portcullis run`: only that run's command can join it",
                path.display()
            )
        } else {
            format!("{} is not a Portcullis session file", path.display())
        }
    })?;
    not_expired(&session.session_id, session.expires_at, path, now_unix)?;
    Ok(session)
}

/// The session file `ssh-prepare` writes under `portcullis run`: which session of the run
/// to join through its socket. No key, no grant: the run process holds those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunSessionFile {
    pub run_session: RunSessionRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunSessionRef {
    pub session_id: String,
    pub request_id: String,
    pub target: String,
    pub expires_at: u64,
}

/// What a session file names: a session to join directly, or one of a run's.
#[derive(Debug)]
pub(crate) enum Joinable {
    Direct(SessionFile),
    Run(RunSessionRef),
}

/// Reads either kind of session file, with [`read_session_file`]'s checks.
pub(crate) fn read_joinable(path: &Path, now_unix: u64) -> anyhow::Result<Joinable> {
    let text = read_private(path)?;
    if let Ok(run) = serde_json::from_str::<RunSessionFile>(&text) {
        let run = run.run_session;
        not_expired(&run.session_id, run.expires_at, path, now_unix)?;
        return Ok(Joinable::Run(run));
    }
    read_session_file(path, now_unix).map(Joinable::Direct)
}

/// Writes a run's session file (mode 0600, atomically).
pub(crate) fn write_run_session_file(path: &Path, run: &RunSessionRef) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(&RunSessionFile {
        run_session: run.clone(),
    })
    .context("cannot encode the session file")?;
    portcullis_files::write_private_atomic(path, &json)?;
    Ok(())
}

fn not_expired(id: &str, expires_at: u64, path: &Path, now_unix: u64) -> anyhow::Result<()> {
    if expires_at <= now_unix {
        bail!(
            "session {id} in {} expired at {}",
            path.display(),
            crate::cli::output::time(expires_at)
        );
    }
    Ok(())
}

/// The text of a session file that is a regular file of this user's, 0600 or stricter.
fn read_private(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the session file {}", path.display()))?;
    // Checked on the open file, so the checked file is the file read.
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if !meta.is_file() {
        bail!("the session file {} is not a regular file", path.display());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "refusing the session file {}: other users may access it (mode {mode:03o}) and it \
             holds a session key; it must be 0600 (`chmod 600 {}`)",
            path.display(),
            path.display()
        );
    }
    if let Some(uid) = current_uid() {
        if meta.uid() != uid {
            bail!(
                "refusing the session file {}: it belongs to uid {}, not to you (uid {uid})",
                path.display(),
                meta.uid()
            );
        }
    }
    let mut text = String::new();
    file.take(1 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
}

/// This process's uid, read without `unsafe` from the owner of `/proc/self`.
fn current_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn sample() -> SessionFile {
        SessionFile {
            session_id: "s_1".into(),
            target: Some("web".into()),
            worker_addr: "127.0.0.1:9202".into(),
            worker_key_fingerprint: "ab".repeat(32),
            grant: "eyJ.grant.sig".into(),
            expires_at: 2_000_000_000,
            client_cert_pem: "CERT".into(),
            client_key_pem: "KEY".into(),
        }
    }

    #[test]
    fn written_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        // A lax file already there is replaced, not reused with its mode.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_session_file(&path, &sample()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_session_file(&path, 1_000).unwrap(), sample());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn lax_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        write_session_file(&path, &sample()).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o606] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_session_file(&path, 1_000).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
    }

    #[test]
    fn expired_sessions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        write_session_file(&path, &sample()).unwrap();
        let err = read_session_file(&path, 2_000_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn handoff_file_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let handoff = HandoffFile::write(&path, &sample()).unwrap();
        assert!(path.exists());
        drop(handoff);
        assert!(!path.exists());
    }

    #[test]
    fn a_run_session_file_is_joined_only_through_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        let run = RunSessionRef {
            session_id: "s_9".into(),
            request_id: "ar_1".into(),
            target: "web".into(),
            expires_at: 2_000_000_000,
        };
        write_run_session_file(&path, &run).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("grant"),
            "{text}"
        );
        assert!(matches!(read_joinable(&path, 1_000).unwrap(), Joinable::Run(r) if r == run));
        let err = read_session_file(&path, 1_000).unwrap_err().to_string();
        assert!(err.contains("only that run's command can join it"), "{err}");
        assert!(read_joinable(&path, 2_000_000_000).is_err(), "expired");
        // A direct one reads as such.
        write_session_file(&path, &sample()).unwrap();
        assert!(matches!(
            read_joinable(&path, 1_000).unwrap(),
            Joinable::Direct(_)
        ));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("eyJ") && !text.contains("KEY\""), "{text}");
    }
}
