//! The policy page, rendered from the policy's plain values (`export::table`) into [`Html`]
//! (escaped by construction). Pure.

use portcullis_policy::explain;
use portcullis_policy::export::{self, MatrixCell, RoleSummary};
use portcullis_policy::{Access, Outcome, Policy};

use super::{ExplainForm, Explained};
use crate::console::html::Html;
use crate::console::pages::{layout, Nav};

pub(crate) struct View<'a> {
    pub nav: Nav<'a>,
    pub policy: Option<&'a Policy>,
    pub form: &'a ExplainForm,
    pub answer: Option<&'a Explained>,
}

pub(crate) fn render(view: &View<'_>) -> Html {
    layout("Policy", Some(&view.nav), |h| {
        h.raw("<h1>Policy</h1>");
        let Some(policy) = view.policy else {
            h.raw(
                "<p class=\"error\">No policy is loaded: every session is denied. Start the \
                 controller with a policy file (<code>--policy</code>) or reload one \
                 (<code>POST /v1/policy/reload</code>).</p>",
            );
            explain_form(h, view.form, view.answer);
            return;
        };
        if let Some(description) = policy.description() {
            h.raw("<p>").text(description).raw("</p>");
        }
        h.raw("<p class=\"hint\">Policy SHA-256 <code>")
            .text(policy.hash())
            .raw("</code>; the broker zone (the workers' leg) is <strong>")
            .text(policy.broker_zone())
            .raw("</strong>.</p>");
        grid(h, policy);
        explain_form(h, view.form, view.answer);
        roles(h, &export::roles(policy));
    })
}

/// The matrix: a row per source zone, a column per target zone; every cell says its access
/// and services in words (the `title` repeats them with the zones for a pointer).
fn grid(h: &mut Html, policy: &Policy) {
    let matrix = export::matrix(policy);
    h.raw(
        "<h2 id=\"matrix\">Zone matrix</h2>\
         <p class=\"hint\">Default deny. <span class=\"access allow\">allow</span>: open on \
         the network for its services; <span class=\"access broker-only\">broker-only</span>: \
         only through a Portcullis session; <span class=\"access deny\">deny</span>: \
         blocked.</p><div class=\"table\"><table class=\"matrix\" aria-describedby=\"matrix\">\
         <thead><tr><th scope=\"col\">From \\ to</th>",
    );
    for zone in &matrix.zones {
        h.raw("<th scope=\"col\">").text(zone).raw("</th>");
    }
    h.raw("</tr></thead><tbody>");
    for row in &matrix.rows {
        h.raw("<tr><th scope=\"row\">").text(&row.from).raw("</th>");
        for cell in &row.cells {
            matrix_cell(h, &row.from, cell);
        }
        h.raw("</tr>");
    }
    h.raw("</tbody></table></div>");
}

fn matrix_cell(h: &mut Html, from: &str, cell: &MatrixCell) {
    let services = cell.services.join(", ");
    let mut title = format!("{from} → {}: {}", cell.to, cell.access.as_str());
    if !services.is_empty() {
        title.push_str(": ");
        title.push_str(&services);
    }
    if cell.same_microsegment {
        title.push_str(" (same microsegment)");
    }
    if let Some(note) = &cell.note {
        title.push_str(" — ");
        title.push_str(note);
    }
    h.raw("<td class=\"cell ")
        .raw(access_class(cell.access))
        .raw("\" data-label=\"")
        .text(&format!("{from} → {}", cell.to))
        .raw("\" title=\"")
        .text(&title)
        .raw("\"><span class=\"access ")
        .raw(access_class(cell.access))
        .raw("\">")
        .raw(access_class(cell.access))
        .raw("</span>");
    if !services.is_empty() {
        h.raw(" <span class=\"services\">")
            .text(&services)
            .raw("</span>");
    }
    if cell.same_microsegment {
        h.raw(" <span class=\"services\">(same microsegment)</span>");
    }
    h.raw("</td>");
}

/// The class (and the word) of an access kind.
fn access_class(access: Access) -> &'static str {
    match access {
        Access::Allow => "allow",
        Access::BrokerOnly => "broker-only",
        Access::MtlsOnly => "mtls-only",
        Access::Deny => "deny",
    }
}

fn explain_form(h: &mut Html, form: &ExplainForm, answer: Option<&Explained>) {
    let bad = match answer {
        Some(Explained::Unanswerable { field, .. }) => Some(*field),
        _ => None,
    };
    h.raw(
        "<h2 id=\"explain\">Explain a decision</h2>\
         <p class=\"hint\">What the policy decides for a user who has logged in, connecting \
         from an address, to a target: as <code>portcullis policy explain</code> says it.</p>\
         <form method=\"get\" action=\"/console/policy#explain\" class=\"filters\">",
    );
    for (name, label, value, hint) in [
        ("user", "User", &form.user, "ada"),
        ("from", "From address", &form.from, "127.0.0.1"),
        ("target", "Target", &form.target, "echo"),
    ] {
        h.raw("<label>")
            .text(label)
            .raw(" <input name=\"")
            .text(name);
        h.raw("\" required placeholder=\"")
            .text(hint)
            .raw("\" value=\"");
        h.text(value).raw("\"");
        if bad == Some(name) {
            h.raw(" aria-invalid=\"true\" aria-describedby=\"explain-error\"");
        }
        h.raw("></label>");
    }
    h.raw("<button type=\"submit\">Explain</button></form>");
    match answer {
        None => {}
        Some(Explained::Unanswerable { message, .. }) => {
            h.raw("<p id=\"explain-error\" class=\"error\" role=\"alert\">")
                .text(message)
                .raw("</p>");
        }
        Some(Explained::Decision(decision)) => {
            let (class, word) = match decision.outcome {
                Outcome::Allow => ("allow", "Allowed"),
                Outcome::Deny => ("deny", "Denied"),
            };
            h.raw("<section class=\"answer\" aria-live=\"polite\"><p><span class=\"access ")
                .raw(class)
                .raw("\">")
                .raw(word)
                .raw("</span> ")
                .text(&decision.reason)
                .raw(
                    "</p><pre tabindex=\"0\" aria-label=\"The decision as portcullis policy explain \
                     prints it\">",
                )
                .text(&explain::render(decision))
                .raw("</pre></section>");
        }
    }
}

fn roles(h: &mut Html, roles: &[RoleSummary]) {
    h.raw("<h2 id=\"roles\">Roles</h2>");
    if roles.is_empty() {
        h.raw("<p>The policy has no roles: nobody is granted anything.</p>");
        return;
    }
    h.raw(
        "<div class=\"table\"><table aria-describedby=\"roles\"><thead><tr><th>Role</th>\
         <th>Groups</th><th>Grants</th><th>Constraints</th><th>Permissions</th></tr></thead>\
         <tbody>",
    );
    for role in roles {
        h.raw("<tr><td data-label=\"Role\"><strong>")
            .text(&role.name)
            .raw("</strong>");
        if let Some(description) = &role.description {
            h.raw("<br><span class=\"hint\">")
                .text(description)
                .raw("</span>");
        }
        h.raw("</td><td data-label=\"Groups\">")
            .text(&role.groups.join(", "))
            .raw(" <span class=\"hint\">(")
            .text(role.group_match)
            .raw(")</span></td><td data-label=\"Grants\">");
        if role.grants.is_empty() {
            h.raw("nothing");
        } else {
            h.raw("<ul class=\"plain\">");
            for grant in &role.grants {
                h.raw("<li>").text(grant).raw("</li>");
            }
            h.raw("</ul>");
        }
        h.raw("</td><td data-label=\"Constraints\">")
            .text(&role.constraints)
            .raw("</td><td data-label=\"Permissions\">");
        let permissions: Vec<&str> = role.permissions.iter().map(|p| p.as_str()).collect();
        h.text(&permissions.join(", ")).raw("</td></tr>");
    }
    h.raw("</tbody></table></div>");
}
