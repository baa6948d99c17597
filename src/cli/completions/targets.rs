//! Target names for the shell's completion: `GET /v1/targets` with the CLI's usual settings,
//! remembered for a minute in a 0600 file of this user's, and nothing at all (no output, no
//! wait longer than a second) when the controller cannot be asked.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use clap_complete::engine::CompletionCandidate;
use portcullis_proto::api::{List, Target};
use serde::{Deserialize, Serialize};

use crate::cli::http::{ApiClient, ClientArgs};

/// How long a fetched list is offered again without asking the controller.
const FRESH_FOR: u64 = 60;
/// How long a Tab may wait for the controller.
const DEADLINE: Duration = Duration::from_secs(1);
const FILE_NAME: &str = "completion-targets.json";

/// What the cache file holds: the names one controller listed, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Cached {
    pub addr: String,
    pub fetched_at: u64,
    pub names: Vec<String>,
}

impl Cached {
    /// Whether this list answers for `addr` at `now`.
    pub(super) fn fresh_for(&self, addr: &str, now: u64) -> bool {
        self.addr == addr && now >= self.fetched_at && now - self.fetched_at < FRESH_FOR
    }
}

/// The settings a command would use, from the environment and the login files alone.
#[derive(clap::Parser, Debug)]
struct FromEnv {
    #[command(flatten)]
    client: ClientArgs,
}

/// The candidates: every target name the user may see. Errors are swallowed on purpose: a
/// completion that fails offers nothing.
pub(super) fn candidates() -> Vec<CompletionCandidate> {
    names()
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

fn names() -> Option<Vec<String>> {
    let settings = FromEnv::try_parse_from(["portcullis"])
        .ok()?
        .client
        .resolve()
        .ok()?;
    // Keyed by the address the client would ask (`ApiClient::addr`).
    let client = ApiClient::new(settings).ok()?;
    let addr = client.addr().to_owned();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let file = cache_dir().map(|d| d.join(FILE_NAME));
    if let Some(cached) = file.as_deref().and_then(read_cache) {
        if cached.fresh_for(&addr, now) {
            return Some(cached.names);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let list: List<Target> = runtime
        .block_on(async { tokio::time::timeout(DEADLINE, client.get("/v1/targets")).await })
        .ok()?
        .ok()?;
    let names: Vec<String> = list.items.into_iter().map(|t| t.name).collect();
    if let Some(file) = file {
        let cached = Cached {
            addr,
            fetched_at: now,
            names: names.clone(),
        };
        // A cache that cannot be written only means asking again next time.
        let _ = write_cache(&file, &cached);
    }
    Some(names)
}

/// `$XDG_RUNTIME_DIR/portcullis`, else `~/.cache/portcullis`.
fn cache_dir() -> Option<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(std::env::var_os("XDG_RUNTIME_DIR"))
        .map(|d| d.join("portcullis"))
        .or_else(|| absolute(std::env::var_os("HOME")).map(|h| h.join(".cache/portcullis")))
}

fn read_cache(file: &Path) -> Option<Cached> {
    let text = std::fs::read(file).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Replaces the cache file with a new 0600 one (in a 0700 directory).
fn write_cache(file: &Path, cached: &Cached) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = file.parent().ok_or(std::io::ErrorKind::NotFound)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // tempfile creates its files 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, cached)?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(at: u64) -> Cached {
        Cached {
            addr: "https://127.0.0.1:9200".into(),
            fetched_at: at,
            names: vec!["echo".into()],
        }
    }

    #[test]
    fn a_list_is_fresh_for_a_minute_and_one_controller() {
        let c = cached(1000);
        assert!(c.fresh_for("https://127.0.0.1:9200", 1000));
        assert!(c.fresh_for("https://127.0.0.1:9200", 1059));
        assert!(!c.fresh_for("https://127.0.0.1:9200", 1060));
        assert!(!c.fresh_for("https://127.0.0.1:9201", 1001));
        // A clock set back does not keep an old list forever.
        assert!(!c.fresh_for("https://127.0.0.1:9200", 999));
    }

    #[test]
    fn the_cache_file_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("portcullis").join(FILE_NAME);
        write_cache(&file, &cached(5)).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(read_cache(&file), Some(cached(5)));
        std::fs::write(&file, "not json").unwrap();
        assert_eq!(read_cache(&file), None);
    }
}
