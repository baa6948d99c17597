//! Connection events waiting for the controller's acknowledgement, kept on disk so that a
//! worker restart loses none.
//!
//! The file is a journal that one thread writes: a line per event and a line per
//! acknowledgement. Events recorded at the same time share one flush to disk (group commit),
//! and no runtime thread ever waits on the disk: only the caller of [`Spool::record`] waits,
//! for its own event. When every event is acknowledged the file is emptied; a journal grown
//! past [`COMPACT_AT`] is rewritten with only the pending events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;

use portcullis_proto::link::ConnectionEvent;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// A journal this large with events still pending is rewritten without the acknowledged ones.
const COMPACT_AT: u64 = 4 << 20;

/// Most operations written (and flushed once) together.
const MAX_BATCH: usize = 1024;

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    /// The controller has these events (by `event_id`).
    Ack {
        ack: Vec<String>,
    },
    Event(ConnectionEvent),
}

enum Op {
    Event {
        id: String,
        line: String,
        written: oneshot::Sender<bool>,
    },
    Ack(Vec<String>),
}

pub struct Spool {
    events: Mutex<VecDeque<ConnectionEvent>>,
    journal: Option<mpsc::Sender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Spool {
    /// Opens the spool, reading events left by a previous run (unparsable lines are skipped
    /// with a warning rather than blocking the worker), and starts its writer thread.
    pub fn open(path: PathBuf) -> Spool {
        let mut events: Vec<ConnectionEvent> = Vec::new();
        let mut acked: HashSet<String> = HashSet::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Line>(line) {
                    Ok(Line::Event(event)) => events.push(event),
                    Ok(Line::Ack { ack }) => acked.extend(ack),
                    Err(err) => tracing::warn!(error = %err, "skipping a damaged spool line"),
                }
            }
        }
        events.retain(|e| !acked.contains(&e.event_id));
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(path, &events);
        let handle = std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || writer.run(rx));
        let (journal, writer) = match handle {
            Ok(handle) => (Some(tx), Some(handle)),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the spool writer; events are kept in memory only");
                (None, None)
            }
        };
        Spool {
            events: Mutex::new(events.into()),
            journal,
            writer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<ConnectionEvent>> {
        match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn send(&self, op: Op) -> bool {
        self.journal.as_ref().is_some_and(|tx| tx.send(op).is_ok())
    }

    /// Adds an event and waits until it is on disk. If it cannot be written it is kept in
    /// memory (and still sent to the controller), with a warning.
    pub async fn record(&self, event: ConnectionEvent) {
        if let Some(done) = self.add(event) {
            if done.await != Ok(true) {
                tracing::warn!("cannot write the event spool; the event is kept in memory");
            }
        }
    }

    /// Adds an event that is already durable elsewhere (a first connection, which the
    /// controller recorded when it admitted it): written in turn, not waited for.
    pub fn add_recorded_elsewhere(&self, event: ConnectionEvent) {
        drop(self.add(event));
    }

    /// Adds an event without waiting for the disk: it is written in turn, with the others
    /// of the moment (one flush for all), and sent to the controller either way. For events
    /// too frequent to wait on one by one (a Proxmox API session's requests).
    pub fn add_without_waiting(&self, event: ConnectionEvent) {
        drop(self.add(event));
    }

    /// Queues `event` for the controller and for the journal; the receiver says whether it
    /// reached the disk (`None`: it cannot be journalled, it is kept in memory).
    fn add(&self, event: ConnectionEvent) -> Option<oneshot::Receiver<bool>> {
        // An untagged `Line::Event` is the event's own JSON.
        let line = serde_json::to_string(&event);
        let id = event.event_id.clone();
        self.lock().push_back(event);
        let line = line.ok()?;
        let (written, done) = oneshot::channel();
        self.send(Op::Event { id, line, written }).then_some(done)
    }

    pub fn pending(&self, max: usize) -> Vec<ConnectionEvent> {
        self.lock().iter().take(max).cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops acknowledged events (and journals the acknowledgement).
    pub fn ack(&self, ids: &[String]) {
        let set: HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.lock().retain(|e| !set.contains(e.event_id.as_str()));
        self.send(Op::Ack(ids.to_vec()));
    }
}

impl Drop for Spool {
    /// Lets the writer finish what it was given.
    fn drop(&mut self) {
        self.journal.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

/// The writer thread's state: the file and the events in it not yet acknowledged.
struct Writer {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    /// Pending events in the file: id -> (order, line).
    live: HashMap<String, (u64, String)>,
    next: u64,
}

impl Writer {
    fn new(path: PathBuf, pending: &[ConnectionEvent]) -> Writer {
        let mut writer = Writer {
            path,
            file: None,
            size: 0,
            live: HashMap::new(),
            next: 0,
        };
        for event in pending {
            if let Ok(line) = serde_json::to_string(event) {
                writer
                    .live
                    .insert(event.event_id.clone(), (writer.next, line));
                writer.next += 1;
            }
        }
        // Start from a journal of only what is pending.
        if let Err(err) = writer.compact() {
            tracing::warn!(error = %err, path = %writer.path.display(), "cannot rewrite the event spool");
        }
        writer
    }

    fn run(mut self, ops: mpsc::Receiver<Op>) {
        while let Ok(first) = ops.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let mut text = String::new();
            let mut waiters = Vec::new();
            for op in batch {
                match op {
                    Op::Event { id, line, written } => {
                        text.push_str(&line);
                        text.push('\n');
                        self.live.insert(id, (self.next, line));
                        self.next += 1;
                        waiters.push(written);
                    }
                    Op::Ack(ids) => {
                        for id in &ids {
                            self.live.remove(id);
                        }
                        if let Ok(line) = serde_json::to_string(&Line::Ack { ack: ids }) {
                            text.push_str(&line);
                            text.push('\n');
                        }
                    }
                }
            }
            let result = self.append(&text, !waiters.is_empty());
            if let Err(err) = &result {
                tracing::warn!(error = %err, path = %self.path.display(), "cannot write the event spool");
                self.file = None; // Reopened for the next batch.
            }
            for waiter in waiters {
                let _ = waiter.send(result.is_ok());
            }
            let tidy = if self.live.is_empty() {
                self.truncate()
            } else if self.size > COMPACT_AT {
                self.compact()
            } else {
                Ok(())
            };
            if let Err(err) = tidy {
                tracing::warn!(error = %err, path = %self.path.display(), "cannot compact the event spool");
            }
        }
    }

    fn file(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the spool file is not open"))
    }

    /// Appends `text`; with `durable`, flushes it to disk before returning.
    fn append(&mut self, text: &str, durable: bool) -> std::io::Result<()> {
        let file = self.file()?;
        file.write_all(text.as_bytes())?;
        if durable {
            file.sync_data()?;
        }
        self.size += text.len() as u64;
        Ok(())
    }

    fn truncate(&mut self) -> std::io::Result<()> {
        if self.size > 0 {
            self.file()?.set_len(0)?;
            self.size = 0;
        }
        Ok(())
    }

    /// Rewrites the journal with the pending events only, in their order.
    fn compact(&mut self) -> std::io::Result<()> {
        let mut lines: Vec<&(u64, String)> = self.live.values().collect();
        lines.sort_by_key(|(order, _)| *order);
        let text: String = lines.iter().map(|(_, line)| format!("{line}\n")).collect();
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = None;
        self.file()?;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opened(c: &str) -> ConnectionEvent {
        ConnectionEvent::opened("s", c, 1, "127.0.0.1", "127.0.0.1:7")
    }

    #[tokio::test]
    async fn events_survive_reopen_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.jsonl");
        let spool = Spool::open(path.clone());
        spool.record(opened("c1")).await;
        spool
            .record(ConnectionEvent::closed(
                "s",
                "c1",
                2,
                3,
                4,
                portcullis_proto::link::EndReason::Closed,
            ))
            .await;
        // Recorded means on disk: a second reader sees both.
        let again = Spool::open(path.clone());
        assert_eq!(again.pending(10).len(), 2);
        again.ack(&["c1:opened".to_string()]);
        assert_eq!(again.pending(10).len(), 1);
        drop(again);
        let third = Spool::open(path);
        let left = third.pending(10);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event_id, "c1:closed");
        drop(spool);
    }

    #[tokio::test]
    async fn a_fully_acknowledged_journal_is_emptied_and_a_damaged_line_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.jsonl");
        let spool = Spool::open(path.clone());
        let ids: Vec<String> = (0..50).map(|i| format!("c{i}:opened")).collect();
        let records = (0..50).map(|i| spool.record(opened(&format!("c{i}"))));
        futures_util::future::join_all(records).await;
        assert_eq!(spool.pending(100).len(), 50);
        spool.ack(&ids);
        assert!(spool.is_empty());
        drop(spool); // Waits for the writer.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        std::fs::write(&path, "{\"event_id\": \n").unwrap();
        let spool = Spool::open(path.clone());
        assert!(spool.is_empty());
        spool.record(opened("c9")).await;
        drop(spool);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("c9:opened"));
    }
}
