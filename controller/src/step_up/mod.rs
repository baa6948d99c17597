//! Step-up MFA bound to one session request (docs/auth.md, "Step-up MFA").
//!
//! 1. authorize-session: the policy denies only for a role's MFA constraint
//!    ([`portcullis_policy::StepUp`]); [`challenge`] stores a challenge bound to the user,
//!    the target and the request's client key, with its `step_up_required` event, and the
//!    client gets it in a 403 `step_up_required`.
//! 2. A fresh login answers it: OIDC (`api::oidc`, with `max_age=0`, the challenge's
//!    `acr_values` and its nonce; the ID token is checked by [`check::login_answers`]) or a
//!    local user's TOTP code ([`answer_totp`]). [`prove`] hands out a single-use proof, kept
//!    hashed, with its `step_up_proven` event.
//! 3. The same request again with the proof: [`accept`] checks it fits
//!    ([`check::proof_fits`]); the policy is asked again with the step-up login's amr, acr
//!    and auth_time in place of the token's (for this one decision), and the session's commit
//!    spends the proof (`store::step_ups::spend`), so a replay opens nothing.
//!
//! Every refusal is audited as `step_up_failed`.

pub(crate) mod check;

use portcullis_policy::StepUp;
use portcullis_proto::step_up::{
    StepUpAnswer, StepUpChallenge, StepUpProof, METHOD_OIDC, METHOD_TOTP,
};

use crate::api::extract::Principal;
use crate::audit::{event, Actor, AuditEvent, Event};
use crate::clock;
use crate::ids::{new_id, new_secret, secret_hash, IdKind};
use crate::keys::KeyError;
use crate::local_auth::totp::{self, TotpSecret, TotpVerdict};
use crate::local_users::{totp_seal_context, LOCAL_USERS_ISSUER};
use crate::secret::ExposeSecret as _;
use crate::state::AppState;
use crate::store::step_ups::{self, Proven, StepUpRecord};
use crate::store::targets::TargetRecord;
use crate::store::StoreError;

/// How long a challenge, and the proof that answers it, can be used.
pub(crate) const CHALLENGE_TTL_SECS: u64 = 300;
/// Wrong TOTP codes a challenge tolerates before it is burnt.
pub(crate) const MAX_FAILED_ATTEMPTS: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StepUpError {
    /// The answer or proof is refused; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Issues a challenge for `need` on this request and records `step_up_required`. `None` when
/// the user has no way to answer one (not an OpenID provider's user while OIDC is on, nor a
/// local user with TOTP): the denial stands.
pub(crate) async fn challenge(
    state: &AppState,
    principal: &Principal,
    target: &TargetRecord,
    client_public_key: &str,
    need: &StepUp,
    reason: &str,
) -> Result<Option<StepUpChallenge>, StepUpError> {
    let methods = methods(state, principal).await?;
    if methods.is_empty() {
        return Ok(None);
    }
    let now = state.clock.unix_secs();
    let record = StepUpRecord {
        id: new_id(IdKind::StepUp),
        user_id: principal.user.id.clone(),
        target_id: target.id.clone(),
        target_name: target.name.clone(),
        client_key_hash: secret_hash(client_public_key),
        role: need.role.clone(),
        amr: need.amr.clone(),
        acr: need.acr.clone(),
        nonce: new_secret(),
        created_at: clock::to_i64(now),
        expires_at: clock::to_i64(now + CHALLENGE_TTL_SECS),
        login_id: None,
        failed_attempts: 0,
        proof_hash: None,
        proven: None,
        used_at: None,
        session_id: None,
    };
    let mut tx = state.begin_audited().await?;
    step_ups::prune(tx.read(), record.created_at).await?;
    step_ups::insert(tx.write(), &record).await?;
    let required = Event::StepUpRequired {
        reason: reason.to_owned(),
        details: event::StepUpRequired {
            challenge_id: record.id.clone(),
            target_id: target.id.clone(),
            target_name: target.name.clone(),
            role: need.role.clone(),
            amr: need.amr.clone(),
            acr: need.acr.clone(),
            expires_at: now + CHALLENGE_TTL_SECS,
        },
    };
    tx.commit(AuditEvent::new(principal.actor(), required).target(&target.id))
        .await?;
    Ok(Some(StepUpChallenge {
        id: record.id,
        nonce: record.nonce,
        target: target.name.clone(),
        role: need.role.clone(),
        amr: need.amr.clone(),
        acr_values: need.acr.clone(),
        max_age: 0,
        created_at: now,
        expires_at: now + CHALLENGE_TTL_SECS,
        methods,
    }))
}

/// How this user can answer a challenge: `oidc` for a user of the configured provider,
/// `totp` for a local user with an authenticator app.
async fn methods(state: &AppState, principal: &Principal) -> Result<Vec<String>, StepUpError> {
    let user = &principal.user;
    let mut methods = Vec::new();
    if let Some(relying) = state.oidc.as_deref() {
        if relying.config().issuer == user.issuer {
            methods.push(METHOD_OIDC.to_owned());
        }
    }
    if user.issuer == LOCAL_USERS_ISSUER && state.config.local_auth.enabled {
        let mut conn = state.store.conn().await?;
        let found =
            crate::store::local_users::by_name(&mut conn, LOCAL_USERS_ISSUER, &user.subject)
                .await?;
        if found.is_some_and(|f| f.local.totp_secret.is_some()) {
            methods.push(METHOD_TOTP.to_owned());
        }
    }
    Ok(methods)
}

/// Hands out the single-use proof for an answered challenge, with `step_up_proven`.
async fn prove(
    state: &AppState,
    challenge: &StepUpRecord,
    proven: Proven,
    actor: Actor,
    totp_step: Option<(&str, u64)>,
) -> Result<StepUpProof, StepUpError> {
    let proof = new_secret();
    let mut tx = state.begin_audited().await?;
    if let Some((user_id, step)) = totp_step {
        let step = clock::to_i64(step);
        let at = proven.at;
        if !crate::store::local_users::accept_totp_step(tx.write(), user_id, step, at).await? {
            return Err(StepUpError::Refused(
                "this TOTP code was already used; wait for the next one".into(),
            ));
        }
    }
    if !step_ups::prove(tx.write(), &challenge.id, &secret_hash(&proof), &proven).await? {
        return Err(StepUpError::Refused(
            "this step-up challenge was already answered, or has expired; ask for the session \
             again"
                .into(),
        ));
    }
    let event = Event::StepUpProven {
        details: event::StepUpProven {
            challenge_id: challenge.id.clone(),
            target_name: challenge.target_name.clone(),
            method: proven.method.clone(),
            amr: proven.amr.clone(),
            acr: proven.acr.clone(),
            auth_time: clock::to_u64(proven.auth_time),
        },
    };
    tx.commit(AuditEvent::new(actor, event).target(&challenge.target_id))
        .await?;
    Ok(StepUpProof {
        challenge_id: challenge.id.clone(),
        proof,
        expires_at: clock::to_u64(challenge.expires_at),
        amr: proven.amr,
        acr: proven.acr,
        auth_time: clock::to_u64(proven.auth_time),
    })
}

/// Records a refused answer or proof (`step_up_failed`) and returns the refusal.
pub(crate) async fn refuse(
    state: &AppState,
    actor: Actor,
    challenge: Option<&StepUpRecord>,
    reason: String,
) -> StepUpError {
    let event = Event::StepUpFailed {
        reason: reason.clone(),
        details: event::StepUpRef {
            challenge_id: challenge.map(|c| c.id.clone()),
            target_name: challenge.map(|c| c.target_name.clone()),
        },
    };
    let mut audited = AuditEvent::new(actor, event);
    if let Some(challenge) = challenge {
        audited = audited.target(&challenge.target_id);
    }
    match state.audit_alone(audited).await {
        Ok(()) => StepUpError::Refused(reason),
        Err(e) => StepUpError::Store(e),
    }
}

/// The OIDC step-up login `login_id`'s challenge, if it is one.
pub(crate) async fn of_login(
    state: &AppState,
    login_id: &str,
) -> Result<Option<StepUpRecord>, StoreError> {
    let mut conn = state.store.conn().await?;
    step_ups::by_login(&mut conn, login_id).await
}

/// The challenged user as the actor of a step-up login's events.
fn actor_of(user: &crate::store::users::UserRecord, source: &str) -> Actor {
    Actor {
        user_id: Some(user.id.clone()),
        username: Some(user.username.clone()),
        groups: user.groups.clone(),
        source: Some(source.to_owned()),
    }
}

/// Checks an OIDC step-up login's identity against its challenge
/// ([`check::login_answers`]); a refusal is audited. The actor of its events when it answers.
pub(crate) async fn check_oidc(
    state: &AppState,
    challenge: &StepUpRecord,
    identity: &crate::oidc::OidcIdentity,
    source: &str,
) -> Result<Actor, StepUpError> {
    let owner = {
        let mut conn = state.store.conn().await?;
        crate::store::users::get(&mut conn, &challenge.user_id).await?
    };
    let Some(owner) = owner else {
        return Err(StepUpError::Refused(
            "the challenged user no longer exists".into(),
        ));
    };
    let shown = check::Shown {
        issuer: &identity.issuer,
        subject: &identity.subject,
        amr: &identity.amr,
        acr: identity.acr.as_deref(),
        auth_time: identity.auth_time,
    };
    let owner_ref = check::Owner {
        issuer: &owner.issuer,
        subject: &owner.subject,
    };
    let now = clock::to_i64(state.clock.unix_secs());
    let actor = actor_of(&owner, source);
    match check::login_answers(challenge, owner_ref, &shown, now) {
        Ok(()) => Ok(actor),
        Err(reason) => Err(refuse(state, actor, Some(challenge), reason).await),
    }
}

/// The redeem of an OIDC step-up login: checked again, then the proof.
pub(crate) async fn answer_oidc(
    state: &AppState,
    challenge: &StepUpRecord,
    identity: &crate::oidc::OidcIdentity,
    source: &str,
) -> Result<StepUpProof, StepUpError> {
    let actor = check_oidc(state, challenge, identity, source).await?;
    let proven = Proven {
        at: clock::to_i64(state.clock.unix_secs()),
        method: METHOD_OIDC.to_owned(),
        amr: identity.amr.clone(),
        acr: identity.acr.clone(),
        auth_time: identity.auth_time.unwrap_or_default(),
    };
    prove(state, challenge, proven, actor, None).await
}

/// `POST /v1/step-up/{id}/totp`: a local user's TOTP code answers their challenge. Wrong
/// codes are counted (the challenge is burnt after [`MAX_FAILED_ATTEMPTS`]) and audited; a
/// code already used (at a login or another step-up) is refused.
pub(crate) async fn answer_totp(
    state: &AppState,
    principal: &Principal,
    challenge_id: &str,
    code: &str,
) -> Result<StepUpProof, StepUpError> {
    let now = state.clock.unix_secs();
    let (challenge, found) = {
        let mut conn = state.store.conn().await?;
        let challenge = step_ups::get(&mut conn, challenge_id).await?;
        let found = crate::store::local_users::by_name(
            &mut conn,
            LOCAL_USERS_ISSUER,
            &principal.user.subject,
        )
        .await?;
        (challenge, found)
    };
    let challenge = challenge.filter(|c| c.user_id == principal.user.id);
    let Some(challenge) = challenge else {
        let reason = format!("no step-up challenge {challenge_id:?} of yours");
        return Err(refuse(state, principal.actor(), None, reason).await);
    };
    let refused = |reason: String| refuse(state, principal.actor(), Some(&challenge), reason);
    if principal.user.issuer != LOCAL_USERS_ISSUER {
        return Err(refused("TOTP step-up is for local users; log in again at your OpenID provider (`portcullis connect` does it)".into()).await);
    }
    if challenge.failed_attempts >= MAX_FAILED_ATTEMPTS {
        return Err(refused(
            "too many wrong codes: this step-up challenge is burnt; ask for the session again"
                .into(),
        )
        .await);
    }
    let sealed = found
        .as_ref()
        .filter(|f| f.user.id == principal.user.id)
        .and_then(|f| f.local.totp_secret.clone());
    let Some(sealed) = sealed else {
        return Err(refused("you have no authenticator app enrolled: log in with `portcullis login --password` to enrol one".into()).await);
    };
    let owner = check::Owner {
        issuer: &principal.user.issuer,
        subject: &principal.user.subject,
    };
    let fresh = [METHOD_TOTP.to_owned(), "otp".to_owned(), "mfa".to_owned()];
    let shown = check::Shown {
        issuer: &principal.user.issuer,
        subject: &principal.user.subject,
        amr: &fresh[1..],
        acr: None,
        auth_time: Some(clock::to_i64(now)),
    };
    if let Err(reason) = check::login_answers(&challenge, owner, &shown, clock::to_i64(now)) {
        return Err(refused(reason).await);
    }
    let secret = open_totp(state, &principal.user.id, &sealed)?;
    let last = found
        .as_ref()
        .and_then(|f| f.local.totp_last_step)
        .map(clock::to_u64);
    let step = match totp::verify(&secret, code, now, last) {
        TotpVerdict::Accepted { step } => step,
        TotpVerdict::Reused { .. } => {
            return Err(
                refused("this TOTP code was already used; wait for the next one".into()).await,
            );
        }
        TotpVerdict::Wrong => {
            let failures = {
                let mut conn = state.store.conn().await?;
                step_ups::count_failure(&mut conn, &challenge.id).await?
            };
            let left = (MAX_FAILED_ATTEMPTS - failures).max(0);
            return Err(refused(format!(
                "wrong TOTP code; {left} attempt(s) left for this step-up"
            ))
            .await);
        }
    };
    let proven = Proven {
        at: clock::to_i64(now),
        method: METHOD_TOTP.to_owned(),
        amr: fresh[1..].to_vec(),
        acr: None,
        auth_time: clock::to_i64(now),
    };
    let user_id = principal.user.id.clone();
    prove(
        state,
        &challenge,
        proven,
        principal.actor(),
        Some((&user_id, step)),
    )
    .await
}

fn open_totp(state: &AppState, user_id: &str, sealed: &[u8]) -> Result<TotpSecret, StepUpError> {
    let plain = state
        .keys
        .open_secret(&totp_seal_context(user_id), sealed)?;
    let text = std::str::from_utf8(plain.expose_secret())
        .map_err(|_| StepUpError::Refused("the stored TOTP secret cannot be read".into()))?;
    TotpSecret::from_base32(text).map_err(|e| {
        StepUpError::Refused(format!(
            "the stored TOTP secret cannot be read ({e}); an admin resets the user with \
             `portcullis controller users reset`"
        ))
    })
}

/// authorize-session with a proof: the step-up login's facts when the proof fits this
/// request; a refusal is audited.
pub(crate) async fn accept(
    state: &AppState,
    principal: &Principal,
    target: &TargetRecord,
    client_public_key: &str,
    answer: &StepUpAnswer,
) -> Result<Proven, StepUpError> {
    let challenge = {
        let mut conn = state.store.conn().await?;
        step_ups::get(&mut conn, &answer.challenge_id).await?
    };
    let Some(challenge) = challenge.filter(|c| c.user_id == principal.user.id) else {
        let reason = format!("no step-up challenge {:?} of yours", answer.challenge_id);
        return Err(refuse(state, principal.actor(), None, reason).await);
    };
    let key_hash = secret_hash(client_public_key);
    let proof_hash = secret_hash(&answer.proof);
    let used = check::Use {
        user_id: &principal.user.id,
        target_id: &target.id,
        target_name: &target.name,
        client_key_hash: &key_hash,
        proof_hash: &proof_hash,
    };
    let now = clock::to_i64(state.clock.unix_secs());
    match check::proof_fits(&challenge, &used, now) {
        Ok(proven) => Ok(proven.clone()),
        Err(reason) => Err(refuse(state, principal.actor(), Some(&challenge), reason).await),
    }
}
