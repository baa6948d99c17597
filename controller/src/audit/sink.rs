//! Shipping the audit log to external sinks. The audit table is the queue: each sink has a
//! cursor in `audit_sinks`, committed only after the sink accepted the events, so delivery
//! is at least once (every line carries the event `id` for de-duplication) and a sink that
//! was down catches up, in order, when it returns. One shipper per sink runs across all
//! controllers (a store lease). Every `checkpoint_every` events or `checkpoint_interval`, a
//! signed checkpoint of the last shipped event follows the events, so the sink's copy can
//! prove that the store's chain was not cut off later (`portcullis audit verify
//! --checkpoint FILE`).

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::config::{SinkConfig, SinkKind};
use super::syslog::{SyslogError, SyslogOutput};
use crate::state::AppState;
use crate::store::audit as rows;
use crate::store::StoreError;

/// Events read from the store per round.
const BATCH: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Syslog(#[from] SyslogError),
}

/// Where a sink's lines go.
enum Output {
    File(FileOutput),
    Syslog(Box<SyslogOutput>),
}

impl Output {
    /// Delivers the lines (events and checkpoints as JSON), all or nothing as far as the
    /// cursor is concerned: on error nothing is committed and the next round sends again.
    async fn send(&mut self, lines: &[String]) -> Result<(), SinkError> {
        match self {
            Output::File(f) => {
                let mut data = String::new();
                for line in lines {
                    data.push_str(line);
                    data.push('\n');
                }
                f.write(data.as_bytes()).await
            }
            Output::Syslog(s) => Ok(s.send(lines).await?),
        }
    }

    fn reopen(&mut self) {
        if let Output::File(f) = self {
            f.reopen();
        }
    }

    /// False when lines sent since the last call may have been lost on the way (a network
    /// sink whose connection died); a file write that returned is durable.
    fn intact(&mut self) -> bool {
        match self {
            Output::File(_) => true,
            Output::Syslog(s) => s.intact(),
        }
    }
}

/// A shipper's memory between rounds: where to send from again if the lines sent since the
/// connection was last seen healthy turn out to be lost.
#[derive(Default)]
struct Unconfirmed {
    /// The cursor before the first batch sent since the last healthy check.
    from: Option<u64>,
}

/// Starts one shipper task per configured sink.
pub(crate) fn spawn_all(state: &AppState, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    state
        .config
        .audit
        .sinks
        .iter()
        .map(|sink| {
            let span = tracing::info_span!("audit_sink", sink.name = %sink.name);
            tokio::spawn(run(state.clone(), sink.clone(), shutdown.clone()).instrument(span))
        })
        .collect()
}

/// A JSON-lines file, opened for appending on first use and again after SIGHUP or an error.
struct FileOutput {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl FileOutput {
    async fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        let result = self.try_write(data).await;
        if result.is_err() {
            self.file = None;
        }
        result.map_err(|source| SinkError::Write {
            path: self.path.clone(),
            source,
        })
    }

    async fn try_write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let mut options = tokio::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                options.mode(0o640);
                self.file.insert(options.open(&self.path).await?)
            }
        };
        file.write_all(data).await?;
        file.flush().await?;
        file.sync_data().await
    }

    /// Closes the file; the next write opens the path again (after logrotate moved it).
    fn reopen(&mut self) {
        self.file = None;
    }
}

async fn run(state: AppState, sink: SinkConfig, shutdown: CancellationToken) {
    let mut output = match sink.kind {
        SinkKind::File { path } => Output::File(FileOutput { path, file: None }),
        SinkKind::SyslogTls(settings) => Output::Syslog(Box::new(SyslogOutput::new(settings))),
    };
    let mut hangups = hangups();
    let interval = state.config.audit.ship_interval;
    let mut failing = false;
    let mut unconfirmed = Unconfirmed::default();
    loop {
        match ship_once(&state, &sink.name, &mut output, &mut unconfirmed).await {
            Ok(shipped) => {
                if failing {
                    tracing::info!("audit sink is back; caught up");
                    failing = false;
                }
                if shipped == u64::from(BATCH) {
                    continue;
                }
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(error = %portcullis_proto::text::escaped(&err), "audit sink is failing; events wait in the store");
                }
                failing = true;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hangup(&mut hangups) => output.reopen(),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

#[cfg(unix)]
async fn hangup(signal: &mut Hangups) {
    let got = match signal {
        Some(s) => s.recv().await.is_some(),
        None => false,
    };
    if !got {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn hangup(_: &mut Hangups) {
    std::future::pending().await
}

/// One round: under the sink's lease, sends the events after the cursor and a checkpoint
/// when one is due, then commits the cursor. Returns how many events were sent.
async fn ship_once(
    state: &AppState,
    name: &str,
    output: &mut Output,
    unconfirmed: &mut Unconfirmed,
) -> Result<u64, SinkError> {
    let Some(_lease) = state.store.try_lease(&format!("audit-sink:{name}")).await? else {
        return Ok(0);
    };
    let now = crate::clock::to_i64(state.clock.unix_secs());
    // Lines sent on a connection that died since may not have arrived: send them again.
    let rewind = if output.intact() {
        unconfirmed.from = None;
        None
    } else {
        unconfirmed.from.take()
    };
    let (mut cursor, events) = read_batch(state, name, rewind, now).await?;
    let batch_start = events.first().map(|(seq, _)| seq.saturating_sub(1));
    let mut lines: Vec<String> = Vec::with_capacity(events.len() + 1);
    let mut newest: Option<&str> = None;
    for (seq, body) in &events {
        lines.push(body.clone());
        // Events sent again after a rewind stay behind the cursor.
        if *seq > cursor.cursor {
            cursor.cursor = *seq;
            newest = Some(body);
        }
    }
    if let Some(checkpoint) = checkpoint(state, &mut cursor, newest, now).await? {
        lines.push(checkpoint);
    }
    if lines.is_empty() {
        return Ok(0);
    }
    if let Err(err) = output.send(&lines).await {
        // Keep the rewind point: this round's events are sent again after the cursor anyway.
        if unconfirmed.from.is_none() {
            unconfirmed.from = rewind;
        }
        return Err(err);
    }
    if unconfirmed.from.is_none() {
        unconfirmed.from = batch_start.or(rewind);
    }
    let mut conn = state.store.conn().await?;
    rows::save_sink_cursor(&mut conn, name, &cursor, now).await?;
    Ok(u64::try_from(events.len()).unwrap_or(0))
}

/// The sink's cursor and the events after it (after `rewind` when that is earlier).
async fn read_batch(
    state: &AppState,
    name: &str,
    rewind: Option<u64>,
    now: i64,
) -> Result<(rows::SinkCursor, Vec<(u64, String)>), SinkError> {
    let mut conn = state.store.conn().await?;
    let cursor = rows::sink_cursor(&mut conn, name, now).await?;
    let start = rewind.map_or(cursor.cursor, |r| r.min(cursor.cursor));
    if start < cursor.cursor {
        tracing::info!(
            from = start + 1,
            "the sink's connection died; sending recent events again"
        );
    }
    let events = rows::after(&mut conn, start, BATCH).await?;
    Ok((cursor, events))
}

/// A signed checkpoint of the cursor's event when one is due (every `checkpoint_every`
/// events or `checkpoint_interval`), as a line; the cursor then records it. `newest` is the
/// body of the cursor's event when this round read it.
async fn checkpoint(
    state: &AppState,
    cursor: &mut rows::SinkCursor,
    newest: Option<&str>,
    now: i64,
) -> Result<Option<String>, SinkError> {
    // Only the newest event's hash is needed: parse that one body.
    let last_hash = newest.and_then(|body| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("hash").and_then(|h| h.as_str()).map(str::to_owned))
    });
    let since = Duration::from_secs(u64::try_from(now - cursor.checkpoint_at).unwrap_or(0));
    let audit = &state.config.audit;
    let due = cursor.cursor > cursor.checkpoint_seq
        && (cursor.cursor - cursor.checkpoint_seq >= audit.checkpoint_every
            || since >= audit.checkpoint_interval);
    if !due {
        return Ok(None);
    }
    let hash = match last_hash {
        Some(hash) => Some(hash),
        None => {
            let mut conn = state.store.conn().await?;
            rows::hash_of(&mut conn, cursor.cursor).await?
        }
    };
    // Unchained events (from before the chain) cannot be checkpointed.
    let Some(hash) = hash else {
        return Ok(None);
    };
    let signer = super::signer(&state.keys).await?;
    let time = humantime::format_rfc3339_millis(state.clock.now()).to_string();
    let checkpoint = signer.checkpoint(cursor.cursor, &hash, &time);
    cursor.checkpoint_seq = cursor.cursor;
    cursor.checkpoint_at = now;
    Ok(Some(serde_json::to_string(&checkpoint).unwrap_or_default()))
}
