//! `sessions play` and `sessions watch`: a pty channel's asciicast shown in the reviewer's
//! terminal, every byte through the terminal filter ([`TerminalFilter`]) so that a hostile
//! recording cannot write the clipboard, send DCS/APC strings or make the terminal answer.
//!
//! The timing is pure ([`Pace::wait`]) and so is turning an event line into what to wait and
//! print ([`Player::event`]); `play` and `watch` only sleep, write and poll.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{bail, Context as _};
use portcullis_proto::recording::{Chunk, ChunkHash, ChunkKind, RecordingInfo};

use super::recordings::{checked_cast, chunk_page_waiting};
use crate::cli::http::ApiClient;
use crate::cli::terminal_filter::TerminalFilter;

/// How fast a recording replays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    /// 2.0 plays twice as fast.
    pub(crate) speed: f64,
    /// Pauses longer than this many seconds (of the recording) are cut to it.
    pub(crate) idle_limit: Option<f64>,
}

impl Pace {
    /// Printing as fast as possible (`watch`, `play --no-wait`).
    pub(crate) const INSTANT: Pace = Pace {
        speed: f64::INFINITY,
        idle_limit: None,
    };

    /// How long to wait before an event recorded at `t` seconds when the previous one
    /// printed was at `prev`: the gap, capped at the idle limit, divided by the speed. Times
    /// that go backwards wait nothing; nothing waits longer than a day.
    pub(crate) fn wait(&self, prev: f64, t: f64) -> Duration {
        let mut gap = t - prev;
        if !gap.is_finite() || gap <= 0.0 {
            return Duration::ZERO;
        }
        if let Some(limit) = self.idle_limit {
            gap = gap.min(limit.max(0.0));
        }
        let secs = gap / self.speed;
        Duration::try_from_secs_f64(secs.min(86_400.0)).unwrap_or(Duration::ZERO)
    }
}

/// Parses a `--speed` value: a positive factor.
pub(crate) fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err(format!(
            "{text:?} is not a positive factor, e.g. 1, 2 or 0.5"
        )),
    }
}

/// Parses an `--idle-limit` value: seconds, at least zero.
pub(crate) fn parse_idle_limit(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds, e.g. 2 or 0.5"
        )),
    }
}

/// What one event of a cast asks of the player.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) wait: Duration,
    /// Filtered output; empty for input and resize events.
    pub(crate) print: Vec<u8>,
}

/// Turns a pty channel's event lines into steps: the timing of a [`Pace`] and the output
/// through one [`TerminalFilter`] (its state carries from event to event).
pub(crate) struct Player {
    pace: Pace,
    filter: TerminalFilter,
    last: f64,
}

impl Player {
    pub(crate) fn new(pace: Pace) -> Self {
        Self {
            pace,
            filter: TerminalFilter::new(),
            last: 0.0,
        }
    }

    /// One `[t, code, data]` line after the header.
    pub(crate) fn event(&mut self, line: &str) -> anyhow::Result<Step> {
        let (t, code, data): (f64, String, String) = serde_json::from_str(line)
            .with_context(|| format!("a recorded event is not [time, code, data]: {line:.80}"))?;
        if code != "o" {
            // Input is not shown (players don't); a resize cannot be applied to the
            // reviewer's terminal.
            return Ok(Step {
                wait: Duration::ZERO,
                print: Vec::new(),
            });
        }
        let wait = self.pace.wait(self.last, t);
        self.last = self.last.max(t);
        Ok(Step {
            wait,
            print: self.filter.push(data.as_bytes()),
        })
    }
}

/// The header of a cast, for the line `play` prints first.
fn describe(header: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(header).unwrap_or_default();
    let term = value["env"]["TERM"].as_str().unwrap_or("?");
    format!(
        "{}x{}, TERM={}",
        value["width"],
        value["height"],
        portcullis_proto::text::escaped(term)
    )
}

/// Writes filtered bytes to stdout; a reader that went away ends the playback.
fn write_out(bytes: &[u8]) -> anyhow::Result<bool> {
    if bytes.is_empty() {
        return Ok(true);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// After playback on a terminal: attributes reset and the cursor shown again, whatever the
/// recording left.
fn restore_terminal() {
    if std::io::stdout().is_terminal() {
        let _ = write_out(b"\x1b[0m\x1b[?25h\r\n");
    }
}

/// `sessions play`: the cast of `channel`, from the chunks that verify.
pub(crate) async fn play(
    api: &ApiClient,
    info: &RecordingInfo,
    channel: u32,
    pace: Pace,
) -> anyhow::Result<i32> {
    let (cast, _report) = checked_cast(api, info, channel).await?;
    let mut lines = cast.lines();
    let header = lines.next().unwrap_or_default();
    eprintln!(
        "Playing channel {channel} of recording {} ({}). Ctrl-C stops.",
        portcullis_proto::text::escaped(&info.recording_id),
        describe(header)
    );
    let mut player = Player::new(pace);
    let playback = async {
        for line in lines {
            let step = player.event(line)?;
            if !step.wait.is_zero() {
                tokio::time::sleep(step.wait).await;
            }
            if !write_out(&step.print)? {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = playback => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    restore_terminal();
    Ok(0)
}

/// How long `watch` pauses after a long poll that brought nothing.
const POLL: Duration = Duration::from_millis(700);
/// How long the controller may hold a watcher's read while no new chunk is stored.
const LONG_POLL: u64 = 20;

/// The chain of a live recording, checked chunk by chunk as they arrive (the rule of
/// proto's `verify`: each chunk decodes, has the next seq and the previous chunk's hash).
pub(crate) struct LiveChain {
    next_seq: u64,
    head: ChunkHash,
}

impl LiveChain {
    pub(crate) fn new() -> Self {
        Self {
            next_seq: 0,
            head: ChunkHash::GENESIS,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> anyhow::Result<Chunk> {
        let seq = self.next_seq;
        let chunk = Chunk::decode(bytes)
            .map_err(|e| anyhow::anyhow!("chunk {seq} does not decode: {e}"))?;
        if chunk.header.seq != seq {
            bail!(
                "expected chunk {seq}, the controller served chunk {}",
                chunk.header.seq
            );
        }
        if chunk.header.prev_hash != self.head {
            bail!(
                "chunk {seq} does not chain to chunk {}: one of them was altered",
                seq.saturating_sub(1)
            );
        }
        self.head = ChunkHash(portcullis_crypto::digest::sha256(bytes));
        self.next_seq += 1;
        Ok(chunk)
    }
}

/// `sessions watch`: follows the recording as its chunks are stored, until its final chunk
/// or Ctrl-C (which stops the watching only; the session goes on).
pub(crate) async fn watch(
    api: &ApiClient,
    info: &RecordingInfo,
    mut channel: Option<u32>,
) -> anyhow::Result<i32> {
    eprintln!(
        "Watching recording {} of session {} (read-only). Ctrl-C stops watching; the session goes on.",
        portcullis_proto::text::escaped(&info.recording_id),
        portcullis_proto::text::escaped(&info.session_id),
    );
    let mut chain = LiveChain::new();
    let mut player = Player::new(Pace::INSTANT);
    let mut header_seen = false;
    let following = async {
        let mut from = 0;
        loop {
            let page =
                chunk_page_waiting(api, &info.session_id, &info.recording_id, from, LONG_POLL)
                    .await?;
            let got = page.chunks.len() as u64;
            for stored in &page.chunks {
                let Some(bytes) = &stored.data else {
                    bail!(
                        "chunk {} cannot be read: {}",
                        stored.seq,
                        stored.unreadable.as_deref().unwrap_or("no data")
                    );
                };
                let chunk = chain.push(bytes).with_context(|| {
                    format!(
                        "the recording is broken; run `portcullis sessions recordings {}`",
                        info.session_id
                    )
                })?;
                if chunk.header.kind != ChunkKind::Asciicast {
                    continue;
                }
                let wanted = *channel.get_or_insert(chunk.header.channel);
                if chunk.header.channel != wanted {
                    continue;
                }
                for line in chunk.body.lines() {
                    if !header_seen {
                        header_seen = true;
                        eprintln!("Channel {wanted}: {}", describe(line));
                        continue;
                    }
                    if !write_out(&player.event(line)?.print)? {
                        return Ok(());
                    }
                }
            }
            from = page.next.unwrap_or(from + got);
            if page.finished && page.next.is_none() {
                eprintln!("\nThe recording is finished.");
                return anyhow::Ok(());
            }
            if got == 0 {
                // The controller waited for new chunks already; nothing came.
                tokio::time::sleep(POLL).await;
            }
        }
    };
    let result = tokio::select! {
        result = following => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nStopped watching; the session goes on.");
            Ok(())
        }
    };
    restore_terminal();
    result.map(|()| 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
