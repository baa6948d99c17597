//! Connection events waiting for the controller's acknowledgement, kept on disk so that a
//! worker restart loses none.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use portcullis_proto::link::ConnectionEvent;

pub struct Spool {
    path: PathBuf,
    events: Mutex<Vec<ConnectionEvent>>,
}

impl Spool {
    /// Opens the spool, reading events left by a previous run (unparsable lines are skipped
    /// with a warning rather than blocking the worker).
    pub fn open(path: PathBuf) -> Spool {
        let events = std::fs::read_to_string(&path)
            .map(|text| {
                text.lines()
                    .filter_map(|l| match serde_json::from_str(l) {
                        Ok(e) => Some(e),
                        Err(err) => {
                            tracing::warn!(error = %err, "skipping a damaged spool line");
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Spool {
            path,
            events: Mutex::new(events),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ConnectionEvent>> {
        match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn push(&self, event: ConnectionEvent) {
        let mut events = self.lock();
        if let Ok(line) = serde_json::to_string(&event) {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut f| writeln!(f, "{line}").and_then(|_| f.sync_data()));
            if let Err(err) = written {
                tracing::warn!(error = %err, "cannot write the event spool; the event is kept in memory");
            }
        }
        events.push(event);
    }

    pub fn pending(&self, max: usize) -> Vec<ConnectionEvent> {
        self.lock().iter().take(max).cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops acknowledged events and rewrites the file.
    pub fn ack(&self, ids: &[String]) {
        let mut events = self.lock();
        events.retain(|e| !ids.contains(&e.event_id));
        let text: String = events
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .map(|l| l + "\n")
            .collect();
        let tmp = self.path.with_extension("tmp");
        if std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &self.path))
            .is_err()
        {
            tracing::warn!("cannot compact the event spool");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_reopen_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.jsonl");
        let spool = Spool::open(path.clone());
        spool.push(ConnectionEvent::opened(
            "s",
            "c1",
            1,
            "127.0.0.1",
            "127.0.0.1:7",
        ));
        spool.push(ConnectionEvent::closed("s", "c1", 2, 3, 4, "closed"));
        let again = Spool::open(path.clone());
        assert_eq!(again.pending(10).len(), 2);
        again.ack(&["c1:opened".to_string()]);
        let third = Spool::open(path);
        let left = third.pending(10);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event_id, "c1:closed");
    }
}
