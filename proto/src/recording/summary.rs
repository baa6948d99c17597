//! What a reviewer sees of a recording before playing it: one [`ChannelSummary`] per channel,
//! summarised from its chunks' bodies (the kind, the command, the events, the bytes, how long
//! it ran, its exit status).
//!
//! Pure, and lenient on purpose: a line this version does not understand is counted as an
//! event and otherwise ignored, because the summary describes a recording, it does not verify
//! one ([`verify`](fn@super::verify) does).

use std::collections::BTreeMap;

use serde_json::Value;

use super::chunk::{Chunk, ChunkKind};
use super::wire::{ChannelKind, ChannelSummary};

/// One summary per channel that has events, in channel order. The final chunk (an empty body)
/// adds nothing.
pub fn summarize(chunks: &[Chunk]) -> Vec<ChannelSummary> {
    let mut channels: BTreeMap<u32, Tally> = BTreeMap::new();
    for chunk in chunks {
        let channel = chunk.header.channel;
        for line in chunk.body.lines().filter(|l| !l.trim().is_empty()) {
            let tally = channels.entry(channel).or_default();
            tally.events += 1;
            match chunk.header.kind {
                ChunkKind::Asciicast => tally.asciicast(line),
                ChunkKind::Events => tally.structured(line),
            }
        }
    }
    channels
        .into_iter()
        .map(|(channel, t)| ChannelSummary {
            channel,
            kind: t.kind.unwrap_or(ChannelKind::Exec),
            command: t.command,
            events: t.events,
            bytes: t.bytes,
            duration_secs: match (t.first, t.last) {
                (Some(first), Some(last)) if last > first => last - first,
                _ => 0.0,
            },
            exit_status: t.exit_status,
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    kind: Option<ChannelKind>,
    command: Option<String>,
    events: u64,
    bytes: u64,
    first: Option<f64>,
    last: Option<f64>,
    exit_status: Option<u32>,
}

impl Tally {
    fn at(&mut self, t: f64) {
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }

    /// An asciicast line: the header object (`command` when the pty runs one), or a
    /// `[t, code, data]` event whose output bytes count.
    fn asciicast(&mut self, line: &str) {
        self.kind = Some(ChannelKind::Pty);
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(header)) => {
                if let Some(command) = header.get("command").and_then(Value::as_str) {
                    self.command = Some(command.to_owned());
                }
            }
            Ok(Value::Array(event)) => {
                if let Some(t) = event.first().and_then(Value::as_f64) {
                    self.at(t);
                }
                let code = event.get(1).and_then(Value::as_str);
                let data = event.get(2).and_then(Value::as_str);
                if let (Some("o"), Some(data)) = (code, data) {
                    self.bytes += data.len() as u64;
                }
            }
            _ => {}
        }
    }

    /// A structured line: `exec` (command), `exited` (status), `sftp` (bytes), `forward`
    /// (destination, bytes both ways).
    fn structured(&mut self, line: &str) {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if let Some(t) = event.get("t").and_then(Value::as_f64) {
            self.at(t);
        }
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let number = |key: &str| event.get(key).and_then(Value::as_u64).unwrap_or(0);
        match event.get("event").and_then(Value::as_str) {
            Some("exec") => {
                if self.kind.is_none() {
                    self.kind = Some(ChannelKind::Exec);
                }
                if self.command.is_none() {
                    self.command = text("command");
                }
            }
            Some("exited") => {
                self.exit_status = event
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u32::try_from(s).ok());
            }
            Some("sftp") => {
                self.kind = Some(ChannelKind::Sftp);
                if self.command.is_none() {
                    self.command = Some("sftp".into());
                }
                self.bytes += number("bytes");
            }
            Some("forward") => {
                self.kind = Some(ChannelKind::Forward);
                if self.command.is_none() {
                    self.command = text("destination");
                }
                self.bytes += number("bytes_in") + number("bytes_out");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::recording::{CastHeader, Event, Recorder, RecordingId, SftpOp};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn chunks(events: &[(u32, u64, Event)]) -> Vec<Chunk> {
        let mut rec = Recorder::with_chunk_len(RecordingId::new("c_1").unwrap(), 512);
        let mut out = Vec::new();
        for (channel, at, event) in events {
            out.extend(rec.record(*channel, ms(*at), event).unwrap());
        }
        out.extend(rec.finish().unwrap());
        out.iter()
            .map(|e| Chunk::decode(&e.bytes).unwrap())
            .collect()
    }

    fn pty(command: Option<&str>) -> Event {
        Event::PtyStarted(CastHeader {
            width: 80,
            height: 24,
            timestamp: 1_700_000_000,
            term: "xterm".into(),
            command: command.map(str::to_owned),
        })
    }

    #[test]
    fn each_channel_is_summarised_with_its_kind_command_bytes_duration_and_exit_status() {
        let mut events = vec![(0, 0, pty(None))];
        for i in 0..30 {
            events.push((0, 100 * i, Event::Output(format!("line {i}\r\n"))));
        }
        events.push((0, 3000, Event::Input("ls\r".into())));
        events.push((
            1,
            0,
            Event::Exec {
                command: "uname -a".into(),
            },
        ));
        events.push((1, 250, Event::Exited { status: 2 }));
        events.push((
            2,
            10,
            Event::Sftp {
                op: SftpOp::Write,
                path: "/tmp/x".into(),
                to: None,
                mode: Some(0o644),
                bytes: 1234,
            },
        ));
        events.push((
            3,
            0,
            Event::Forward {
                destination: "db:5432".into(),
                bytes_in: 10,
                bytes_out: 20,
            },
        ));
        let summary = summarize(&chunks(&events));
        let output: u64 = (0..30).map(|i| format!("line {i}\r\n").len() as u64).sum();
        assert_eq!(summary.len(), 4, "{summary:?}");
        let pty = &summary[0];
        assert_eq!(
            (pty.channel, pty.kind, pty.command.clone()),
            (0, ChannelKind::Pty, None)
        );
        assert_eq!(pty.bytes, output, "output only, not input");
        assert_eq!(pty.events, 1 + 30 + 1);
        assert!(
            (pty.duration_secs - 3.0).abs() < 1e-9,
            "{}",
            pty.duration_secs
        );
        let exec = &summary[1];
        assert_eq!(exec.kind, ChannelKind::Exec);
        assert_eq!(exec.command.as_deref(), Some("uname -a"));
        assert_eq!(exec.exit_status, Some(2));
        assert!((exec.duration_secs - 0.25).abs() < 1e-9);
        assert_eq!(
            (summary[2].kind, summary[2].bytes),
            (ChannelKind::Sftp, 1234)
        );
        assert_eq!(
            (
                summary[3].kind,
                summary[3].command.as_deref(),
                summary[3].bytes
            ),
            (ChannelKind::Forward, Some("db:5432"), 30)
        );
    }

    #[test]
    fn a_pty_running_a_command_names_it_and_nothing_yields_nothing() {
        let summary = summarize(&chunks(&[(5, 0, pty(Some("top")))]));
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].channel, 5);
        assert_eq!(summary[0].command.as_deref(), Some("top"));
        assert_eq!(summary[0].duration_secs, 0.0);
        assert!(
            summarize(&chunks(&[])).is_empty(),
            "the final chunk alone adds nothing"
        );
        assert!(summarize(&[]).is_empty());
    }
}
