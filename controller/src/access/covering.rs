//! Authorize-session under an approved request: which of the user's requests may open a
//! session to a target when the standing roles do not (or when the client names one), and
//! the checks of a run's sessions (its proof, its state, its target list). The choice is
//! pure ([`choose`]); the caller reads the requests and the run's proof.

use std::net::{IpAddr, SocketAddr};

use portcullis_policy::{Decision, Outcome, Policy};
use portcullis_proto::access::{run_proof_message, UnderRequest};

use super::policy_edge;
use crate::store::access_requests::AccessRecord;
use crate::store::targets::TargetRecord;
use crate::store::users::UserRecord;

/// A session allowed under a request: the decision made with the role granted, and the
/// request.
#[derive(Debug)]
pub(crate) struct Covered {
    pub decision: Decision,
    pub request_id: String,
    pub expires_at: u64,
}

/// What the choice needs besides the requests.
pub(crate) struct Ask<'a> {
    pub policy: &'a Policy,
    pub user: &'a UserRecord,
    pub source: IpAddr,
    pub target: &'a TargetRecord,
    pub endpoint: SocketAddr,
    /// The request the client named, with the run's proof.
    pub under: Option<&'a UnderRequest>,
    /// The client's public key as sent (base64url SPKI): what a run's proof signs.
    pub client_public_key: &'a str,
    pub now: u64,
}

/// Why no request opens the session: the sentence for the caller and the event, and the
/// last decision made under a request, if one got that far.
#[derive(Debug)]
pub(crate) struct NotCovered {
    pub reason: String,
    pub decision: Option<Box<Decision>>,
}

/// Picks the request that opens the session among `requests` (the user's approved,
/// unexpired ones, oldest first): the named one only when `ask.under` is given, else the
/// first without a run that covers the target and whose role the policy allows there.
/// `Ok(None)`: no request applies (and none was named).
pub(crate) fn choose(
    ask: &Ask<'_>,
    requests: &[AccessRecord],
) -> Result<Option<Covered>, NotCovered> {
    let now = crate::clock::to_i64(ask.now);
    let refuse = |reason: String| NotCovered {
        reason,
        decision: None,
    };
    if let Some(under) = ask.under {
        let Some(request) = requests
            .iter()
            .find(|r| r.id == under.request_id && r.expires_at > now)
        else {
            return Err(refuse(format!(
                "request {} is not an approved, unexpired request of yours: \
                 `portcullis request list` shows yours",
                under.request_id
            )));
        };
        check_run(request, ask.target, under, ask.client_public_key)
            .map_err(|reason| refuse(format!("request {}: {reason}", request.id)))?;
        let decision = under_request(ask, request);
        if !covers(request, ask.target, decision.target_zone.as_deref()) {
            return Err(refuse(format!(
                "request {} does not cover target {}: it covers {}",
                request.id,
                ask.target.name,
                scope_text(request)
            )));
        }
        return allowed(request, decision).map(Some);
    }
    let mut last = None;
    for request in requests
        .iter()
        .filter(|r| r.run.is_none() && r.expires_at > now)
    {
        let decision = under_request(ask, request);
        if !covers(request, ask.target, decision.target_zone.as_deref()) {
            continue;
        }
        match allowed(request, decision) {
            Ok(covered) => return Ok(Some(covered)),
            Err(denied) => last = Some(denied),
        }
    }
    match last {
        Some(denied) => Err(denied),
        None => Ok(None),
    }
}

fn under_request(ask: &Ask<'_>, request: &AccessRecord) -> Decision {
    policy_edge::evaluate_granted(
        ask.policy,
        ask.user,
        ask.source,
        ask.target,
        ask.endpoint,
        &request.role,
        ask.now,
    )
}

fn allowed(request: &AccessRecord, mut decision: Decision) -> Result<Covered, NotCovered> {
    if decision.outcome != Outcome::Allow {
        return Err(NotCovered {
            reason: format!(
                "under request {} (role {}): {}",
                request.id, request.role, decision.reason
            ),
            decision: Some(Box::new(decision)),
        });
    }
    // Break-glass: recorded wherever the session can be (the gateway records SSH sessions).
    if request.break_glass {
        decision.constraints.recording.required = true;
    }
    Ok(Covered {
        decision,
        request_id: request.id.clone(),
        expires_at: crate::clock::to_u64(request.expires_at),
    })
}

/// A run's sessions: the run started and not finished, the target named in the request,
/// the proof a valid signature by the run's key over this session's key. A request without
/// a run needs no proof (and a proof for it is refused: it signs nothing we know).
pub(crate) fn check_run(
    request: &AccessRecord,
    target: &TargetRecord,
    under: &UnderRequest,
    client_public_key: &str,
) -> Result<(), String> {
    let Some(run) = &request.run else {
        return match under.run_proof {
            None => Ok(()),
            Some(_) => Err("it has no run, so a run proof means nothing here".into()),
        };
    };
    let Some(proof) = &under.run_proof else {
        return Err("it belongs to a run: only that run's sessions may use it".into());
    };
    let (Some(key), Some(_)) = (&run.public_key, run.started_at) else {
        return Err("its run has not started".into());
    };
    if run.finished_at.is_some() {
        return Err("its run has finished".into());
    }
    if !request
        .targets
        .iter()
        .any(|t| *t == target.name || *t == target.id)
    {
        return Err(format!(
            "target {} is not in the run's target list ({})",
            target.name,
            request.targets.join(", ")
        ));
    }
    let spki = portcullis_proto::keys::unb64(key).map_err(|_| "its run key is corrupt")?;
    let raw = portcullis_proto::keys::ed25519_from_spki(&spki)
        .map_err(|_| "its run key is not Ed25519".to_owned())?;
    let signature =
        portcullis_proto::keys::unb64(proof).map_err(|_| "the run proof is not base64url")?;
    let message = run_proof_message(&request.id, client_public_key);
    portcullis_crypto::ed25519::verify(&raw, &message, &signature)
        .map_err(|_| "the run proof does not verify with the run's key".to_owned())
}

fn scope_text(request: &AccessRecord) -> String {
    match &request.zone {
        Some(zone) => format!("zone {zone}"),
        None => request.targets.join(", "),
    }
}

/// Whether request `record` covers `target`: it names the target (by name or id), or its
/// zone is the zone the decision placed the target in.
pub(crate) fn covers(
    record: &AccessRecord,
    target: &TargetRecord,
    target_zone: Option<&str>,
) -> bool {
    let named = record
        .targets
        .iter()
        .any(|t| *t == target.name || *t == target.id);
    let zoned = record.zone.is_some() && record.zone.as_deref() == target_zone;
    named || zoned
}

#[cfg(test)]
#[path = "covering_tests.rs"]
mod tests;
