//! The line `portcullis connect` prints once its session is open: where to connect (or the
//! hand-off file to join), the session and its expiry, as text or one JSON object.

use super::listen::LocalListener;
use super::mode::Shown;
use super::source::About;
use super::ssh_login::Reach;
use super::tunnel::SessionTicket;
use crate::cli::output;

pub(super) fn announce(
    ticket: &About,
    listener: &LocalListener,
    shown: Shown<'_>,
) -> anyhow::Result<()> {
    let handoff = shown.handoff;
    let (address, port, path) = match listener {
        LocalListener::Tcp(_) | LocalListener::Https(..) => {
            let ip = listener.local_addr().map(|a| a.ip().to_string());
            (
                ip.unwrap_or_else(|| "127.0.0.1".to_owned()),
                listener.port(),
                None,
            )
        }
        LocalListener::Unix(_, file) => {
            let path = file.path().display().to_string();
            (path.clone(), None, Some(path))
        }
    };
    let reach = match (listener, port) {
        (LocalListener::Unix(_, file), _) => Reach::Unix(file.path()),
        (LocalListener::Tcp(_) | LocalListener::Https(..), port) => {
            Reach::Port(port.unwrap_or_default())
        }
    };
    if shown.json {
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
        if let Some(login) = shown.ssh {
            line["ssh"] = login.json(reach)?;
        }
        return output::print_json_line(&line);
    }
    let at = match port {
        Some(port) => format!("{address}:{port}"),
        None => address,
    };
    let mut text = format!(
        "Listening on {at} for session {} to {}, expires at {}.\n",
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
    if let Some(login) = shown.ssh {
        text.push_str(&login.text(reach)?);
    }
    output::write_stdout(&text)
}

pub(super) fn announce_hold(ticket: &SessionTicket, shown: Shown<'_>) -> anyhow::Result<()> {
    let path = shown
        .handoff
        .map(|f| f.path().to_path_buf())
        .unwrap_or_default();
    let file = path.display().to_string();
    let reach = Reach::SessionFile {
        target: &ticket.target,
        file: &path,
    };
    if shown.json {
        let mut line = serde_json::json!({
            "session_id": ticket.session_id,
            "target": ticket.target,
            "session_file": file,
            "expires_at": ticket.expires_at,
        });
        if let Some(login) = shown.ssh {
            line["ssh"] = login.json(reach)?;
        }
        return output::print_json_line(&line);
    }
    let mut text = format!(
        "Session {} to {} is open until {}; hand-off file {file}.\n",
        ticket.session_id,
        ticket.target,
        output::time(ticket.expires_at)
    );
    if let Some(login) = shown.ssh {
        text.push_str(&login.text(reach)?);
    }
    output::write_stdout(&text)
}
