//! `sessions export`: a pty channel as an asciicast v2 file (`asciinema play` plays it), or
//! a recording as a bundle that `portcullis recordings verify` checks offline.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use portcullis_proto::recording::{Bundle, RecordingInfo};

use super::recordings::checked_cast;
use crate::cli::http::{segment, ApiClient};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// asciicast v2 of one pty channel, for `asciinema play` and asciinema-player.
    Asciicast,
    /// The recording's chunks, the audit events that seal them and the audit public keys,
    /// as JSON, for `portcullis recordings verify`.
    Bundle,
}

/// Writes `text` to `path` (created 0600: a recording may show secrets) or stdout.
fn write(path: Option<&Path>, text: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(path) => {
            let mut file = crate::cli::audit::create_private(path)?;
            file.write_all(text)
                .and_then(|()| file.flush())
                .with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("cannot write to stdout"),
            }
        }
    }
}

/// The raw cast, unfiltered: a file for a player, not bytes for this terminal. JSON strings
/// escape every control character, so printing the file itself is harmless.
pub(crate) async fn asciicast(
    api: &ApiClient,
    info: &RecordingInfo,
    channel: u32,
    path: Option<&Path>,
) -> anyhow::Result<i32> {
    let (text, report) = checked_cast(api, info, channel).await?;
    write(path, text.as_bytes())?;
    if let Some(path) = path {
        eprintln!(
            "Wrote channel {channel} of recording {} ({}) to {}; play it with `asciinema play {}`.",
            portcullis_proto::text::escaped(&info.recording_id),
            portcullis_proto::text::escaped(report.summary()),
            path.display(),
            path.display()
        );
    }
    Ok(0)
}

/// `GET .../bundle`, written as the controller served it.
pub(crate) async fn bundle(
    api: &ApiClient,
    info: &RecordingInfo,
    path: Option<&Path>,
) -> anyhow::Result<i32> {
    let bundle: Bundle = api
        .get(&format!(
            "/v1/sessions/{}/recordings/{}/bundle",
            segment(&info.session_id)?,
            segment(&info.recording_id)?
        ))
        .await
        .with_context(|| format!("cannot export recording {}", info.recording_id))?;
    let mut text =
        serde_json::to_vec_pretty(&bundle).context("cannot encode the bundle as JSON")?;
    text.push(b'\n');
    write(path, &text)?;
    if let Some(path) = path {
        eprintln!(
            "Wrote recording {} ({} chunks, {} audit events) to {}; check it anywhere with \
             `portcullis recordings verify {} --public-key KEY` (keys: `portcullis audit keys`).",
            portcullis_proto::text::escaped(&info.recording_id),
            bundle.chunks.len(),
            bundle.audit_events.len(),
            path.display(),
            path.display()
        );
    }
    Ok(0)
}
