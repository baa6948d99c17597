//! The Audit pages, rendered from the search's events and the check's status into
//! [`Html`] (escaped by construction: every audit field goes through `text`). Pure.

use serde_json::Value;

use super::filters::Filters;
use crate::api::audit::Found;
use crate::audit::watermark::Status;
use crate::console::html::Html;
use crate::console::pages::{csrf_field, layout, Nav};

pub(crate) struct ListView<'a> {
    pub nav: Nav<'a>,
    pub filters: &'a Filters,
    /// The export of the same search.
    pub export: String,
    pub found: &'a Found,
    /// The link to the next (older) page, if there is one.
    pub next: Option<String>,
    pub status: &'a Status,
}

/// The Audit page: the chain's status, the filters, the events.
pub(crate) fn list(view: &ListView<'_>) -> Html {
    layout("Audit", Some(&view.nav), |h| {
        h.raw("<h1>Audit</h1>");
        status(h, view.status, view.nav.csrf_token);
        filters_form(h, view.filters);
        h.raw("<p><a href=\"")
            .text(&view.export)
            .raw("\" download>Export these events (JSON lines)</a></p>");
        excluded(h, &view.found.excluded);
        if view.found.items.is_empty() {
            h.raw("<p>No events match.</p>");
            return;
        }
        h.raw(
            "<div class=\"table\"><table><thead><tr><th>Seq</th><th>Time</th><th>Type</th>\
             <th>User</th><th>Source</th><th>Target</th><th>Session</th><th>Decision</th>\
             <th>Reason</th></tr></thead><tbody>",
        );
        for event in &view.found.items {
            row(h, event);
        }
        h.raw("</tbody></table></div>");
        if let Some(next) = &view.next {
            h.raw("<p><a rel=\"next\" href=\"")
                .text(next)
                .raw("\">Older events</a></p>");
        }
    })
}

/// The chain's status, what it is worth, and the button that checks it from the start.
fn status(h: &mut Html, status: &Status, csrf_token: &str) {
    h.raw("<section class=\"verify\" aria-labelledby=\"verify-title\"><h2 id=\"verify-title\">Chain verification</h2>");
    match status {
        Status::Verified { up_to, verified_at } => {
            h.raw("<p class=\"ok\" role=\"status\" id=\"verify-status\">");
            match up_to {
                Some(head) => {
                    h.raw("Verified up to event ")
                        .number(head.sequence)
                        .raw(" (hash <code>")
                        .text(short(&head.hash))
                        .raw("…</code>)");
                }
                None => {
                    h.raw("Verified: no chained event yet");
                }
            }
            h.raw(", checked ").text(&time(*verified_at)).raw(".</p>");
        }
        Status::Partial { up_to, left } => {
            h.raw("<p role=\"status\" id=\"verify-status\">Verifying… ");
            if let Some(head) = up_to {
                h.raw("verified up to event ")
                    .number(head.sequence)
                    .raw(", ");
            }
            h.number(*left).raw(
                " left. Each visit of this page checks the next 10,000 events: \
                 <a href=\"/console/audit\">continue</a>.</p>",
            );
        }
        Status::Broken { up_to, failure } => {
            h.raw(
                "<p class=\"error\" role=\"alert\" id=\"verify-status\">The chain breaks at event ",
            )
            .number(failure.sequence);
            if let Some(id) = &failure.id {
                h.raw(" (").text(id).raw(")");
            }
            h.raw(": ").text(&failure.problem.to_string()).raw(".");
            if let Some(head) = up_to {
                h.raw(" Verified up to event ")
                    .number(head.sequence)
                    .raw(" before it.");
            }
            h.raw(
                "</p><p>Find out what changed with <code>portcullis audit verify</code> and \
                 compare with your SIEM's copy (docs/audit.md).</p>",
            );
        }
    }
    h.raw(
        "<p class=\"hint\">This check is a convenience. It runs incrementally: each visit \
         verifies only the events after the last one verified, so an event edited before that \
         point is found only by verifying from the start. It trusts the audit public keys \
         kept in the database it checks. The trust anchor is offline \
         <code>portcullis audit verify --public-key</code> with keys pinned outside the \
         controller.</p><form method=\"post\" action=\"/console/audit/verify\" class=\"inline\">",
    );
    csrf_field(h, csrf_token);
    h.raw("<button type=\"submit\">Verify from the start</button></form></section>");
}

/// Events the index found whose check failed: named, not shown.
fn excluded(h: &mut Html, excluded: &[(u64, String)]) {
    if excluded.is_empty() {
        return;
    }
    h.raw("<div class=\"error\" role=\"alert\"><p>Left out: events the filter found that fail their check (run <code>portcullis audit verify</code>):</p><ul>");
    for (seq, problem) in excluded {
        h.raw("<li>event ")
            .number(*seq)
            .raw(": ")
            .text(problem)
            .raw("</li>");
    }
    h.raw("</ul></div>");
}

fn filters_form(h: &mut Html, f: &Filters) {
    h.raw("<form method=\"get\" action=\"/console/audit\" class=\"filters\">");
    for (name, label, value, hint) in [
        ("session", "Session", &f.session, "s_…"),
        ("user", "User", &f.user, "id or name"),
        ("target", "Target", &f.target, "t_…"),
        ("type", "Type", &f.kind, "e.g. session_denied"),
        ("since", "Since", &f.since, "24h or RFC 3339"),
        ("until", "Until", &f.until, "RFC 3339 or age"),
    ] {
        h.raw("<label>")
            .text(label)
            .raw(" <input name=\"")
            .text(name)
            .raw("\" placeholder=\"")
            .text(hint)
            .raw("\" value=\"")
            .text(value)
            .raw("\"></label>");
    }
    h.raw("<label>Decision <select name=\"decision\">");
    for (value, label) in [("", "any"), ("allow", "allow"), ("deny", "deny")] {
        h.raw("<option value=\"").text(value).raw("\"");
        if f.decision == value {
            h.raw(" selected");
        }
        h.raw(">").text(label).raw("</option>");
    }
    h.raw("</select></label><button type=\"submit\">Search</button></form>");
}

/// A field of an event as text (`-` when absent).
fn field(event: &Value, path: &[&str]) -> String {
    let mut cur = event;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return "-".into(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn row(h: &mut Html, event: &Value) {
    let seq = event.get("sequence").and_then(Value::as_u64).unwrap_or(0);
    h.raw("<tr><td data-label=\"Seq\"><a href=\"/console/audit/")
        .number(seq)
        .raw("\">")
        .number(seq)
        .raw("</a></td>");
    for (label, path) in [
        ("Time", &["time"][..]),
        ("Type", &["type"][..]),
        ("User", &["actor", "user"][..]),
        ("Source", &["actor", "source"][..]),
        ("Target", &["target"][..]),
        ("Session", &["session"][..]),
        ("Decision", &["decision"][..]),
        ("Reason", &["reason"][..]),
    ] {
        h.raw("<td data-label=\"")
            .text(label)
            .raw("\">")
            .text(&field(event, path))
            .raw("</td>");
    }
    h.raw("</tr>");
}

/// One event's page: its JSON pretty-printed, or why it is not shown.
pub(crate) fn event(nav: &Nav<'_>, seq: u64, event: Result<&Value, &str>) -> Html {
    layout(&format!("Audit event {seq}"), Some(nav), |h| {
        h.raw("<h1>Audit event ").number(seq).raw("</h1>");
        match event {
            Ok(event) => {
                let pretty =
                    serde_json::to_string_pretty(event).unwrap_or_else(|_| event.to_string());
                h.raw("<p class=\"hint\">Its hash, signature and index columns check out against the audit keys.</p><pre class=\"event\" tabindex=\"0\"><code>")
                    .text(&pretty)
                    .raw("</code></pre>");
            }
            Err(problem) => {
                h.raw("<p class=\"error\" role=\"alert\">This event fails its check: ")
                    .text(problem)
                    .raw(
                        ". Its body is not shown here (nor by <code>portcullis audit \
                         list</code>); <code>portcullis audit export</code> has it and \
                         <code>portcullis audit verify</code> names what changed.</p>",
                    );
            }
        }
        h.raw("<p><a href=\"/console/audit\">Back to the audit log</a></p>");
    })
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

fn time(unix: i64) -> String {
    let secs = u64::try_from(unix).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
