//! How Portcullis writes a file that holds a secret (a key, a token, a session's grant) or
//! that a reader must never see half-written.
//!
//! Every such file is written the one way [`write_private_atomic`] does it: the bytes go to a
//! fresh temporary file beside the target (a random name, created exclusively and with mode
//! 0600 from the start, so no other user ever sees it readable and no leftover or planted
//! file or symlink is ever reused), which is flushed to disk, given its final mode, renamed
//! over the target, and the directory is flushed so that the rename survives a crash. A
//! reader sees the old file or the new one, whole, never a mix; a failure leaves the old file
//! and no temporary file behind.
//!
//! A file that holds a secret someone else wrote (a password file) is read the one way
//! [`read_owner_only`] does it: refused when others may read it.
//!
//! This crate does file I/O and nothing else; it sits beside `proto` (which does none) at
//! the bottom of the layering, so the controller, the worker and the CLI share it.
#![forbid(unsafe_code)]

use std::fs::Permissions;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The mode of a private file: read and write for its owner only.
pub const PRIVATE: u32 = 0o600;

/// Why a file could not be written; the old file, if any, is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The directory the file is to go in does not exist.
    #[error("cannot write {path}: its directory {dir} does not exist; create it first")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    /// [`create_private_atomic`] found a file at the path.
    #[error("cannot write {path}: it exists, and it is not replaced")]
    Exists { path: PathBuf },
    /// A step failed (`what` names it: create the temporary file, write, flush, rename...).
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a private file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Its group or others may read it: the secret may already be known to them.
    #[error("its mode is {mode:o}, readable by others: `chmod 600` it")]
    ReadableByOthers { mode: u32 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the text in `path`, which must be readable by its owner only (mode 0600 or
/// stricter). One trailing newline (`\n` or `\r\n`) is not part of the text.
pub fn read_owner_only(path: &Path) -> Result<String, ReadError> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ReadError::ReadableByOthers { mode });
    }
    let mut text = std::fs::read_to_string(path)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Writes `bytes` to `path` with mode 0600, replacing any file there atomically and durably
/// (see the crate documentation).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write(path, bytes, PRIVATE, Existing::Replace)
}

/// [`write_private_atomic`], but fails with [`WriteError::Exists`] when a file is at `path`,
/// even one that appears while this writes: an existing file is never replaced.
pub fn create_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write(path, bytes, PRIVATE, Existing::Keep)
}

/// [`write_private_atomic`] for a file that others may read once it is whole (a certificate,
/// a CA): written privately, given `mode` just before it is renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    write(path, bytes, mode, Existing::Replace)
}

/// What to do with a file already at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Replace,
    Keep,
}

fn write(path: &Path, bytes: &[u8], mode: u32, existing: Existing) -> Result<(), WriteError> {
    let io = |what: &'static str| {
        move |source: std::io::Error| WriteError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(WriteError::NoDirectory {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    let mut prefix = std::ffi::OsString::from(".");
    if let Some(name) = path.file_name() {
        prefix.push(name);
        prefix.push(".");
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(PRIVATE))
        .tempfile_in(dir)
        .map_err(io("create a temporary file for"))?;
    tmp.write_all(bytes).map_err(io("write"))?;
    // The creation mode is masked by the umask; the final mode is set exactly.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(io("set the mode of"))?;
    tmp.as_file().sync_all().map_err(io("flush"))?;
    match existing {
        Existing::Replace => tmp.persist(path).map(drop),
        Existing::Keep => tmp.persist_noclobber(path).map(drop),
    }
    .map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => WriteError::Exists {
            path: path.to_path_buf(),
        },
        _ => io("rename a temporary file onto")(e.error),
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("flush the directory of"))
}

#[cfg(test)]
mod tests;
