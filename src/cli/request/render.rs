//! How requests are shown: the list's table, one request's fields, the waiting line.

use portcullis_proto::access::{AccessRequest, RequestState};

use crate::cli::output::{self, Table};

/// Whether `list` shows a request in `state`: the one asked for, every one with `--all`,
/// else the open ones.
pub(super) fn listed(state: RequestState, asked: Option<RequestState>, all: bool) -> bool {
    match asked {
        Some(asked) => state == asked,
        None => all || state.is_open(),
    }
}

/// What a request covers: its targets, or `zone Z`.
pub(crate) fn scope(request: &AccessRequest) -> String {
    match &request.zone {
        Some(zone) => format!("zone {zone}"),
        None => request.targets.join(","),
    }
}

/// The state, marked when break-glass.
fn state(request: &AccessRequest) -> String {
    if request.break_glass {
        format!("{} (break-glass)", request.state)
    } else {
        request.state.to_string()
    }
}

/// Approvals given and asked for while pending (`1/2`); given once decided.
fn approvals(request: &AccessRequest) -> String {
    let given = request.approvals.len();
    if request.state == RequestState::Pending {
        format!("{given}/{}", given + request.approvals_needed as usize)
    } else {
        given.to_string()
    }
}

/// Until when: the window's end once approved, the approval deadline while pending.
fn until(request: &AccessRequest) -> String {
    match request.state {
        RequestState::Pending => format!("{} (to approve)", output::time(request.expires_at)),
        _ => output::time(request.expires_at),
    }
}

pub(super) fn table(requests: &[AccessRequest]) -> Table {
    Table::of(
        requests,
        &[
            ("ID", |r| r.id.clone()),
            ("USER", |r| r.username.clone()),
            ("ROLE", |r| r.role.clone()),
            ("SCOPE", scope),
            ("FOR", |r| output::duration(r.duration_secs)),
            ("STATE", state),
            ("APPROVALS", approvals),
            ("UNTIL", until),
        ],
    )
}

/// One request's fields, for `show` and after a change.
pub(crate) fn fields(request: &AccessRequest) -> String {
    let mut fields = vec![
        ("ID", request.id.clone()),
        ("User", request.username.clone()),
        ("Role", request.role.clone()),
        ("Scope", scope(request)),
        ("State", state(request)),
        ("Duration", output::duration(request.duration_secs)),
        ("Reason", output::or_dash(request.reason.as_deref())),
        ("Created", output::time(request.created_at)),
        ("Approved", output::opt_time(request.approved_at)),
        ("Until", until(request)),
        ("Approvals", approvals(request)),
    ];
    for approval in &request.approvals {
        let reason = approval
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        fields.push((
            "  by",
            format!(
                "{} at {}{reason}",
                approval.username,
                output::time(approval.at)
            ),
        ));
    }
    if let Some(by) = &request.decided_by {
        let reason = request
            .decision_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        fields.push(("Decided by", format!("{by}{reason}")));
    }
    if let Some(run) = &request.run {
        fields.push(("Run", run.command.join(" ")));
        fields.push(("  started", output::opt_time(run.started_at)));
        fields.push(("  finished", output::opt_time(run.finished_at)));
        let outcome = match (run.outcome.as_deref(), run.exit_status) {
            (Some(outcome), Some(status)) => format!("{outcome} (status {status})"),
            (Some(outcome), None) => outcome.to_owned(),
            (None, _) => "-".to_owned(),
        };
        fields.push(("  outcome", outcome));
        fields.push((
            "  sessions",
            if run.sessions.is_empty() {
                "-".to_owned()
            } else {
                run.sessions.join(", ")
            },
        ));
    }
    output::render_fields(&fields)
}

/// The line a waiting requester sees: the id, what is missing, and who acts.
pub(crate) fn waiting(request: &AccessRequest) -> String {
    format!(
        "Request {} for {} on {} waits for {} approval(s) until {}: an approver of the role \
         runs `portcullis request approve {}`.",
        request.id,
        request.role,
        scope(request),
        request.approvals_needed,
        output::time(request.expires_at),
        request.id
    )
}
