//! `manifest.json`: what a backup holds and how to check it (parsed, never trusted: every
//! name, hash and version is checked before a restore reads anything else).

use portcullis_audit::verify::Head;
use serde::{Deserialize, Serialize};

/// The file's name in a backup.
pub(crate) const FILE: &str = "manifest.json";
/// The SQLite snapshot of the main store.
pub(crate) const STORE_FILE: &str = "store.db";
/// The SQLite snapshot of the recordings store, when it is a file of its own.
pub(crate) const RECORDINGS_FILE: &str = "recordings.db";
/// Where the operator's `pg_dump` writes a PostgreSQL store (not hashed: written later).
pub(crate) const PGDUMP_FILE: &str = "store.pgdump";
const FORMAT: &str = "portcullis-backup";
const VERSION: u32 = 1;
/// The largest manifest read.
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The store's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// One file of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

/// For a PostgreSQL store: the commands that copy the database and put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSteps {
    /// Run after the backup: writes `store.pgdump` into the backup.
    pub dump: String,
    /// Run before `controller restore`, into a new, empty database.
    pub restore: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub portcullis_version: String,
    /// The newest migration of the store's schema.
    pub schema_version: i64,
    /// RFC 3339.
    pub created_at: String,
    pub store: StoreKind,
    pub files: Vec<FileEntry>,
    /// The audit chain's head in the snapshot (for PostgreSQL: when the backup ran; the dump
    /// taken afterwards reaches at least as far).
    pub audit_head: Head,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSteps>,
}

impl Manifest {
    /// A new manifest of this version.
    pub(crate) fn new(
        schema_version: i64,
        created_at: String,
        store: StoreKind,
        files: Vec<FileEntry>,
        audit_head: Head,
        postgres: Option<PostgresSteps>,
    ) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            portcullis_version: env!("CARGO_PKG_VERSION").into(),
            schema_version,
            created_at,
            store,
            files,
            audit_head,
            postgres,
        }
    }

    /// Parses and checks a manifest: its format and version, that it names exactly the
    /// files its store kind has (each once, by a plain name), with hex hashes.
    pub(crate) fn parse(text: &str) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if m.format != FORMAT || m.version != VERSION {
            return Err(format!(
                "format {:?} version {}; this version reads {FORMAT:?} version {VERSION}",
                m.format, m.version
            ));
        }
        let mut expected = vec![super::sealed::FILE];
        if m.store == StoreKind::Sqlite {
            expected.push(STORE_FILE);
        }
        let optional = [RECORDINGS_FILE];
        for name in &expected {
            if m.file(name).is_none() {
                return Err(format!("it lists no {name}"));
            }
        }
        for (i, f) in m.files.iter().enumerate() {
            if !expected.contains(&f.name.as_str()) && !optional.contains(&f.name.as_str()) {
                return Err(format!("it lists an unexpected file {:?}", f.name));
            }
            if m.files[..i].iter().any(|g| g.name == f.name) {
                return Err(format!("it lists {} twice", f.name));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("the hash of {} is not hex SHA-256", f.name));
            }
        }
        if m.store == StoreKind::Postgres && m.file(RECORDINGS_FILE).is_some() {
            return Err("a PostgreSQL backup holds no recordings file".into());
        }
        Ok(m)
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The file's text.
    pub(crate) fn to_text(&self) -> Result<String, serde_json::Error> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}
