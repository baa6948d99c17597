//! The console's pages, rendered from domain values into [`Html`] (escaped by
//! construction). Pure: the handlers fetch, these render.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_proto::api::Session;

use super::assets;
use super::html::Html;
use crate::store::session_list::Decided;

/// Who is logged in, for the page header and its logout form.
pub(crate) struct Nav<'a> {
    pub username: &'a str,
    pub csrf_token: &'a str,
}

/// A page's response: HTML, never cached (the security headers are the router's).
pub(crate) fn page_response(status: StatusCode, html: Html) -> Response {
    let mut response = (status, html.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The console's sections, as the header links to them.
const SECTIONS: [(&str, &str); 5] = [
    ("/console/sessions", "Sessions"),
    ("/console/audit", "Audit"),
    ("/console/policy", "Policy"),
    ("/console/targets", "Targets"),
    ("/console/workers", "Workers"),
];

/// The document around a page's `main` (each page module renders through it).
pub(crate) fn layout(title: &str, nav: Option<&Nav<'_>>, main: impl FnOnce(&mut Html)) -> Html {
    let mut h = Html::new();
    h.raw(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>",
    )
    .text(title)
    .raw(" · Portcullis</title><link rel=\"stylesheet\" href=\"")
    .text(&assets::css_path())
    .raw("\"><link rel=\"icon\" type=\"image/svg+xml\" href=\"")
    .text(&assets::icon_path())
    .raw("\"></head><body><header><span class=\"brand\">Portcullis</span>");
    if let Some(nav) = nav {
        h.raw("<nav>");
        for (href, label) in SECTIONS {
            h.raw("<a href=\"")
                .text(href)
                .raw("\">")
                .text(label)
                .raw("</a>");
        }
        h.raw("</nav><span class=\"who\">")
            .text(nav.username)
            .raw("</span><form method=\"post\" action=\"/console/logout\" class=\"inline\">");
        csrf_field(&mut h, nav.csrf_token);
        h.raw("<button type=\"submit\">Log out</button></form>");
    }
    h.raw("</header><main>");
    main(&mut h);
    h.raw("</main></body></html>\n");
    h
}

pub(crate) fn csrf_field(h: &mut Html, token: &str) {
    h.raw("<input type=\"hidden\" name=\"csrf_token\" value=\"")
        .text(token)
        .raw("\">");
}

/// The login page: a link to the OpenID provider when the controller has one (`oidc`), and
/// the form of a local user (password and TOTP code), with what went wrong last.
pub(crate) fn login(message: Option<&str>, username: &str, oidc: bool) -> Html {
    layout("Log in", None, |h| {
        h.raw("<h1>Log in</h1>");
        if let Some(message) = message {
            h.raw("<p class=\"error\" role=\"alert\">")
                .text(message)
                .raw("</p>");
        }
        if oidc {
            h.raw(
                "<p><a class=\"button\" href=\"/console/login/oidc\">Log in with your \
                 organisation's OpenID provider</a></p><h2>Or as a local user</h2>",
            );
        }
        h.raw(
            "<form method=\"post\" action=\"/console/login\" class=\"login\">\
             <label for=\"username\">User name</label>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"",
        )
        .text(username)
        .raw(
            "\"><label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required>\
             <label for=\"totp_code\">Authenticator code</label>\
             <input id=\"totp_code\" name=\"totp_code\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" pattern=\"[0-9]{6}\">\
             <button type=\"submit\">Log in</button></form>\
             <p class=\"hint\">A local user logs in once with \
             <code>portcullis login --password</code> first, to set a password and enrol TOTP.</p>",
        );
    })
}

/// An error page: the status and what to do.
pub(crate) fn error(status: StatusCode, message: &str) -> Html {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(title, None, |h| {
        h.raw("<h1>").text(title).raw("</h1><p class=\"error\">");
        h.text(message)
            .raw("</p><p><a href=\"/console/sessions\">Back to the console</a></p>");
    })
}

/// The sessions page's filters, as the query string gave them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filters {
    pub user: String,
    pub target: String,
    pub zone: String,
    pub state: String,
    /// An age (`24h`) or a UTC time, as typed.
    pub since: String,
    pub until: String,
}

/// One row of the sessions table.
pub(crate) struct SessionRow {
    pub session: Session,
    pub bytes: u64,
    /// Whether this caller may cancel it now (live, and theirs or `sessions:cancel-any`).
    pub cancel: bool,
    /// The matrix cell and roles that allowed it.
    pub decided: Decided,
}

/// The sessions page.
pub(crate) struct SessionsView<'a> {
    pub nav: Nav<'a>,
    pub filters: &'a Filters,
    pub rows: Vec<SessionRow>,
    /// The link to the next page, if there is one.
    pub next: Option<String>,
    /// Whether the caller sees every user's sessions.
    pub all_users: bool,
    /// The policy's zones, for the zone filter.
    pub zones: Vec<String>,
}

pub(crate) fn sessions(view: &SessionsView<'_>) -> Html {
    layout("Sessions", Some(&view.nav), |h| {
        h.raw("<h1>Sessions</h1>");
        if !view.all_users {
            h.raw("<p class=\"hint\">Your own sessions (seeing everyone's needs <code>sessions:read-all</code>).</p>");
        }
        filters_form(h, view.filters, &view.zones);
        if view.rows.is_empty() {
            h.raw("<p>No sessions match.</p>");
            return;
        }
        h.raw(
            "<div class=\"table\"><table><thead><tr><th>Started</th><th>User</th><th>Target</th>\
             <th>State</th><th>Connections</th><th>Bytes</th><th>End reason</th><th>Decision</th>\
             <th></th>\
             </tr></thead><tbody>",
        );
        for row in &view.rows {
            session_row(h, row, view.nav.csrf_token);
        }
        h.raw("</tbody></table></div>");
        if let Some(next) = &view.next {
            h.raw("<p><a rel=\"next\" href=\"")
                .text(next)
                .raw("\">Older sessions</a></p>");
        }
    })
}

fn filters_form(h: &mut Html, f: &Filters, zones: &[String]) {
    h.raw(
        "<form method=\"get\" action=\"/console/sessions\" class=\"filters\">\
         <label>User <input name=\"user\" value=\"",
    )
    .text(&f.user)
    .raw("\"></label><label>Target <input name=\"target\" value=\"")
    .text(&f.target)
    .raw("\"></label><label>Zone <select name=\"zone\"><option value=\"\">any</option>");
    let listed = zones.contains(&f.zone);
    let chosen = (!f.zone.is_empty() && !listed).then_some(&f.zone);
    for zone in zones.iter().chain(chosen) {
        h.raw("<option value=\"").text(zone).raw("\"");
        if *zone == f.zone {
            h.raw(" selected");
        }
        h.raw(">").text(zone).raw("</option>");
    }
    h.raw("</select></label><label>Since <input name=\"since\" list=\"ages\" value=\"")
        .text(&f.since)
        .raw(
            "\" placeholder=\"24h or 2026-11-23T08:00\"></label>\
             <label>Until <input name=\"until\" list=\"ages\" value=\"",
        )
        .text(&f.until)
        .raw(
            "\" placeholder=\"an age or a UTC time\"></label>\
             <datalist id=\"ages\"><option value=\"1h\"><option value=\"24h\">\
             <option value=\"7d\"><option value=\"30d\"></datalist>\
             <label>State <select name=\"state\">",
        );
    for (value, label) in [
        ("", "any"),
        ("live", "live"),
        ("minting", "minting"),
        ("pending", "pending"),
        ("active", "active"),
        ("terminated", "terminated"),
    ] {
        h.raw("<option value=\"").text(value).raw("\"");
        if f.state == value {
            h.raw(" selected");
        }
        h.raw(">").text(label).raw("</option>");
    }
    h.raw("</select></label><button type=\"submit\">Filter</button></form>");
}

fn session_row(h: &mut Html, row: &SessionRow, csrf_token: &str) {
    let s = &row.session;
    h.raw("<tr><td data-label=\"Started\"><a href=\"/console/sessions/")
        .text(&s.id)
        .raw("\">")
        .text(
            &humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created_at),
            )
            .to_string(),
        )
        .raw("</a></td><td data-label=\"User\">")
        .text(&s.username)
        .raw("</td><td data-label=\"Target\">")
        .text(&s.target_name)
        .raw("</td><td data-label=\"State\"><span class=\"state\">")
        .text(&s.state)
        .raw("</span></td><td data-label=\"Connections\">")
        .number(u64::from(s.connection_count))
        .raw("</td><td data-label=\"Bytes\">")
        .number(row.bytes)
        .raw("</td><td data-label=\"End reason\">")
        .text(s.termination_reason.as_deref().unwrap_or(""))
        .raw("</td><td data-label=\"Decision\">");
    decision(h, &row.decided);
    h.raw("</td><td>");
    if row.cancel {
        h.raw("<form method=\"post\" action=\"/console/sessions/")
            .text(&s.id)
            .raw("/cancel\" class=\"inline\">");
        csrf_field(h, csrf_token);
        h.raw("<button type=\"submit\" class=\"danger\">Cancel</button></form>");
    }
    h.raw("</td></tr>");
}

/// The decision column: the matrix cell, then the roles that granted it.
fn decision(h: &mut Html, d: &Decided) {
    let (Some(source), Some(target)) = (&d.source_zone, &d.target_zone) else {
        h.raw("<span class=\"hint\">not recorded</span>");
        return;
    };
    h.raw("<span class=\"cell\">")
        .text(source)
        .raw(" → ")
        .text(target)
        .raw("</span>");
    if d.roles.is_empty() {
        h.raw(" <span class=\"hint\">no role (direct flow)</span>");
    } else {
        h.raw(" <span class=\"roles\">role ")
            .text(&d.roles.join(", "))
            .raw("</span>");
    }
}
