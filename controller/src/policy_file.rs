//! Loading the policy file and applying a reload to live sessions.

use std::sync::Arc;

use portcullis_policy::{Outcome, Policy};
use portcullis_proto::link::EndReason;

use crate::audit::{Actor, AuditEvent, Event};
use crate::state::AppState;
use crate::store::{sessions as session_rows, targets, users};

/// Reads and parses a policy file; the error lists every problem with its line.
pub(crate) fn load(path: &std::path::Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Policy::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) struct ReloadOutcome {
    pub hash: String,
    pub sessions_ended: usize,
}

/// Re-reads the configured policy file. An invalid file is refused and the old policy stays;
/// a valid one replaces it and ends the live sessions it no longer allows.
pub(crate) async fn reload(state: &AppState, actor: Actor) -> Result<ReloadOutcome, String> {
    let path = state
        .config
        .policy_file
        .clone()
        .ok_or_else(|| "no policy file is configured (policy.file)".to_string())?;
    let loaded = load(&path);
    let record = |event: Event| async {
        let event = AuditEvent::new(actor.clone(), event);
        state.audit_alone(event).await.map_err(|e| e.to_string())
    };
    let policy = match loaded {
        Ok(p) => Arc::new(p),
        Err(message) => {
            record(Event::PolicyReloadFailed {
                reason: message.clone(),
            })
            .await?;
            return Err(message);
        }
    };
    let hash = policy.hash().to_owned();
    let details = match state.policy() {
        Some(previous) => Some(crate::policy_preview::summary(
            &crate::policy_preview::compare(previous, policy.clone()).await,
        )),
        None => None,
    };
    record(Event::PolicyReloaded {
        policy_hash: hash.clone(),
        details,
    })
    .await?;
    state.policy_tx.send_replace(Some(policy.clone()));
    let ended = end_disallowed(state, &policy)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ReloadOutcome {
        hash,
        sessions_ended: ended,
    })
}

/// Reloads the policy at every SIGHUP until `shutdown` (an invalid file is refused and the
/// old policy stays; both are audited by [`reload`]).
pub(crate) async fn reload_on_hangup(
    state: AppState,
    mut hangups: tokio::signal::unix::Signal,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match reload(&state, Actor::system()).await {
            Ok(outcome) => {
                tracing::info!(policy.hash = %outcome.hash, sessions.ended = outcome.sessions_ended, "policy reloaded")
            }
            Err(message) => {
                tracing::error!(error = %portcullis_proto::text::escaped(&message), "policy reload refused; the old policy stays")
            }
        }
    }
}

/// Ends the live sessions `policy` no longer allows (re-evaluated as at authorisation,
/// from the stored user, target and endpoint; see [`disallowed`]). Used by a reload and by
/// a catalog sync that removed or changed targets. Returns how many it ended.
pub(crate) async fn end_disallowed(
    state: &AppState,
    policy: &Policy,
) -> Result<usize, crate::store::StoreError> {
    let mut ended = 0;
    for d in disallowed(state, policy).await? {
        if crate::sessions::lifecycle::end_session(
            state,
            &d.session,
            EndReason::PolicyChanged,
            Actor::system(),
        )
        .await?
        .is_some()
        {
            ended += 1;
        }
    }
    Ok(ended)
}

/// A live session that a policy no longer allows.
pub(crate) struct Disallowed {
    pub session: String,
    /// The user's name and the target's (their ids when they are gone).
    pub user: String,
    pub target: String,
    pub reason: String,
}

/// The live sessions `policy` no longer allows: each re-evaluated as at authorisation, from
/// the stored user, target and endpoint; a session whose user or target is gone, or whose
/// target's address is now another one, is no longer allowed. A reload ends exactly these,
/// and its dry run lists them.
pub(crate) async fn disallowed(
    state: &AppState,
    policy: &Policy,
) -> Result<Vec<Disallowed>, crate::store::StoreError> {
    let live = {
        let mut conn = state.store.conn().await?;
        let mut out = Vec::new();
        for s in session_rows::list(&mut conn, None, 100_000).await? {
            if s.state.is_live() {
                out.push(s);
            }
        }
        out
    };
    let now = state.clock.unix_secs();
    let mut out = Vec::new();
    for s in live {
        let (user, target, granted) = {
            let mut conn = state.store.conn().await?;
            let at = crate::clock::to_i64(now);
            (
                users::get(&mut conn, &s.user_id).await?,
                targets::find(&mut conn, &s.target_id).await?,
                // A session under an approved access request (or a forward of one) is judged
                // with the request's role granted.
                crate::store::access_requests::granted_role_of_session(
                    &mut conn,
                    s.parent_session_id.as_deref().unwrap_or(&s.id),
                    at,
                )
                .await?,
            )
        };
        let names = (
            user.as_ref()
                .map_or_else(|| s.user_id.clone(), |u| u.username.clone()),
            target
                .as_ref()
                .map_or_else(|| s.target_id.clone(), |t| t.name.clone()),
        );
        let refusal: Option<String> = match (
            user,
            target,
            s.endpoint.parse::<std::net::SocketAddr>(),
            s.client_addr.parse(),
        ) {
            // A forward of a gateway session: its destination is an address, not a target.
            (Some(user), _, Ok(endpoint), Ok(source)) if s.parent_session_id.is_some() => {
                let mut request = crate::authz::forward_request(source, &user, endpoint);
                request.identity.granted_roles = granted.iter().cloned().collect();
                denial(portcullis_policy::evaluate(policy, &request, now))
            }
            // A target whose address is now another one (a catalog sync, an edit): the
            // session's connections go to an address that is no longer the target's, which
            // may be another host's by now. Only a literal address can be compared; a host
            // name is resolved at authorisation.
            (Some(_), Some(target), Ok(endpoint), Ok(_))
                if target
                    .address
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|now| now != endpoint) =>
            {
                Some(format!(
                    "the target's address is now {}, not {endpoint}",
                    target.address
                ))
            }
            (Some(user), Some(target), Ok(endpoint), Ok(source)) => {
                let mut request = crate::authz::session_request(source, &user, &target, endpoint);
                request.identity.granted_roles = granted.iter().cloned().collect();
                denial(portcullis_policy::evaluate(policy, &request, now))
            }
            (None, _, _, _) => Some("its user is gone".into()),
            (_, None, _, _) => Some("its target is gone".into()),
            _ => Some("its stored endpoint or client address does not parse".into()),
        };
        if let Some(reason) = refusal {
            out.push(Disallowed {
                session: s.id,
                user: names.0,
                target: names.1,
                reason,
            });
        }
    }
    Ok(out)
}

fn denial(d: portcullis_policy::Decision) -> Option<String> {
    (d.outcome != Outcome::Allow).then_some(d.reason)
}
