//! The file work of a backup and a restore: private directories and files, hashes while
//! copying, bounded reads, the SQLite path of a store URL, and shell quoting for the
//! commands printed.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use portcullis_crypto::digest::Sha256;

use super::BackupError;

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.display().to_string();
    move |source| BackupError::Io { what, path, source }
}

/// Makes `dir` ready for a backup: created with mode 0700, or an existing empty directory
/// narrowed to 0700. Returns whether it was created (what a failed backup removes).
pub(crate) fn prepare_dir(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = dir.symlink_metadata().map_err(io("read", dir))?;
            let empty = meta.is_dir()
                && std::fs::read_dir(dir)
                    .map_err(io("list", dir))?
                    .next()
                    .is_none();
            if !empty {
                return Err(BackupError::Refused(format!(
                    "{} exists and is not an empty directory: give a new directory to --out \
                     (a backup never mixes with other files)",
                    dir.display()
                )));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io("set the mode of", dir))?;
            Ok(false)
        }
        Err(e) => Err(io("create the directory", dir)(e)),
    }
}

/// A new empty file, mode 0600 (`VACUUM INTO` fills an empty file it finds).
pub(crate) fn create_empty_private(path: &Path) -> Result<(), BackupError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(io("create", path))
}

/// SHA-256 (hex) and size of the file at `path`.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut sha = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(sha.finish()), size))
}

/// Copies `from` to the new file `to` (mode 0600, flushed to disk); returns the copy's
/// SHA-256 (hex) and size, hashed as written.
pub(crate) fn copy_private(from: &Path, to: &Path) -> Result<(String, u64), BackupError> {
    let mut src = File::open(from).map_err(io("open", from))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io("create", to))?;
    let mut sha = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).map_err(io("read", from))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(io("write", to))?;
        size += n as u64;
    }
    dst.sync_all().map_err(io("flush", to))?;
    Ok((hex::encode(sha.finish()), size))
}

/// The text of a small file, refused above `limit` bytes.
pub(crate) fn read_small(path: &Path, limit: u64) -> Result<String, BackupError> {
    let file = File::open(path).map_err(io("open", path))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(io("read", path))?;
    if text.len() as u64 > limit {
        return Err(BackupError::Malformed {
            path: path.display().to_string(),
            message: format!("larger than {limit} bytes"),
        });
    }
    Ok(text)
}

/// Flushes a directory's entries (a rename into it) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("flush the directory", dir))
}

/// The database file a `sqlite:` URL names.
pub(crate) fn sqlite_path(url: &str) -> Result<PathBuf, BackupError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| BackupError::Refused(format!("store.url is not a SQLite URL: {e}")))?;
    Ok(opts.get_filename().to_owned())
}

/// `text` as one word for a POSIX shell.
pub(crate) fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
