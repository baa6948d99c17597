//! The targets page: a table (cards on a phone) and, for `targets:admin`, an edit form per
//! target in a disclosure. Pure.

use portcullis_proto::api::Target;

use super::edit::{EditValues, FieldError};
use crate::console::html::Html;
use crate::console::pages::{csrf_field, layout, Nav};

/// A form the update refused: shown open, with what was sent and why.
pub(crate) struct Failed<'a> {
    pub target_id: &'a str,
    pub sent: &'a EditValues,
    pub error: &'a FieldError,
}

pub(crate) struct View<'a> {
    pub nav: Nav<'a>,
    pub targets: &'a [Target],
    /// Whether the caller holds `targets:admin` (the edit forms).
    pub editable: bool,
    pub failed: Option<Failed<'a>>,
}

pub(crate) fn render(view: &View<'_>) -> Html {
    layout("Targets", Some(&view.nav), |h| {
        h.raw("<h1>Targets</h1>");
        if !view.editable {
            h.raw("<p class=\"hint\">Changing targets needs <code>targets:admin</code>.</p>");
        }
        if let Some(failed) = &view.failed {
            h.raw("<p class=\"error\" role=\"alert\">The change was not saved: ")
                .text(&failed.error.message)
                .raw("</p>");
        }
        if view.targets.is_empty() {
            h.raw("<p>No targets yet.</p>");
            return;
        }
        h.raw(
            "<div class=\"table\"><table><thead><tr><th>Name</th><th>Address</th>\
             <th>Zone</th><th>Service</th><th>VMID</th><th>Tags</th><th>Pool</th>\
             <th>Max session</th><th>Connections</th><th>Source</th><th>State</th>",
        );
        h.raw("</tr></thead><tbody>");
        for target in view.targets {
            let failed = view.failed.as_ref().filter(|f| f.target_id == target.id);
            row(
                h,
                target,
                view.editable.then_some(view.nav.csrf_token),
                failed,
            );
        }
        h.raw("</tbody></table></div>");
    })
}

fn row(h: &mut Html, t: &Target, csrf_token: Option<&str>, failed: Option<&Failed<'_>>) {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".to_owned());
    h.raw("<tr><td data-label=\"Name\"><strong>")
        .text(&t.name)
        .raw("</strong></td><td data-label=\"Address\"><code>")
        .text(&t.address)
        .raw("</code></td><td data-label=\"Zone\">")
        .text(&or_dash(&t.zone))
        .raw("</td><td data-label=\"Service\">")
        .text(&or_dash(&t.service))
        .raw("</td><td data-label=\"VMID\">")
        .text(&t.vmid.map_or("–".to_owned(), |v| v.to_string()))
        .raw("</td><td data-label=\"Tags\">")
        .text(&t.tags.join(", "))
        .raw("</td><td data-label=\"Pool\">")
        .text(&or_dash(&t.pool))
        .raw("</td><td data-label=\"Max session\">")
        .text(
            &humantime::format_duration(std::time::Duration::from_secs(t.max_session_secs))
                .to_string(),
        )
        .raw("</td><td data-label=\"Connections\">");
    match t.connection_limit {
        0 => h.raw("no limit"),
        n => h.number(u64::from(n)),
    };
    h.raw("</td><td data-label=\"Source\">");
    match &t.source {
        Some(s) => h
            .text(&s.cluster)
            .raw(" <span class=\"hint\">")
            .text(&s.key)
            .raw("</span>"),
        None => h.raw("manual"),
    };
    h.raw("</td><td data-label=\"State\"><span class=\"state\">")
        .raw(if t.available {
            "available"
        } else {
            "unavailable"
        })
        .raw("</span></td></tr>");
    // The form in a row of its own, under the target's, across the table.
    if let Some(token) = csrf_token {
        h.raw("<tr class=\"edit\"><td colspan=\"11\">");
        edit_form(h, t, token, failed);
        h.raw("</td></tr>");
    }
}

/// The text inputs of the form: name, label, kind, hint.
const INPUTS: [(&str, &str, Input, &str); 15] = [
    ("name", "Name", Input::Line, ""),
    ("address", "Address (HOST:PORT)", Input::Line, ""),
    ("zone", "Zone", Input::Line, "empty: placed by address"),
    ("service", "Service", Input::Line, "empty: by port"),
    ("vmid", "VMID", Input::Line, ""),
    ("tags", "Tags (comma-separated)", Input::Line, ""),
    ("pool", "Pool", Input::Line, ""),
    ("max_session_secs", "Max session (seconds)", Input::Line, ""),
    (
        "connection_limit",
        "Connection limit (0: none)",
        Input::Line,
        "",
    ),
    (
        "ssh_host_keys",
        "SSH host keys (one per line)",
        Input::Lines,
        "",
    ),
    (
        "ssh_host_cas",
        "SSH host CAs (one per line)",
        Input::Lines,
        "",
    ),
    ("vault_ssh_mount", "Vault SSH mount", Input::Line, ""),
    ("vault_ssh_role", "Vault SSH role", Input::Line, ""),
    (
        "vault_secrets",
        "Vault secrets (one path per line)",
        Input::Lines,
        "",
    ),
    ("proxmox_cluster", "Proxmox cluster", Input::Line, ""),
];

#[derive(Clone, Copy)]
enum Input {
    Line,
    Lines,
}

fn value<'v>(values: &'v EditValues, name: &str) -> &'v str {
    match name {
        "name" => &values.name,
        "address" => &values.address,
        "zone" => &values.zone,
        "service" => &values.service,
        "vmid" => &values.vmid,
        "tags" => &values.tags,
        "pool" => &values.pool,
        "max_session_secs" => &values.max_session_secs,
        "connection_limit" => &values.connection_limit,
        "ssh_host_keys" => &values.ssh_host_keys,
        "ssh_host_cas" => &values.ssh_host_cas,
        "vault_ssh_mount" => &values.vault_ssh_mount,
        "vault_ssh_role" => &values.vault_ssh_role,
        "vault_secrets" => &values.vault_secrets,
        "proxmox_cluster" => &values.proxmox_cluster,
        _ => "",
    }
}

fn edit_form(h: &mut Html, t: &Target, csrf_token: &str, failed: Option<&Failed<'_>>) {
    let current = EditValues::of(t);
    let values = failed.map_or(&current, |f| f.sent);
    h.raw("<details");
    if failed.is_some() {
        h.raw(" open");
    }
    h.raw("><summary>Edit ")
        .text(&t.name)
        .raw("</summary><form method=\"post\" action=\"/console/targets/")
        .text(&t.id)
        .raw("\" class=\"edit\">");
    csrf_field(h, csrf_token);
    if let Some(failed) = failed {
        h.raw("<p class=\"error\" role=\"alert\">")
            .text(&failed.error.message)
            .raw("</p>");
    }
    for (name, label, kind, hint) in INPUTS {
        let invalid = failed.is_some_and(|f| f.error.field == name);
        h.raw("<label>").text(label);
        match kind {
            Input::Line => {
                h.raw(" <input name=\"").text(name).raw("\" value=\"");
                h.text(value(values, name)).raw("\"");
                if !hint.is_empty() {
                    h.raw(" placeholder=\"").text(hint).raw("\"");
                }
                if invalid {
                    h.raw(" aria-invalid=\"true\"");
                }
                h.raw(">");
            }
            Input::Lines => {
                h.raw(" <textarea rows=\"2\" name=\"").text(name).raw("\"");
                if invalid {
                    h.raw(" aria-invalid=\"true\"");
                }
                h.raw(">").text(value(values, name)).raw("</textarea>");
            }
        }
        h.raw("</label>");
    }
    h.raw("<label class=\"check\"><input type=\"checkbox\" name=\"force\"");
    if values.force {
        h.raw(" checked");
    }
    h.raw(
        "> Save even if the policy does not know the zone or service</label>\
         <div class=\"actions\"><button type=\"submit\">Save</button></div></form></details>",
    );
}
