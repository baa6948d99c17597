//! A session's recordings through the API (`GET /v1/sessions/{id}/recordings...`, permission
//! `recordings:read` or the session's own user): the listing, every chunk of one recording
//! checked against its sealed head, and the choice of the recording and channel a command
//! works on.

use anyhow::{bail, Context as _};
use portcullis_proto::recording::{
    cast, ChannelKind, Chunk, ChunkPage, RecordingInfo, RecordingList, StoredChunk,
};

use crate::cli::http::{segment, ApiClient};
use crate::cli::output::{self, Table};
use crate::cli::recordings::check::{check, ChainReport, State};
use crate::cli::recordings::seal::Seal;

/// Chunks asked for per page.
const PAGE: u32 = 100;

/// `GET /v1/sessions/{id}/recordings`.
pub(crate) async fn list(api: &ApiClient, session: &str) -> anyhow::Result<RecordingList> {
    api.get(&format!("/v1/sessions/{}/recordings", segment(session)?))
        .await
        .with_context(|| format!("cannot list the recordings of session {session}"))
}

/// One page of chunks from `from` on.
pub(crate) async fn chunk_page(
    api: &ApiClient,
    session: &str,
    recording: &str,
    from: u64,
) -> anyhow::Result<ChunkPage> {
    chunk_page_waiting(api, session, recording, from, 0).await
}

/// One page of chunks from `from` on; while none is stored there yet and the recording is
/// not finished, the controller holds the answer up to `wait_secs` (a long poll: `watch`
/// makes one audited read per new output, not one per poll).
pub(crate) async fn chunk_page_waiting(
    api: &ApiClient,
    session: &str,
    recording: &str,
    from: u64,
    wait_secs: u64,
) -> anyhow::Result<ChunkPage> {
    api.get(&format!(
        "/v1/sessions/{}/recordings/{}/chunks?from={from}&limit={PAGE}&wait={wait_secs}",
        segment(session)?,
        segment(recording)?
    ))
    .await
    .with_context(|| format!("cannot read the chunks of recording {recording} from chunk {from}"))
}

/// Every stored chunk of a recording, in seq order; with `enough`, the pages stop once they
/// hold that many.
pub(crate) async fn all_chunks(
    api: &ApiClient,
    session: &str,
    recording: &str,
    enough: Option<u64>,
) -> anyhow::Result<Vec<StoredChunk>> {
    let mut chunks = Vec::new();
    let mut from = 0;
    loop {
        let page = chunk_page(api, session, recording, from).await?;
        let got = page.chunks.len() as u64;
        chunks.extend(page.chunks);
        if enough.is_some_and(|n| chunks.len() as u64 >= n) {
            return Ok(chunks);
        }
        match page.next {
            Some(next) if next > from && got > 0 => from = next,
            _ => return Ok(chunks),
        }
    }
}

/// The head the controller says the audit log sealed, as a [`Seal`] to check the chunks
/// against.
pub(crate) fn sealed_head(info: &RecordingInfo) -> Option<Seal> {
    info.sealed.as_ref().map(|s| Seal {
        audit_sequence: s.audit_sequence,
        session_id: info.session_id.clone(),
        recording_id: info.recording_id.clone(),
        chunks: s.chunks,
        head_hash: s.head_hash.to_ascii_lowercase(),
        bytes: Some(s.bytes),
        complete: s.complete,
    })
}

/// The chunks of `info` checked against its sealed head; on stderr, a loud warning when the
/// recording is broken and a note when it is incomplete. Returns the chunks that stand
/// (those before a break) and the report.
pub(crate) async fn checked_chunks(
    api: &ApiClient,
    info: &RecordingInfo,
) -> anyhow::Result<(Vec<Vec<u8>>, ChainReport)> {
    let chunks = all_chunks(api, &info.session_id, &info.recording_id, None).await?;
    let seal = sealed_head(info);
    let report = check(&chunks, &seal.iter().collect::<Vec<_>>());
    let id = portcullis_proto::text::escaped(&info.recording_id);
    let why = portcullis_proto::text::escaped(report.summary());
    match report.state {
        State::Complete => {}
        State::Incomplete => eprintln!("note: recording {id} is {why}"),
        State::Broken => eprintln!(
            "WARNING: recording {id} is {why}\n\
             WARNING: only what comes before chunk {} is used; from there on it may have been \
             altered. Keep the evidence: portcullis sessions export {} --recording {id} --format bundle",
            report.verified_up_to,
            portcullis_proto::text::escaped(&info.session_id),
        ),
    }
    let standing = chunks
        .into_iter()
        .take(report.verified_up_to as usize)
        .filter_map(|c| c.data)
        .collect();
    Ok((standing, report))
}

/// The `.cast` text of `channel` from the chunks of `info` that stand ([`checked_chunks`]).
pub(crate) async fn checked_cast(
    api: &ApiClient,
    info: &RecordingInfo,
    channel: u32,
) -> anyhow::Result<(String, ChainReport)> {
    let (standing, report) = checked_chunks(api, info).await?;
    let chunks = standing
        .iter()
        .map(|bytes| {
            Chunk::decode(bytes)
                .map_err(|e| anyhow::anyhow!("a verified chunk does not decode: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = cast(&chunks, channel).map_err(|e| match report.state {
        State::Complete => anyhow::anyhow!("{e}"),
        _ => anyhow::anyhow!(
            "{e}: nothing of it stands in the recording, which is {}",
            report.summary()
        ),
    })?;
    Ok((text, report))
}

/// The recording `wanted`, or the first that has a pty channel (`channel` when given).
pub(crate) fn pick_recording<'a>(
    list: &'a RecordingList,
    wanted: Option<&str>,
    channel: Option<u32>,
) -> anyhow::Result<&'a RecordingInfo> {
    if list.recordings.is_empty() {
        bail!(
            "session {} has no recordings (its zone does not require recording, or nothing was \
             stored yet)",
            list.session_id
        );
    }
    if let Some(id) = wanted {
        return list
            .recordings
            .iter()
            .find(|r| r.recording_id == id)
            .with_context(|| {
                format!(
                    "session {} has no recording {id}; `portcullis sessions recordings {}` lists them",
                    list.session_id, list.session_id
                )
            });
    }
    // With --channel, the first recording that has that channel (`pty_channel` then says
    // what it is if not a terminal); otherwise the first with a terminal channel.
    list.recordings
        .iter()
        .find(|r| match channel {
            Some(n) => r.channels.iter().any(|c| c.channel == n),
            None => r.channels.iter().any(|c| c.kind == ChannelKind::Pty),
        })
        .with_context(|| {
            format!(
                "no recording of session {} has {}; \
                 `portcullis sessions recordings {}` lists its channels",
                list.session_id,
                channel.map_or("a terminal (pty) channel".to_owned(), |c| format!(
                    "a channel {c}"
                )),
                list.session_id
            )
        })
}

/// The pty channel `wanted`, or the recording's first.
pub(crate) fn pty_channel(info: &RecordingInfo, wanted: Option<u32>) -> anyhow::Result<u32> {
    let mut ptys = info.channels.iter().filter(|c| c.kind == ChannelKind::Pty);
    match wanted {
        Some(n) => match info.channels.iter().find(|c| c.channel == n) {
            Some(c) if c.kind == ChannelKind::Pty => Ok(n),
            Some(c) => bail!(
                "channel {n} of recording {} is {} and has no terminal to replay; \
                 `sessions recordings` shows what it recorded",
                info.recording_id,
                c.kind.as_str()
            ),
            None => bail!("recording {} has no channel {n}", info.recording_id),
        },
        None => ptys.next().map(|c| c.channel).with_context(|| {
            format!(
                "recording {} has no terminal (pty) channel",
                info.recording_id
            )
        }),
    }
}

/// The state of a recording as the listing shows it.
fn state(info: &RecordingInfo) -> String {
    let last = info.verified_up_to.saturating_sub(1);
    let why = info.why.as_deref().unwrap_or("");
    let sep = if why.is_empty() { "" } else { ": " };
    match info.state {
        portcullis_proto::recording::RecordingState::Complete => "verified".into(),
        portcullis_proto::recording::RecordingState::Incomplete if info.verified_up_to == 0 => {
            format!("incomplete{sep}{why}")
        }
        portcullis_proto::recording::RecordingState::Incomplete => {
            format!("incomplete up to chunk {last}")
        }
        portcullis_proto::recording::RecordingState::Broken => {
            format!("BROKEN at chunk {}{sep}{why}", info.verified_up_to)
        }
    }
}

/// Whether the recording's head is sealed in the audit log, as the listing shows it.
fn sealed(info: &RecordingInfo) -> String {
    match &info.sealed {
        None => "not sealed".into(),
        Some(s) if s.complete && s.chunks == info.chunks => {
            format!("sealed (final, audit event {})", s.audit_sequence)
        }
        Some(s) => format!(
            "sealed up to chunk {} (audit event {})",
            s.chunks.saturating_sub(1),
            s.audit_sequence
        ),
    }
}

/// `sessions recordings ID`: per recording, its state and seal, then a row per channel.
pub(crate) fn print_list(list: &RecordingList) -> anyhow::Result<()> {
    if list.recordings.is_empty() {
        return output::write_stdout(&format!(
            "Session {} has no recordings.\n",
            portcullis_proto::text::escaped(&list.session_id)
        ));
    }
    let mut text = String::new();
    for (index, info) in list.recordings.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(&crate::cli::output::render_fields(&[
            ("Recording", info.recording_id.clone()),
            ("Connection", info.connection_id.clone()),
            ("State", state(info)),
            ("Audit seal", sealed(info)),
            (
                "Stored",
                format!(
                    "{} chunks, {} ({} to {})",
                    info.chunks,
                    output::bytes(info.bytes),
                    output::time(info.started_at),
                    output::time(info.updated_at)
                ),
            ),
        ]));
        let mut table = Table::new([
            "CHANNEL", "TYPE", "COMMAND", "EVENTS", "BYTES", "DURATION", "EXIT",
        ]);
        for c in &info.channels {
            table.row([
                c.channel.to_string(),
                c.kind.as_str().to_owned(),
                output::or_dash(c.command.as_deref()),
                c.events.to_string(),
                c.bytes.to_string(),
                format!("{:.1}s", c.duration_secs),
                c.exit_status
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
            ]);
        }
        if table.is_empty() {
            text.push_str("No channels recorded.\n");
        } else {
            text.push_str(&table.render());
        }
    }
    output::write_stdout(&text)
}

/// How long `watch` waits for a session's first recording: its first chunk reaches the
/// controller about a second after the SSH connection opens.
const FIRST_RECORDING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The session's recordings for `watch`: waits (up to [`FIRST_RECORDING_WAIT`]) while the
/// session has none yet, so that watching a session that is just starting works.
pub(crate) async fn first_list(api: &ApiClient, id: &str) -> anyhow::Result<RecordingList> {
    let deadline = tokio::time::Instant::now() + FIRST_RECORDING_WAIT;
    let mut said = false;
    loop {
        let list = list(api, id).await?;
        if !list.recordings.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(list);
        }
        if !said {
            eprintln!("Waiting for session {id}'s recording to start...");
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
}

/// The recording `watch` follows by default: the newest not complete yet, else the newest.
pub(crate) fn live_recording(list: &RecordingList) -> anyhow::Result<&RecordingInfo> {
    use portcullis_proto::recording::RecordingState;
    list.recordings
        .iter()
        .rev()
        .find(|r| r.state != RecordingState::Complete)
        .or_else(|| list.recordings.last())
        .with_context(|| {
            format!(
                "session {} has no recordings yet; try again once its SSH connection is open",
                list.session_id
            )
        })
}
