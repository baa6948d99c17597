//! The recordings store: session recordings kept apart from the hot path, so that chunks
//! streaming in never hold the connection authorize-session waits for.
//!
//! On SQLite it is a database file of its own (`<name>-recordings.db` beside the main one,
//! or `[recordings] store_url`), with its own single writer; on PostgreSQL the same tables
//! of the shared database through a connection pool of its own, so that every controller on
//! that database serves every recording. Its migrations (`migrations/*/1001_recordings.sql`)
//! number from 1001: in a shared PostgreSQL database they sit in the main store's migration
//! table too, which knows them for that reason (`store::POSTGRES_MIGRATIONS`).
//!
//! Chunk rows are not audited one by one (they live in another database than the audit
//! chain): what is audited is the head of each recording, sealed into the chain as it
//! advances (`recording_checkpoint`, `recording_finished`), and each deletion by the
//! retention (`recording_deleted`), which is recorded before the rows go.

use std::borrow::Cow;

use sqlx::any::AnyRow;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::Row as _;

use super::{Dialect, Result, Store, StoreError};
use crate::clock::to_i64;
use crate::secret::{ExposeSecret as _, SecretString};

/// The migrations of the recordings store, for either backend.
pub(crate) const SQLITE: (i64, &str, &str) = (
    1001,
    "recordings",
    include_str!("../../../migrations/sqlite/1001_recordings.sql"),
);
pub(crate) const POSTGRES: (i64, &str, &str) = (
    1001,
    "recordings",
    include_str!("../../../migrations/postgres/1001_recordings.sql"),
);

/// A recording as the store holds it: where its chain stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordingRow {
    pub id: String,
    pub session_id: String,
    pub connection_id: String,
    pub worker_id: String,
    /// Chunks stored, `0..chunks`: the next seq expected.
    pub chunks: u64,
    /// Body bytes of those chunks.
    pub bytes: u64,
    /// Hex SHA-256 of chunk `chunks - 1` (empty before the first).
    pub head_hash: String,
    /// The final chunk is stored.
    pub finished: bool,
    pub first_at: i64,
    pub last_at: i64,
    /// Chunks covered by the newest head sealed into the audit chain.
    pub sealed_chunks: u64,
    pub sealed_at: Option<i64>,
}

/// A stored chunk: its metadata in the clear, its canonical bytes sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkRow {
    pub recording_id: String,
    pub seq: u64,
    pub channel: u32,
    /// `asciicast` or `events`.
    pub kind: String,
    pub finished: bool,
    pub body_len: u64,
    /// Hex SHA-256 of the canonical bytes.
    pub chunk_hash: String,
    /// The canonical bytes sealed under `key_id` (`recordings::crypt`).
    pub ciphertext: Vec<u8>,
    pub key_id: String,
    pub stored_at: i64,
}

/// A chunk to append, with the recording it belongs to.
pub(crate) struct NewChunk<'a> {
    pub session_id: &'a str,
    pub worker_id: &'a str,
    pub row: ChunkRow,
}

/// The recordings' database.
#[derive(Clone, Debug)]
pub(crate) struct RecordingStore {
    store: Store,
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The SQLite URL of the recordings file beside the main store's: `-recordings` added to the
/// file's stem (`/var/lib/portcullis/portcullis.db` → `.../portcullis-recordings.db`), the
/// query (a named in-memory database's `mode=memory`) kept.
pub(crate) fn url_beside(main: &str) -> String {
    let (path, query) = match main.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (main, None),
    };
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    let dot = path[name_start..]
        .rfind('.')
        .filter(|&i| i > 0)
        .map(|i| name_start + i);
    let mut url = match dot {
        Some(dot) => format!("{}-recordings{}", &path[..dot], &path[dot..]),
        None => format!("{path}-recordings"),
    };
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

impl RecordingStore {
    /// Connects to `own_url` if set, else beside the main store: a file of its own on
    /// SQLite, a pool of its own on the same PostgreSQL database. Applies its migrations.
    pub(crate) async fn open(
        main_url: &SecretString,
        own_url: Option<&SecretString>,
        max_connections: u32,
    ) -> Result<RecordingStore> {
        let url = match own_url {
            Some(url) => url.clone(),
            None if main_url.expose_secret().starts_with("sqlite:") => {
                SecretString::from(url_beside(main_url.expose_secret()))
            }
            None => main_url.clone(),
        };
        let store = Store::connect(&url, max_connections).await?;
        let recordings = RecordingStore { store };
        recordings.migrate().await?;
        Ok(recordings)
    }

    async fn migrate(&self) -> Result<()> {
        let (version, description, sql) = match self.store.dialect() {
            Dialect::Sqlite => SQLITE,
            Dialect::Postgres => POSTGRES,
        };
        let migrator = Migrator {
            migrations: Cow::Owned(vec![Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )]),
            // In a shared PostgreSQL database the main store's migrations are there too.
            ignore_missing: true,
            ..Migrator::DEFAULT
        };
        migrator
            .run(self.store.pool())
            .await
            .map_err(|e| StoreError::Migrate(format!("recordings store: {e}")))
    }

    pub(crate) async fn close(&self) {
        self.store.close().await;
    }

    /// The recording `id`, if any chunk of it is stored.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<RecordingRow>> {
        let mut conn = self.store.conn().await?;
        let row = sqlx::query(&format!("SELECT {RECORDING} FROM recordings WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(recording).transpose()
    }

    /// The recordings of a session, oldest first.
    pub(crate) async fn of_session(&self, session_id: &str) -> Result<Vec<RecordingRow>> {
        let mut conn = self.store.conn().await?;
        let rows = sqlx::query(&format!(
            "SELECT {RECORDING} FROM recordings WHERE session_id = $1 ORDER BY first_at, id"
        ))
        .bind(session_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(recording).collect()
    }

    /// Recordings whose newest chunks are not sealed into the audit chain yet.
    pub(crate) async fn unsealed(&self, limit: u32) -> Result<Vec<RecordingRow>> {
        let mut conn = self.store.conn().await?;
        let rows = sqlx::query(&format!(
            "SELECT {RECORDING} FROM recordings WHERE sealed_chunks < chunks \
             ORDER BY last_at, id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(recording).collect()
    }

    /// Every recording, oldest first (the retention's order).
    pub(crate) async fn oldest_first(&self, limit: u32) -> Result<Vec<RecordingRow>> {
        let mut conn = self.store.conn().await?;
        let rows = sqlx::query(&format!(
            "SELECT {RECORDING} FROM recordings ORDER BY first_at, id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(recording).collect()
    }

    /// The body bytes of every stored recording.
    pub(crate) async fn total_bytes(&self) -> Result<u64> {
        let mut conn = self.store.conn().await?;
        let row =
            sqlx::query("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS total FROM recordings")
                .fetch_one(&mut *conn)
                .await?;
        Ok(unsigned(row.try_get("total")?))
    }

    /// The stored hash of chunk `seq`, if stored.
    pub(crate) async fn chunk_hash(&self, id: &str, seq: u64) -> Result<Option<String>> {
        let mut conn = self.store.conn().await?;
        let row = sqlx::query(
            "SELECT chunk_hash FROM recording_chunks WHERE recording_id = $1 AND seq = $2",
        )
        .bind(id)
        .bind(to_i64(seq))
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| Ok(r.try_get("chunk_hash")?)).transpose()
    }

    /// Chunks `from..` of a recording in seq order, at most `limit`.
    pub(crate) async fn chunks(&self, id: &str, from: u64, limit: u32) -> Result<Vec<ChunkRow>> {
        let mut conn = self.store.conn().await?;
        let rows = sqlx::query(&format!(
            "SELECT {CHUNK} FROM recording_chunks WHERE recording_id = $1 AND seq >= $2 \
             ORDER BY seq LIMIT $3"
        ))
        .bind(id)
        .bind(to_i64(from))
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(chunk).collect()
    }

    /// Appends a chunk if it is the next of its recording (the recording row is created by
    /// chunk 0): false when another append got there first or the recording is final, and
    /// nothing was written.
    pub(crate) async fn append(&self, new: &NewChunk<'_>) -> Result<bool> {
        let c = &new.row;
        let mut tx = self.store.begin().await?;
        if c.seq == 0 {
            let created = sqlx::query(
                "INSERT INTO recordings (id, session_id, connection_id, worker_id, chunks, bytes, \
                 head_hash, final, first_at, last_at, sealed_chunks, sealed_at) \
                 VALUES ($1, $2, $3, $4, 0, 0, '', 0, $5, $5, 0, NULL)",
            )
            .bind(&c.recording_id)
            .bind(new.session_id)
            .bind(&c.recording_id)
            .bind(new.worker_id)
            .bind(c.stored_at)
            .execute(&mut *tx)
            .await;
            match created.map_err(StoreError::from) {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        let moved = sqlx::query(
            "UPDATE recordings SET chunks = chunks + 1, bytes = bytes + $3, head_hash = $4, \
             final = $5, last_at = $6 WHERE id = $1 AND chunks = $2 AND final = 0",
        )
        .bind(&c.recording_id)
        .bind(to_i64(c.seq))
        .bind(to_i64(c.body_len))
        .bind(&c.chunk_hash)
        .bind(i64::from(c.finished))
        .bind(c.stored_at)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO recording_chunks ({CHUNK}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&c.recording_id)
        .bind(to_i64(c.seq))
        .bind(i64::from(c.channel))
        .bind(&c.kind)
        .bind(i64::from(c.finished))
        .bind(to_i64(c.body_len))
        .bind(&c.chunk_hash)
        .bind(&c.ciphertext)
        .bind(&c.key_id)
        .bind(c.stored_at)
        .execute(&mut *tx)
        .await;
        match inserted.map_err(StoreError::from) {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Notes that the head covering `chunks` chunks was sealed into the audit chain at `at`
    /// (never moves back).
    pub(crate) async fn mark_sealed(&self, id: &str, chunks: u64, at: i64) -> Result<()> {
        let mut conn = self.store.conn().await?;
        sqlx::query(
            "UPDATE recordings SET sealed_chunks = $2, sealed_at = $3 \
             WHERE id = $1 AND sealed_chunks <= $2",
        )
        .bind(id)
        .bind(to_i64(chunks))
        .bind(at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Deletes a recording and its chunks; false if it was gone.
    pub(crate) async fn delete(&self, id: &str) -> Result<bool> {
        let mut tx = self.store.begin().await?;
        sqlx::query("DELETE FROM recording_chunks WHERE recording_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM recordings WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Overwrites a stored chunk's ciphertext: what an attacker with the database could do.
    #[cfg(test)]
    pub(crate) async fn tamper(&self, id: &str, seq: u64, ciphertext: &[u8]) -> Result<()> {
        let mut conn = self.store.conn().await?;
        sqlx::query(
            "UPDATE recording_chunks SET ciphertext = $3 WHERE recording_id = $1 AND seq = $2",
        )
        .bind(id)
        .bind(to_i64(seq))
        .bind(ciphertext)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

const RECORDING: &str = "id, session_id, connection_id, worker_id, chunks, bytes, head_hash, \
    final, first_at, last_at, sealed_chunks, sealed_at";
const CHUNK: &str = "recording_id, seq, channel, kind, final, body_len, chunk_hash, ciphertext, \
    key_id, stored_at";

fn recording(row: &AnyRow) -> Result<RecordingRow> {
    Ok(RecordingRow {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        connection_id: row.try_get("connection_id")?,
        worker_id: row.try_get("worker_id")?,
        chunks: unsigned(row.try_get("chunks")?),
        bytes: unsigned(row.try_get("bytes")?),
        head_hash: row.try_get("head_hash")?,
        finished: row.try_get::<i64, _>("final")? != 0,
        first_at: row.try_get("first_at")?,
        last_at: row.try_get("last_at")?,
        sealed_chunks: unsigned(row.try_get("sealed_chunks")?),
        sealed_at: row.try_get("sealed_at")?,
    })
}

fn chunk(row: &AnyRow) -> Result<ChunkRow> {
    Ok(ChunkRow {
        recording_id: row.try_get("recording_id")?,
        seq: unsigned(row.try_get("seq")?),
        channel: u32::try_from(row.try_get::<i64, _>("channel")?)
            .map_err(|_| StoreError::Corrupt("recording_chunks.channel is out of range".into()))?,
        kind: row.try_get("kind")?,
        finished: row.try_get::<i64, _>("final")? != 0,
        body_len: unsigned(row.try_get("body_len")?),
        chunk_hash: row.try_get("chunk_hash")?,
        ciphertext: row.try_get("ciphertext")?,
        key_id: row.try_get("key_id")?,
        stored_at: row.try_get("stored_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::url_beside;

    #[test]
    fn the_recordings_file_sits_beside_the_main_one() {
        assert_eq!(
            url_beside("sqlite:///var/lib/portcullis/portcullis.db"),
            "sqlite:///var/lib/portcullis/portcullis-recordings.db"
        );
        assert_eq!(
            url_beside("sqlite://state/main.sqlite3?mode=rwc"),
            "sqlite://state/main-recordings.sqlite3?mode=rwc"
        );
        assert_eq!(
            url_beside("sqlite://api-test-3?mode=memory&cache=shared"),
            "sqlite://api-test-3-recordings?mode=memory&cache=shared"
        );
        assert_eq!(
            url_beside("sqlite:///srv/v1.2/db"),
            "sqlite:///srv/v1.2/db-recordings"
        );
        assert_eq!(url_beside("sqlite:p.db"), "sqlite:p-recordings.db");
    }
}
