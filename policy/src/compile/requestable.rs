//! `[role.requestable]`: the terms on which a role is held only through an approved request.

use toml::Spanned;

use crate::access::{duration, BreakGlass, Requestable, BREAK_GLASS_CEILING_SECS};
use crate::diagnostic::Sink;
use crate::model::RawRole;

/// The role's requestable terms, if it has any, reporting every rule it breaks.
pub(super) fn compile_requestable(rr: &RawRole, sink: &mut Sink<'_>) -> Option<Requestable> {
    let raw = rr.requestable.as_ref()?;
    let span = raw.span();
    let name = rr.name.get_ref();
    let r = raw.get_ref();
    if rr.grants.is_empty() {
        sink.error(
            span.clone(),
            format!("requestable role `{name}` needs at least one [[role.grant]]: a request grants sessions, and it would grant none"),
        );
    }
    if let Some(p) = rr.permissions.first() {
        sink.error(
            p.span(),
            format!("requestable role `{name}` cannot hold permissions: a request grants sessions only; put the permissions on a standing role"),
        );
    }
    let approvers = group_names(&r.approvers, "approvers", sink);
    let preapproved = group_names(&r.preapproved, "preapproved", sink);
    if approvers.is_empty() && preapproved.is_empty() {
        sink.error(
            span.clone(),
            format!("requestable role `{name}` needs `approvers` (groups whose members approve its requests) unless `preapproved` lists who needs no approval"),
        );
    }
    let approvals = match &r.approvals {
        None => 1,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if v >= 1 => v,
            _ => {
                sink.error(
                    n.span(),
                    "approvals must be at least 1 (distinct approvers, never the requester)",
                );
                1
            }
        },
    };
    let max_duration_secs = duration_of(&r.max_duration, "max_duration", sink).unwrap_or(0);
    let break_glass = r.break_glass.as_ref().map(|bg| {
        let secs = duration_of(&bg.get_ref().max_duration, "break_glass.max_duration", sink);
        let secs = secs.unwrap_or(0);
        let at = bg.get_ref().max_duration.span();
        if secs > BREAK_GLASS_CEILING_SECS {
            sink.error(
                at.clone(),
                format!(
                    "break_glass.max_duration may be at most {}: break-glass access is for emergencies; use an approved request for longer",
                    duration::render_secs(BREAK_GLASS_CEILING_SECS)
                ),
            );
        }
        if max_duration_secs > 0 && secs > max_duration_secs {
            sink.error(
                at,
                format!(
                    "break_glass.max_duration ({}) may not exceed the role's max_duration ({})",
                    duration::render_secs(secs),
                    duration::render_secs(max_duration_secs)
                ),
            );
        }
        BreakGlass {
            max_duration_secs: secs,
        }
    });
    Some(Requestable {
        approvers,
        approvals,
        max_duration_secs,
        reason_required: r.reason_required,
        preapproved,
        break_glass,
    })
}

fn group_names(list: &[Spanned<String>], what: &str, sink: &mut Sink<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for g in list {
        if g.get_ref().trim().is_empty() {
            sink.error(g.span(), format!("a group name in `{what}` is empty"));
        } else if !out.contains(g.get_ref()) {
            out.push(g.get_ref().clone());
        }
    }
    out
}

/// A positive duration such as `4h`; errors name the key.
fn duration_of(text: &Spanned<String>, key: &str, sink: &mut Sink<'_>) -> Option<u64> {
    match duration::parse_secs(text.get_ref()) {
        Some(0) => {
            sink.error(text.span(), format!("{key} must be longer than 0"));
            None
        }
        Some(secs) => Some(secs),
        None => {
            sink.error(
                text.span(),
                format!(
                    "{key} `{}` is not a duration; write it like `90s`, `30m`, `4h` or `1d`",
                    text.get_ref()
                ),
            );
            None
        }
    }
}
