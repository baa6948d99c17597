//! `GET /console/policy`: the zone matrix as a grid, the roles with their grants, and the
//! "explain" form: what the policy decides for a known user reaching a known target from an
//! address, asked exactly as a session's authorisation asks it (`authz::session_request`,
//! `portcullis_policy::evaluate`) and worded as `portcullis policy explain` words it.
//!
//! The API has no call that reads the policy; the page needs `audit:read` (whose holders
//! already read every decision in the log) or `policy:reload` (who change it). Anyone else
//! gets a 403 audited as `permission_denied`, as the API's refusals are.

mod page;
#[cfg(test)]
pub(crate) mod tests;

use std::net::IpAddr;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use portcullis_policy::{Decision, Permission, Policy};

use super::error::ConsoleError;
use super::handlers::form;
use super::pages::{page_response, Nav};
use super::session::ConsoleUser;
use crate::state::AppState;
use crate::store::{targets, users};

/// The permissions that open the page; any one of them does.
pub(crate) const READ: [Permission; 2] = [Permission::AuditRead, Permission::PolicyReload];

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/console/policy", get(policy))
}

/// The explain form's fields, as the query string gave them.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExplainForm {
    pub user: String,
    pub from: String,
    pub target: String,
}

impl ExplainForm {
    fn asked(&self) -> bool {
        !(self.user.is_empty() && self.from.is_empty() && self.target.is_empty())
    }
}

/// The answer to the explain form: the decision, or why the question cannot be asked.
#[derive(Debug)]
pub(crate) enum Explained {
    Decision(Box<Decision>),
    /// The field at fault and what to do.
    Unanswerable {
        field: &'static str,
        message: String,
    },
}

async fn policy(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let principal = &user.principal;
    if !READ.iter().any(|p| principal.has(*p)) {
        return Err(ConsoleError::refused(
            principal.actor(),
            "audit:read or policy:reload",
            "the policy page needs the `audit:read` or the `policy:reload` permission, which \
             none of your roles grants; ask an administrator for a role that does",
        ));
    }
    let q = form(query.unwrap_or_default().as_bytes());
    let field = |name: &str| q.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let asked = ExplainForm {
        user: field("user"),
        from: field("from"),
        target: field("target"),
    };
    let policy = state.policy();
    let answer = if asked.asked() {
        Some(explain(&state, policy.as_deref(), &asked).await?)
    } else {
        None
    };
    let view = page::View {
        nav: Nav {
            username: &principal.user.username,
            csrf_token: &user.csrf_token,
        },
        policy: policy.as_deref(),
        form: &asked,
        answer: answer.as_ref(),
    };
    let status = match &answer {
        Some(Explained::Unanswerable { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    Ok(page_response(status, page::render(&view)))
}

/// Reads the user, the target and its address, then lets the policy decide as a session's
/// authorisation would (`sessions::plan::decide`: an unroutable endpoint or no policy is a
/// deny). Store failures are errors; a question that names nothing known is an answer.
async fn explain(
    state: &AppState,
    policy: Option<&Policy>,
    asked: &ExplainForm,
) -> Result<Explained, ConsoleError> {
    let unanswerable = |field, message: String| Ok(Explained::Unanswerable { field, message });
    let Ok(source) = asked.from.parse::<IpAddr>() else {
        return unanswerable(
            "from",
            format!(
                "{:?} is not an IP address: give the address the user connects from, e.g. \
                 127.0.0.1",
                asked.from
            ),
        );
    };
    let (found, target) = {
        let mut conn = state.store.conn().await?;
        let found = users::by_username(&mut conn, &asked.user).await?;
        let target = targets::find(&mut conn, &asked.target).await?;
        (found, target)
    };
    let user = match found.as_slice() {
        [] => {
            return unanswerable(
                "user",
                format!(
                    "no user named {:?} has logged in yet: the policy decides on the groups \
                     of a login, so ask about a user who has logged in once",
                    asked.user
                ),
            )
        }
        [one] => one,
        several => {
            let issuers: Vec<&str> = several.iter().map(|u| u.issuer.as_str()).collect();
            return unanswerable(
                "user",
                format!(
                    "several users are named {:?} (issuers {}): explain with `portcullis policy \
                     explain --groups ...` instead",
                    asked.user,
                    issuers.join(", ")
                ),
            );
        }
    };
    let Some(target) = target else {
        return unanswerable(
            "target",
            format!(
                "no target is named {:?}: choose one from the targets page",
                asked.target
            ),
        );
    };
    let endpoint = match crate::sessions::authorize::resolve(&target.address).await {
        Ok(endpoint) => endpoint,
        Err(e) => return unanswerable("target", e.to_string()),
    };
    let now = state.clock.unix_secs();
    let request = crate::authz::session_request(source, user, &target, endpoint);
    Ok(Explained::Decision(Box::new(decide(policy, &request, now))))
}

/// The decision of `request`, with the two denials `sessions::plan::decide` makes before
/// the policy is asked.
fn decide(policy: Option<&Policy>, request: &portcullis_policy::Request, now: u64) -> Decision {
    let denied = |reason: String| Decision {
        outcome: portcullis_policy::Outcome::Deny,
        reason,
        source_zone: None,
        target_zone: None,
        service: None,
        cells: Vec::new(),
        roles: Vec::new(),
        role_rule: None,
        constraints: portcullis_policy::Constraints::default(),
        proxmox: None,
        policy_hash: policy.map(|p| p.hash().to_owned()).unwrap_or_default(),
        step_up: None,
    };
    if crate::sessions::plan::is_unroutable(request.target.ip) {
        return denied(format!(
            "the target resolves to {}, which is never a session endpoint",
            request.target.ip
        ));
    }
    match policy {
        Some(policy) => portcullis_policy::evaluate(policy, request, now),
        None => denied("no policy is loaded: everything is denied".into()),
    }
}
