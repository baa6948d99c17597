//! The session page and the player page, rendered from domain values into [`Html`] (escaped
//! by construction). Pure: the handlers fetch, these render.

use portcullis_proto::api::Session;
use portcullis_proto::recording::{ChannelKind, RecordingInfo, RecordingList, RecordingState};
use serde_json::Value;

use super::assets;
use crate::console::html::Html;
use crate::console::pages::{layout, Nav};

/// The player pages' Content-Security-Policy: the console's, but asciinema-player compiles
/// its terminal emulator from WebAssembly (`'wasm-unsafe-eval'`, which allows compiling wasm
/// and nothing else: no `eval`, no inline script) and fetches the recording or its live
/// stream from the console (`connect-src 'self'`). docs/console.md says so.
pub(crate) const PLAYER_CSP: &str = "default-src 'none'; style-src 'self'; \
                                     script-src 'self' 'wasm-unsafe-eval'; \
                                     connect-src 'self'; img-src 'self'; form-action 'self'; \
                                     frame-ancestors 'none'; base-uri 'none'";

/// One request through the session's Proxmox API proxy (a `pve_request` audit event).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PveRow {
    pub time: String,
    pub method: String,
    pub path: String,
    pub status: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub millis: u64,
    pub refused: Option<String>,
}

impl PveRow {
    /// From the event as stored (docs/audit.md, `pve_request`); what is missing stays empty.
    pub(crate) fn from_event(event: &Value) -> PveRow {
        let d = &event["details"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let number = |v: &Value| v.as_u64().unwrap_or_default();
        PveRow {
            time: text(&event["time"]),
            method: text(&d["method"]),
            path: text(&d["path"]),
            status: number(&d["status"]),
            bytes_up: number(&d["bytes_up"]),
            bytes_down: number(&d["bytes_down"]),
            millis: number(&d["millis"]),
            refused: d["refused"].as_str().map(str::to_owned),
        }
    }
}

pub(crate) struct SessionView<'a> {
    pub nav: Nav<'a>,
    pub session: &'a Session,
    /// `None`: the caller may not read them (not theirs, no `recordings:read`).
    pub recordings: Option<&'a RecordingList>,
    /// `None`: the caller has no `audit:read`.
    pub pve_log: Option<&'a [PveRow]>,
}

fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

fn base(session_id: &str, recording_id: &str) -> String {
    let seg = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "/console/sessions/{}/recordings/{}",
        seg(session_id),
        seg(recording_id)
    )
}

pub(crate) fn session(view: &SessionView<'_>) -> Html {
    let s = view.session;
    layout("Session", Some(&view.nav), |h| {
        h.raw("<h1>Session <code>").text(&s.id).raw("</code></h1>");
        h.raw("<p><a href=\"/console/sessions\">All sessions</a></p><dl class=\"details\">");
        let mut item = |label: &'static str, value: &str| {
            h.raw("<dt>")
                .raw(label)
                .raw("</dt><dd>")
                .text(value)
                .raw("</dd>");
        };
        item("User", &s.username);
        item("Target", &s.target_name);
        item("State", &s.state);
        item("End reason", s.termination_reason.as_deref().unwrap_or("-"));
        item("Client", &s.client_addr);
        item("Worker", &s.worker_id);
        item("Started", &time(s.created_at));
        item("Ended", &s.terminated_at.map_or("-".to_owned(), time));
        h.raw("</dl>");
        connections(h, s);
        h.raw("<h2>Recordings</h2>");
        match view.recordings {
            None => {
                h.raw(
                    "<p class=\"hint\">Reading another user's recordings needs \
                     <code>recordings:read</code>.</p>",
                );
            }
            Some(list) if list.recordings.is_empty() => {
                h.raw("<p>No recordings (the zone does not require them, or nothing was stored yet).</p>");
            }
            Some(list) => {
                for r in &list.recordings {
                    recording(h, r);
                }
            }
        }
        if let Some(log) = view.pve_log.filter(|l| !l.is_empty()) {
            pve_log(h, log);
        } else if view.pve_log.is_none() {
            h.raw(
                "<p class=\"hint\">The Proxmox API request log of a <code>proxmox-api</code> \
                 session needs <code>audit:read</code>.</p>",
            );
        }
    })
}

fn connections(h: &mut Html, s: &Session) {
    h.raw("<h2>Connections</h2>");
    if s.connections.is_empty() {
        h.raw("<p>No connections.</p>");
        return;
    }
    h.raw(
        "<div class=\"table\"><table><thead><tr><th>Connection</th><th>Client</th>\
         <th>State</th><th>Opened</th><th>Closed</th><th>Bytes up</th><th>Bytes down</th>\
         <th>Close reason</th></tr></thead><tbody>",
    );
    for c in &s.connections {
        h.raw("<tr><td data-label=\"Connection\"><code>")
            .text(&c.id)
            .raw("</code></td><td data-label=\"Client\">")
            .text(&c.client_addr)
            .raw("</td><td data-label=\"State\">")
            .text(&c.state)
            .raw("</td><td data-label=\"Opened\">")
            .text(&time(c.opened_at))
            .raw("</td><td data-label=\"Closed\">")
            .text(&c.closed_at.map_or("-".to_owned(), time))
            .raw("</td><td data-label=\"Bytes up\">")
            .number(c.bytes_up)
            .raw("</td><td data-label=\"Bytes down\">")
            .number(c.bytes_down)
            .raw("</td><td data-label=\"Close reason\">")
            .text(c.close_reason.as_deref().unwrap_or(""))
            .raw("</td></tr>");
    }
    h.raw("</tbody></table></div>");
}

fn state_text(r: &RecordingInfo) -> String {
    let why = r.why.as_deref().unwrap_or_default();
    match r.state {
        RecordingState::Complete => "verified".to_owned(),
        RecordingState::Incomplete => format!("incomplete up to chunk {}", r.verified_up_to),
        RecordingState::Broken => format!("BROKEN at chunk {}: {why}", r.verified_up_to),
    }
}

fn recording(h: &mut Html, r: &RecordingInfo) {
    h.raw("<section class=\"recording\"><h3>Recording <code>")
        .text(&r.recording_id)
        .raw("</code></h3><dl class=\"details\"><dt>State</dt><dd class=\"state-")
        .text(r.state.as_str())
        .raw("\">")
        .text(&state_text(r))
        .raw("</dd><dt>Audit seal</dt><dd>");
    match &r.sealed {
        Some(seal) => h
            .text(if seal.complete { "final" } else { "checkpoint" })
            .raw(", audit event ")
            .number(seal.audit_sequence),
        None => h.raw("not sealed yet"),
    };
    h.raw("</dd><dt>Stored</dt><dd>")
        .number(r.chunks)
        .raw(" chunks, ")
        .number(r.bytes)
        .raw(" bytes (")
        .text(&time(r.started_at))
        .raw(" to ")
        .text(&time(r.updated_at))
        .raw(")</dd></dl>");
    if r.channels.is_empty() {
        h.raw("<p>No channels recorded yet.</p></section>");
        return;
    }
    h.raw(
        "<div class=\"table\"><table><thead><tr><th>Channel</th><th>Type</th>\
         <th>Command or destination</th><th>Events</th><th>Bytes</th><th>Duration</th>\
         <th>Exit</th><th></th></tr></thead><tbody>",
    );
    let base = base(&r.session_id, &r.recording_id);
    for c in &r.channels {
        h.raw("<tr><td data-label=\"Channel\">")
            .number(u64::from(c.channel))
            .raw("</td><td data-label=\"Type\">")
            .text(c.kind.as_str())
            .raw("</td><td data-label=\"Command or destination\">")
            .text(c.command.as_deref().unwrap_or("-"))
            .raw("</td><td data-label=\"Events\">")
            .number(c.events)
            .raw("</td><td data-label=\"Bytes\">")
            .number(c.bytes)
            .raw("</td><td data-label=\"Duration\">")
            .text(&format!("{:.1} s", c.duration_secs))
            .raw("</td><td data-label=\"Exit\">")
            .text(&c.exit_status.map_or("-".to_owned(), |s| s.to_string()))
            .raw("</td><td>");
        if c.kind == ChannelKind::Pty {
            let query = format!("?channel={}", c.channel);
            h.raw("<a href=\"")
                .text(&format!("{base}/play{query}"))
                .raw("\">Play</a>");
            if r.state == RecordingState::Incomplete {
                h.raw(" <a href=\"")
                    .text(&format!("{base}/watch{query}"))
                    .raw("\">Follow live</a>");
            }
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table></div></section>");
}

fn pve_log(h: &mut Html, log: &[PveRow]) {
    h.raw(
        "<h2>Proxmox API requests</h2><div class=\"table\"><table><thead><tr><th>Time</th>\
         <th>Method</th><th>Path</th><th>Status</th><th>Bytes up</th><th>Bytes down</th>\
         <th>ms</th><th>Refused by</th></tr></thead><tbody>",
    );
    for r in log {
        h.raw("<tr><td data-label=\"Time\">")
            .text(&r.time)
            .raw("</td><td data-label=\"Method\">")
            .text(&r.method)
            .raw("</td><td data-label=\"Path\"><code>")
            .text(&r.path)
            .raw("</code></td><td data-label=\"Status\">")
            .number(r.status)
            .raw("</td><td data-label=\"Bytes up\">")
            .number(r.bytes_up)
            .raw("</td><td data-label=\"Bytes down\">")
            .number(r.bytes_down)
            .raw("</td><td data-label=\"ms\">")
            .number(r.millis)
            .raw("</td><td data-label=\"Refused by\">")
            .text(r.refused.as_deref().unwrap_or(""))
            .raw("</td></tr>");
    }
    h.raw("</tbody></table></div>");
}

pub(crate) struct PlayerView<'a> {
    pub nav: Nav<'a>,
    pub session_id: &'a str,
    pub recording_id: &'a str,
    pub channel: Option<u32>,
    /// Follow the live stream rather than play the stored recording.
    pub live: bool,
}

pub(crate) fn player(view: &PlayerView<'_>) -> Html {
    let title = if view.live {
        "Follow live"
    } else {
        "Recording"
    };
    let mut source = base(view.session_id, view.recording_id);
    source.push_str(if view.live { "/live" } else { "/cast" });
    if let Some(channel) = view.channel {
        source.push_str(&format!("?channel={channel}"));
    }
    let session_link = format!(
        "/console/sessions/{}",
        url::form_urlencoded::byte_serialize(view.session_id.as_bytes()).collect::<String>()
    );
    layout(title, Some(&view.nav), |h| {
        h.raw("<h1>")
            .text(title)
            .raw(" <code>")
            .text(view.recording_id)
            .raw("</code></h1>");
        h.raw("<p><a href=\"")
            .text(&session_link)
            .raw("\">Session ")
            .text(view.session_id);
        h.raw("</a>");
        if view.live {
            h.raw(
                " · read-only: what the session's terminal shows, a second or so behind. \
                 Each read is audited.</p>",
            );
        } else {
            h.raw(
                "</p><p class=\"controls\"><label for=\"speed\">Speed</label> \
                 <select id=\"speed\"><option value=\"0.5\">0.5×</option>\
                 <option value=\"1\" selected>1×</option><option value=\"2\">2×</option>\
                 <option value=\"4\">4×</option><option value=\"8\">8×</option></select> \
                 <span class=\"hint\">Seek with the bar under the terminal (or the arrow \
                 keys); space pauses.</span></p>",
            );
        }
        h.raw("<div id=\"player\" class=\"player\" ")
            .raw(if view.live {
                "data-live=\""
            } else {
                "data-cast=\""
            })
            .text(&source)
            .raw("\"></div><p class=\"hint\">Player: asciinema-player ")
            .text(assets::PLAYER_VERSION)
            .raw(" (<a href=\"")
            .text(assets::player_license())
            .raw("\">Apache-2.0</a>).</p>");
        // The player's stylesheet and scripts (files of the console: no inline script).
        h.raw("<link rel=\"stylesheet\" href=\"")
            .text(assets::player_css())
            .raw("\"><script src=\"")
            .text(assets::player_js())
            .raw("\"></script><script src=\"")
            .text(assets::ours_js())
            .raw("\"></script>");
    })
}
