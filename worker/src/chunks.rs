//! Recording chunks waiting for the controller's acknowledgement, kept on disk so that a lost
//! link or a worker restart loses none (the gateway's recordings, `gateway::record`).
//!
//! Each chunk is one file in `STATE_DIR/recordings/`, written atomically with mode 0600
//! before the chunk counts as recorded, and named
//! `SESSION.CONNECTION.RECORDING.SEQ.chunk` (ids are letters, digits, `_` and `-`, so the
//! dots separate them), so that a restarted worker finds what it still has to send. A chunk
//! is deleted only when the controller answers `stored` or `refused`; `later`, or an answer
//! from a controller that does not store recordings yet, keeps it and the spool retries
//! after a back-off. The link asks for a batch only when it has nothing else to send
//! ([`ChunkSpool::ready`], [`ChunkSpool::batch`]).
//!
//! The spool holds at most `recording.spool_max_bytes` of chunks: a write beyond it fails
//! ([`SpoolError::Full`]), which the recording reports. Writes run on the blocking pool (the
//! writer is the recording's own task, never a runtime thread); the link reads at most one
//! batch (≤ [`MAX_BATCH_BYTES`]) of small files and deletes acknowledged ones itself, both
//! quick local operations on files the page cache usually still holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use portcullis_proto::recording::{ChunkAck, ChunkOutcome, SpooledChunk};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most chunk bytes one `recording_chunks` request carries: a link frame is at most
/// 1 MiB, and base64 grows the bytes by a third.
pub(crate) const MAX_BATCH_BYTES: usize = 512 * 1024;
/// How long the spool waits before sending again chunks the controller answered `later`.
const LATER_BACK_OFF: Duration = Duration::from_secs(1);
/// How long it waits after a controller that does not store recordings answered an error.
const ERROR_BACK_OFF: Duration = Duration::from_secs(5);
const SUFFIX: &str = ".chunk";

/// The ids a chunk is filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkName {
    pub(crate) session_id: String,
    pub(crate) connection_id: String,
    pub(crate) recording_id: String,
    pub(crate) seq: u64,
}

impl ChunkName {
    fn file_name(&self) -> Result<String, SpoolError> {
        for id in [&self.session_id, &self.connection_id, &self.recording_id] {
            if !is_id(id) {
                return Err(SpoolError::BadName(id.clone()));
            }
        }
        Ok(format!(
            "{}.{}.{}.{:020}{SUFFIX}",
            self.session_id, self.connection_id, self.recording_id, self.seq
        ))
    }

    fn parse(file_name: &str) -> Option<ChunkName> {
        let stem = file_name.strip_suffix(SUFFIX)?;
        let mut parts = stem.split('.');
        let (session_id, connection_id, recording_id, seq) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || ![session_id, connection_id, recording_id]
                .iter()
                .all(|id| is_id(id))
        {
            return None;
        }
        Some(ChunkName {
            session_id: session_id.to_owned(),
            connection_id: connection_id.to_owned(),
            recording_id: recording_id.to_owned(),
            seq: seq.parse().ok()?,
        })
    }
}

/// 1 to 64 ASCII letters, digits, `_` or `-`: safe in a file name.
fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a chunk could not be spooled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("the worker's recording spool is full ({used} of {max} bytes wait for the controller); raise recording.spool_max_bytes or restore the link")]
    Full { used: u64, max: u64 },
    #[error("cannot write a recording chunk to the worker's disk: {0}")]
    Write(String),
    #[error("the id {0:?} cannot name a recording file")]
    BadName(String),
}

/// A recording the store refused a chunk of: the recording's task hears it here.
#[derive(Debug, Default)]
pub(crate) struct Refusal {
    pub(crate) refused: CancellationToken,
    reason: OnceLock<String>,
}

impl Refusal {
    /// The store's reason, once refused.
    pub(crate) fn reason(&self) -> &str {
        self.reason.get().map(String::as_str).unwrap_or("")
    }
}

struct Pending {
    session_id: String,
    connection_id: String,
    len: u64,
}

#[derive(Default)]
struct State {
    /// Chunks spooled and not acknowledged: recording id → seq → chunk.
    pending: BTreeMap<String, BTreeMap<u64, Pending>>,
    /// Bytes of the pending chunks and of the writes under way.
    bytes: u64,
    /// The chunks being written: recording id → seqs. A recording's chunks are sent only
    /// below the lowest of these, so that they leave in seq order.
    writing: HashMap<String, BTreeSet<u64>>,
    /// No batch before this (the controller answered `later` or an error).
    retry_at: Option<Instant>,
    /// Whether the controller's inability to store chunks was logged already.
    told_unstored: bool,
    /// The live recordings' refusal signals.
    watched: HashMap<String, Arc<Refusal>>,
}

impl State {
    /// The seq a recording's chunks are sent below: its lowest chunk being written.
    fn first_writing(&self, recording_id: &str) -> u64 {
        self.writing
            .get(recording_id)
            .and_then(|seqs| seqs.first().copied())
            .unwrap_or(u64::MAX)
    }

    /// Whether any chunk may be sent (ignoring the back-off).
    fn sendable(&self) -> bool {
        self.pending.iter().any(|(id, chunks)| {
            chunks
                .keys()
                .next()
                .is_some_and(|first| *first < self.first_writing(id))
        })
    }
}

pub(crate) struct ChunkSpool {
    dir: PathBuf,
    max_bytes: u64,
    /// The back-offs after `later` and after an error ([`LATER_BACK_OFF`], [`ERROR_BACK_OFF`]).
    back_off: (Duration, Duration),
    state: Mutex<State>,
    /// Woken when chunks may be ready to send.
    changed: Notify,
}

impl ChunkSpool {
    /// Opens the spool in `dir` (created 0700 if needed), finding the chunks a previous run
    /// left; files that are not chunks are left alone, half-written ones removed.
    pub(crate) fn open(dir: PathBuf, max_bytes: u64) -> ChunkSpool {
        let mut state = State::default();
        if let Err(e) = create_private_dir(&dir) {
            tracing::warn!(error = %e, path = %dir.display(), "cannot create the recording spool; recordings will fail");
        }
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".tmp") {
                        let _ = std::fs::remove_file(entry.path());
                        continue;
                    }
                    let (Some(chunk), Ok(meta)) = (ChunkName::parse(&name), entry.metadata())
                    else {
                        tracing::warn!(file = %name, "a file in the recording spool that is not a chunk is left alone");
                        continue;
                    };
                    state.bytes += meta.len();
                    state.pending.entry(chunk.recording_id).or_default().insert(
                        chunk.seq,
                        Pending {
                            session_id: chunk.session_id,
                            connection_id: chunk.connection_id,
                            len: meta.len(),
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %dir.display(), "cannot read the recording spool")
            }
        }
        if !state.pending.is_empty() {
            tracing::info!(
                chunks = state.pending.values().map(BTreeMap::len).sum::<usize>(),
                bytes = state.bytes,
                "recording chunks left by a previous run will be sent"
            );
        }
        ChunkSpool {
            dir,
            max_bytes,
            back_off: (LATER_BACK_OFF, ERROR_BACK_OFF),
            state: Mutex::new(state),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Writes a chunk to disk; once this returns `Ok` the chunk is recorded and will reach
    /// the controller. Several writes of one recording may run at once (their flushes to
    /// disk share the file system's journal commits): a chunk is sent only once every
    /// chunk before it is written.
    pub(crate) async fn write(&self, name: ChunkName, bytes: Vec<u8>) -> Result<(), SpoolError> {
        let path = self.dir.join(name.file_name()?);
        let len = bytes.len() as u64;
        {
            let mut state = self.lock();
            if state.bytes + len > self.max_bytes {
                return Err(SpoolError::Full {
                    used: state.bytes,
                    max: self.max_bytes,
                });
            }
            state.bytes += len;
            state
                .writing
                .entry(name.recording_id.clone())
                .or_default()
                .insert(name.seq);
        }
        let written = tokio::task::spawn_blocking(move || {
            portcullis_files::write_private_atomic(&path, &bytes)
        })
        .await;
        let mut state = self.lock();
        if let Some(writing) = state.writing.get_mut(&name.recording_id) {
            writing.remove(&name.seq);
            if writing.is_empty() {
                state.writing.remove(&name.recording_id);
            }
        }
        match written {
            Ok(Ok(())) => {
                state.pending.entry(name.recording_id).or_default().insert(
                    name.seq,
                    Pending {
                        session_id: name.session_id,
                        connection_id: name.connection_id,
                        len,
                    },
                );
                drop(state);
                self.changed.notify_one();
                Ok(())
            }
            Ok(Err(e)) => {
                state.bytes -= len;
                Err(SpoolError::Write(e.to_string()))
            }
            Err(e) => {
                state.bytes -= len;
                Err(SpoolError::Write(e.to_string()))
            }
        }
    }

    /// Shorter back-offs, for tests.
    #[cfg(test)]
    pub(crate) fn with_back_off(mut self, later: Duration, error: Duration) -> ChunkSpool {
        self.back_off = (later, error);
        self
    }

    /// The signal a live recording's task waits on for the store's refusal.
    pub(crate) fn watch(&self, recording_id: &str) -> Arc<Refusal> {
        self.lock()
            .watched
            .entry(recording_id.to_owned())
            .or_default()
            .clone()
    }

    /// The recording is over: nobody waits for its refusal any more.
    pub(crate) fn unwatch(&self, recording_id: &str) {
        self.lock().watched.remove(recording_id);
    }

    /// Whether no chunk waits (for tests: the link asks `ready`).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().pending.is_empty()
    }

    /// How many chunks wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().pending.values().map(BTreeMap::len).sum()
    }

    /// Returns when chunks wait and no back-off holds them (cancel-safe).
    pub(crate) async fn ready(&self) {
        loop {
            let retry_at = {
                let state = self.lock();
                if !state.sendable() {
                    None
                } else {
                    match state.retry_at {
                        Some(at) if at > Instant::now() => Some(at),
                        _ => return,
                    }
                }
            };
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => self.changed.notified().await,
            }
        }
    }

    /// The next chunks to send, at most [`MAX_BATCH_BYTES`] (at least one), in seq order
    /// per recording and taking turns between recordings. A chunk whose file cannot be read
    /// is dropped (it can never be sent).
    pub(crate) fn batch(&self) -> Vec<SpooledChunk> {
        let mut state = self.lock();
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut unreadable = Vec::new();
        // Each recording's chunks in seq order, then round-robin over recordings.
        let mut queues: Vec<_> = state
            .pending
            .iter()
            .map(|(id, chunks)| {
                let below = state.first_writing(id);
                (id, chunks.range(..below))
            })
            .collect();
        'fill: loop {
            let mut any = false;
            for (recording_id, chunks) in queues.iter_mut() {
                let Some((seq, pending)) = chunks.next() else {
                    continue;
                };
                any = true;
                if !out.is_empty() && size + pending.len as usize > MAX_BATCH_BYTES {
                    break 'fill;
                }
                let name = ChunkName {
                    session_id: pending.session_id.clone(),
                    connection_id: pending.connection_id.clone(),
                    recording_id: (*recording_id).clone(),
                    seq: *seq,
                };
                let read = name
                    .file_name()
                    .map_err(|e| e.to_string())
                    .and_then(|file| std::fs::read(self.dir.join(file)).map_err(|e| e.to_string()));
                match read {
                    Ok(data) => {
                        size += data.len();
                        out.push(SpooledChunk {
                            session_id: name.session_id,
                            connection_id: name.connection_id,
                            recording_id: name.recording_id,
                            seq: name.seq,
                            data,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, recording.id = %name.recording_id, seq = name.seq, "a spooled recording chunk cannot be read; it is dropped");
                        unreadable.push(name);
                    }
                }
            }
            if !any {
                break;
            }
        }
        for name in unreadable {
            remove(&mut state, &self.dir, &name.recording_id, name.seq);
        }
        out
    }

    /// Applies the controller's acknowledgements: `stored` and `refused` chunks leave the
    /// spool (a refusal also tells the recording's task), `later` ones stay and are sent
    /// again after a back-off.
    pub(crate) fn acknowledged(&self, acks: Vec<ChunkAck>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.told_unstored = false;
        for ack in acks {
            match ack.outcome {
                ChunkOutcome::Stored => remove(&mut state, &self.dir, &ack.recording_id, ack.seq),
                ChunkOutcome::Refused { reason } => {
                    tracing::warn!(recording.id = %ack.recording_id, seq = ack.seq, reason = %portcullis_proto::text::escaped(&reason), "the store refused a recording chunk");
                    remove(&mut state, &self.dir, &ack.recording_id, ack.seq);
                    if let Some(refusal) = state.watched.get(&ack.recording_id) {
                        let _ = refusal.reason.set(reason);
                        refusal.refused.cancel();
                    }
                }
                ChunkOutcome::Later { reason } => {
                    tracing::debug!(recording.id = %ack.recording_id, seq = ack.seq, %reason, "the store will take a recording chunk later");
                    state.retry_at = Some(now + self.back_off.0);
                }
            }
        }
        drop(state);
        self.changed.notify_one();
    }

    /// The controller answered a batch with an error (one of an earlier release does not
    /// store recordings): every chunk stays, sent again after a back-off; logged once.
    pub(crate) fn not_stored(&self, message: &str) {
        let now = Instant::now();
        let mut state = self.lock();
        state.retry_at = Some(now + self.back_off.1);
        if !std::mem::replace(&mut state.told_unstored, true) {
            tracing::warn!(message = %portcullis_proto::text::escaped(message), chunks = state.pending.values().map(BTreeMap::len).sum::<usize>(), "the controller does not store recording chunks; they stay spooled and are sent again later");
        }
    }
}

/// Drops one chunk from the spool and its file. The unlink runs on the caller's thread: a
/// quick metadata operation.
fn remove(state: &mut State, dir: &Path, recording_id: &str, seq: u64) {
    let Some(chunks) = state.pending.get_mut(recording_id) else {
        return;
    };
    let Some(pending) = chunks.remove(&seq) else {
        return;
    };
    let name = ChunkName {
        session_id: pending.session_id,
        connection_id: pending.connection_id,
        recording_id: recording_id.to_owned(),
        seq,
    };
    if chunks.is_empty() {
        state.pending.remove(recording_id);
    }
    state.bytes = state.bytes.saturating_sub(pending.len);
    if let Ok(file) = name.file_name() {
        if let Err(e) = std::fs::remove_file(dir.join(file)) {
            tracing::warn!(error = %e, recording.id = %recording_id, seq, "cannot delete an acknowledged recording chunk; it is sent again after a restart");
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests;
