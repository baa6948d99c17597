//! What `connect` prints once a Proxmox API session is served: where, as which Proxmox
//! token, with which roles and until when, and an example request; never the secret.

use std::path::Path;

use portcullis_proto::pve::ProxmoxSession;

use super::{Https, Served, HTTPS_HOST};
use crate::cli::output;

/// Where the session is served, for [`announce`].
pub(in crate::cli::connect) enum Endpoint<'a> {
    Socket(&'a Path),
    Https(&'a Https),
}

/// The line (or JSON object) saying how to use the session: where, as whom, until when,
/// and an example request. Never the secret.
pub(in crate::cli::connect) fn announce(
    session_id: &str,
    target: &str,
    expires_at: u64,
    served: &Served,
    endpoint: Endpoint<'_>,
    json: bool,
) -> anyhow::Result<()> {
    let pve = &served.session;
    if json {
        let mut line = serde_json::json!({
            "session_id": session_id,
            "target": target,
            "expires_at": expires_at,
            "proxmox": pve,
        });
        match endpoint {
            Endpoint::Socket(path) => {
                line["path"] = path.display().to_string().into();
                line["url"] = "http://pve".into();
            }
            Endpoint::Https(https) => {
                line["address"] = "127.0.0.1".into();
                line["port"] = https.port.into();
                line["url"] = format!("https://{HTTPS_HOST}:{}/", https.port).into();
                line["ca_file"] = https.ca_file.display().to_string().into();
                if let Some(file) = &https.env_file {
                    line["env_file"] = file.path().display().to_string().into();
                }
            }
        }
        return output::print_json_line(&line);
    }
    output::write_stdout(&announcement(
        session_id, target, expires_at, pve, &endpoint,
    ))
}

pub(super) fn announcement(
    session_id: &str,
    target: &str,
    expires_at: u64,
    pve: &ProxmoxSession,
    endpoint: &Endpoint<'_>,
) -> String {
    let at = match endpoint {
        Endpoint::Socket(path) => format!("unix socket {}", path.display()),
        Endpoint::Https(https) => format!("https://{HTTPS_HOST}:{}/", https.port),
    };
    let mut text = format!(
        "Proxmox API of {target} (cluster {}) on {at} for session {session_id}, until {}.\n\
         Requests act as {} ({}); no Proxmox secret is on this machine.\n",
        pve.cluster,
        output::time(expires_at),
        pve.token_id,
        grants(pve),
    );
    match endpoint {
        Endpoint::Socket(path) => text.push_str(&format!(
            "  curl --unix-socket {} http://pve/api2/json/version\n",
            shell_word(&path.display().to_string())
        )),
        Endpoint::Https(https) => {
            text.push_str(&format!(
                "Its certificate is from your local CA {}.\n",
                https.ca_file.display()
            ));
            if let Some(file) = &https.env_file {
                let file = shell_word(&file.path().display().to_string());
                text.push_str(&format!(
                    "Every request needs the session secret; the variables for clients are in \
                     {file} (0600, removed at exit):\n  \
                     ( . {file} && curl -H \"Authorization: PVEAPIToken=$PROXMOX_VE_API_TOKEN\" \
                     \"${{PROXMOX_VE_ENDPOINT}}api2/json/version\" )\n"
                ));
            }
        }
    }
    text
}

/// `ROLE, ROLE on PATH, PATH`, and whether `/access/` writes go through.
fn grants(pve: &ProxmoxSession) -> String {
    let mut text = format!(
        "{} on {}",
        output::or_dash(Some(&pve.roles.join(", "))),
        output::or_dash(Some(&pve.paths.join(", ")))
    );
    if pve.access_writes {
        text.push_str("; /access/ writes allowed");
    }
    text
}

/// A word as a POSIX shell reads it back.
fn shell_word(text: &str) -> String {
    shlex::try_quote(text).map_or_else(|_| text.to_owned(), |q| q.into_owned())
}
