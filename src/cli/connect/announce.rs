//! The line `portcullis connect` prints once its session is open: where to connect (or the
//! hand-off file to join), the session and its expiry, as text or one JSON object.

use super::listen::LocalListener;
use super::session_file::HandoffFile;
use super::tunnel::SessionTicket;
use crate::cli::output;

pub(super) fn announce(
    ticket: &SessionTicket,
    listener: &LocalListener,
    handoff: Option<&HandoffFile>,
    json: bool,
) -> anyhow::Result<()> {
    let (address, port, path) = match listener {
        LocalListener::Tcp(_) => ("127.0.0.1".to_owned(), listener.port(), None),
        LocalListener::Unix(_, file) => {
            let shown = file.path().display().to_string();
            (shown.clone(), None, Some(shown))
        }
    };
    if json {
        let mut line = serde_json::json!({
            "session_id": ticket.session_id,
            "target": ticket.target,
            "address": address,
            "expires_at": ticket.expires_at,
        });
        if let Some(port) = port {
            line["port"] = port.into();
        }
        if let Some(path) = path {
            line["path"] = path.into();
        }
        if let Some(file) = handoff {
            line["session_file"] = file.path().display().to_string().into();
        }
        return output::print_json_line(&line);
    }
    let shown = match port {
        Some(port) => format!("{address}:{port}"),
        None => address,
    };
    let mut text = format!(
        "Listening on {shown} for session {} to {}, expires at {}.\n",
        ticket.session_id,
        ticket.target,
        output::time(ticket.expires_at)
    );
    if let Some(file) = handoff {
        text.push_str(&format!(
            "Session hand-off file: {}\n",
            file.path().display()
        ));
    }
    output::write_stdout(&text)
}

pub(super) fn announce_hold(
    ticket: &SessionTicket,
    handoff: Option<&HandoffFile>,
    json: bool,
) -> anyhow::Result<()> {
    let file = handoff
        .map(|f| f.path().display().to_string())
        .unwrap_or_default();
    if json {
        return output::print_json_line(&serde_json::json!({
            "session_id": ticket.session_id,
            "target": ticket.target,
            "session_file": file,
            "expires_at": ticket.expires_at,
        }));
    }
    output::write_stdout(&format!(
        "Session {} to {} is open until {}; hand-off file {file}.\n",
        ticket.session_id,
        ticket.target,
        output::time(ticket.expires_at)
    ))
}
