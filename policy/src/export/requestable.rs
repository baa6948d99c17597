//! The requestable roles' terms, for the Markdown export and the console: who may request,
//! who approves, how many approvals, the longest window, and break-glass.

use std::fmt::Write as _;

use crate::access::duration::render_secs;
use crate::access::Requestable;
use crate::policy::Policy;

/// A requestable role's terms in one line, e.g. `requested by developers; approved by 1 of
/// sre-leads; at most 4h; reason required; break-glass up to 1h`.
pub(crate) fn terms_text(requesters: &[String], r: &Requestable) -> String {
    let mut parts = vec![format!(
        "requested by {}",
        if requesters.is_empty() {
            "nobody (no groups)".to_owned()
        } else {
            requesters.join(", ")
        }
    )];
    if !r.approvers.is_empty() {
        parts.push(format!(
            "approved by {} of {}",
            r.approvals,
            r.approvers.join(", ")
        ));
    }
    parts.push(format!("at most {}", render_secs(r.max_duration_secs)));
    if r.reason_required {
        parts.push("reason required".into());
    }
    if !r.preapproved.is_empty() {
        parts.push(format!("preapproved for {}", r.preapproved.join(", ")));
    }
    if let Some(bg) = r.break_glass {
        parts.push(format!(
            "break-glass up to {} (self-approved, reason required)",
            render_secs(bg.max_duration_secs)
        ));
    }
    parts.join("; ")
}

/// `## Requestable roles`: nothing when the policy has none.
pub(super) fn requestable_table(policy: &Policy, out: &mut String) {
    let roles: Vec<_> = policy
        .roles
        .iter()
        .filter_map(|role| Some((role, role.requestable.as_ref()?)))
        .collect();
    if roles.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Requestable roles\n");
    let _ = writeln!(
        out,
        "Held only through an approved access request (`portcullis request create`), for its window; an approval never widens the matrix.\n"
    );
    let _ = writeln!(out, "| Role | Terms |");
    let _ = writeln!(out, "| ---- | ----- |");
    for (role, terms) in roles {
        let _ = writeln!(
            out,
            "| **{}** | {} |",
            super::markdown::escape(&role.name),
            super::markdown::escape(&terms_text(&role.groups, terms)),
        );
    }
}
