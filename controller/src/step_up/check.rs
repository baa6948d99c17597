//! The step-up decisions, without I/O: does a fresh login answer a challenge, and does a
//! proof fit the session request it comes back with.

use crate::secret::constant_time_eq;
use crate::store::step_ups::{Proven, StepUpRecord};

/// Clock skew tolerated for an `auth_time` slightly in the future.
const FUTURE_SKEW_SECS: i64 = 60;

/// What a step-up login showed: whose it is and how they authenticated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shown<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub amr: &'a [String],
    pub acr: Option<&'a str>,
    pub auth_time: Option<i64>,
}

/// Whose challenge it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
}

/// `Ok` when the login answers the challenge: still open, by its user, authenticated at or
/// after the challenge (a provider that ignored `max_age=0` returns an older `auth_time`),
/// and with one of the `amr` values or an `acr` it asked for. Otherwise why not, in words
/// for the user and the audit log.
pub(crate) fn login_answers(
    challenge: &StepUpRecord,
    owner: Owner<'_>,
    shown: &Shown<'_>,
    now: i64,
) -> Result<(), String> {
    open(challenge, now)?;
    if shown.issuer != owner.issuer || shown.subject != owner.subject {
        return Err(format!(
            "the step-up login is of another user ({} at {}) than the one challenged: log in \
             again as yourself",
            shown.subject, shown.issuer
        ));
    }
    let Some(auth_time) = shown.auth_time else {
        return Err(
            "the provider's ID token has no auth_time, so the freshness of the \
                    step-up login cannot be checked; configure the provider to send it \
                    (require_auth_time)"
                .into(),
        );
    };
    if auth_time < challenge.created_at {
        return Err(format!(
            "the OpenID provider ignored max_age=0: its ID token says you authenticated at \
             {auth_time}, {} s before the step-up challenge at {}, so this was not a fresh \
             login; configure the provider to honour max_age (or prompt=login) for this client",
            challenge.created_at - auth_time,
            challenge.created_at
        ));
    }
    if auth_time > now + FUTURE_SKEW_SECS {
        return Err(format!(
            "the step-up login's auth_time {auth_time} is in the future (now {now}): check the \
             clocks of the provider and the controller"
        ));
    }
    let by_amr = shown.amr.iter().any(|a| challenge.amr.contains(a));
    let by_acr = shown
        .acr
        .is_some_and(|acr| challenge.acr.iter().any(|a| a == acr));
    if !by_amr && !by_acr {
        return Err(format!(
            "the step-up login is weaker than asked: it showed amr [{}]{}, and role `{}` \
             needs {}; the provider ignored acr_values or the second factor was skipped",
            shown.amr.join(", "),
            shown
                .acr
                .map(|a| format!(" and acr {a}"))
                .unwrap_or_default(),
            challenge.role,
            wanted(challenge)
        ));
    }
    Ok(())
}

/// What the challenge asks for, in words.
pub(crate) fn wanted(challenge: &StepUpRecord) -> String {
    let mut parts = Vec::new();
    if !challenge.amr.is_empty() {
        parts.push(format!("amr one of [{}]", challenge.amr.join(", ")));
    }
    if !challenge.acr.is_empty() {
        parts.push(format!("acr one of [{}]", challenge.acr.join(", ")));
    }
    parts.join(" or ")
}

/// Neither answered, nor spent, nor expired.
fn open(challenge: &StepUpRecord, now: i64) -> Result<(), String> {
    if challenge.used_at.is_some() {
        return Err("this step-up challenge was already used".into());
    }
    if challenge.proof_hash.is_some() {
        return Err("this step-up challenge was already answered".into());
    }
    if challenge.expires_at <= now {
        return Err("this step-up challenge has expired; ask for the session again".into());
    }
    Ok(())
}

/// The session request a proof comes back with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Use<'a> {
    pub user_id: &'a str,
    pub target_id: &'a str,
    pub target_name: &'a str,
    /// SHA-256 of the request's `client_public_key` text.
    pub client_key_hash: &'a [u8],
    /// SHA-256 of the proof sent.
    pub proof_hash: &'a [u8],
}

/// The step-up login's facts when the proof fits: the challenge's user, target and client
/// key, answered, not spent and not expired, and the proof the one handed out.
pub(crate) fn proof_fits<'c>(
    challenge: &'c StepUpRecord,
    used: &Use<'_>,
    now: i64,
) -> Result<&'c Proven, String> {
    let right_proof = challenge
        .proof_hash
        .as_deref()
        .is_some_and(|hash| constant_time_eq(hash, used.proof_hash));
    if challenge.user_id != used.user_id || !right_proof {
        return Err("the step-up proof is not valid for this challenge".into());
    }
    if challenge.used_at.is_some() {
        return Err(
            "the step-up proof was already used: a proof opens one session; step up again".into(),
        );
    }
    if challenge.target_id != used.target_id {
        return Err(format!(
            "the step-up proof was made for target {}, not {}: it counts only for the \
             session request that asked for it; step up again for {}",
            challenge.target_name, used.target_name, used.target_name
        ));
    }
    if !constant_time_eq(&challenge.client_key_hash, used.client_key_hash) {
        return Err(
            "the step-up proof was made for another client key: it counts only for \
                    the session request that asked for it"
                .into(),
        );
    }
    if challenge.expires_at <= now {
        return Err("the step-up proof has expired; ask for the session again".into());
    }
    challenge
        .proven
        .as_ref()
        .ok_or_else(|| "the step-up challenge was not answered".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod tests {
    use super::*;

    fn challenge() -> StepUpRecord {
        StepUpRecord {
            id: "su_1".into(),
            user_id: "u_1".into(),
            target_id: "t_1".into(),
            target_name: "web-01".into(),
            client_key_hash: vec![1; 32],
            role: "admin".into(),
            amr: vec!["mfa".into(), "otp".into()],
            acr: vec!["gold".into()],
            nonce: "n".into(),
            created_at: 1000,
            expires_at: 1300,
            login_id: None,
            failed_attempts: 0,
            proof_hash: None,
            proven: None,
            used_at: None,
            session_id: None,
        }
    }

    const OWNER: Owner<'static> = Owner {
        issuer: "https://idp",
        subject: "alice",
    };

    fn shown<'a>(amr: &'a [String], acr: Option<&'a str>, auth_time: i64) -> Shown<'a> {
        Shown {
            issuer: "https://idp",
            subject: "alice",
            amr,
            acr,
            auth_time: Some(auth_time),
        }
    }

    #[test]
    fn a_fresh_strong_login_of_the_user_answers() {
        let c = challenge();
        let otp = vec!["pwd".to_string(), "otp".to_string()];
        assert_eq!(
            login_answers(&c, OWNER, &shown(&otp, None, 1000), 1010),
            Ok(())
        );
        let pwd = vec!["pwd".to_string()];
        assert_eq!(
            login_answers(&c, OWNER, &shown(&pwd, Some("gold"), 1005), 1010),
            Ok(())
        );
    }

    #[test]
    fn a_provider_that_ignored_max_age_is_named() {
        let c = challenge();
        let otp = vec!["otp".to_string()];
        let err = login_answers(&c, OWNER, &shown(&otp, None, 999), 1010).unwrap_err();
        assert!(err.contains("ignored max_age=0"), "{err}");
        let mut none = shown(&otp, None, 0);
        none.auth_time = None;
        assert!(login_answers(&c, OWNER, &none, 1010)
            .unwrap_err()
            .contains("no auth_time"));
    }

    #[test]
    fn a_weaker_login_or_another_user_is_refused() {
        let c = challenge();
        let pwd = vec!["pwd".to_string()];
        let err = login_answers(&c, OWNER, &shown(&pwd, Some("bronze"), 1005), 1010).unwrap_err();
        assert!(err.contains("weaker than asked"), "{err}");
        assert!(err.contains("acr bronze"), "{err}");
        let otp = vec!["otp".to_string()];
        let mut bob = shown(&otp, None, 1005);
        bob.subject = "bob";
        assert!(login_answers(&c, OWNER, &bob, 1010)
            .unwrap_err()
            .contains("another user"));
        let err = login_answers(&c, OWNER, &shown(&otp, None, 1005), 1300).unwrap_err();
        assert!(err.contains("expired"), "{err}");
    }

    fn proven() -> StepUpRecord {
        let mut c = challenge();
        c.proof_hash = Some(vec![9; 32]);
        c.proven = Some(Proven {
            at: 1010,
            method: "oidc".into(),
            amr: vec!["otp".into()],
            acr: None,
            auth_time: 1005,
        });
        c
    }

    const USE: Use<'static> = Use {
        user_id: "u_1",
        target_id: "t_1",
        target_name: "web-01",
        client_key_hash: &[1; 32],
        proof_hash: &[9; 32],
    };

    #[test]
    fn a_proof_fits_only_its_request_once() {
        let c = proven();
        assert_eq!(proof_fits(&c, &USE, 1020).unwrap().auth_time, 1005);
        let other_target = Use {
            target_id: "t_2",
            target_name: "db-01",
            ..USE
        };
        let err = proof_fits(&c, &other_target, 1020).unwrap_err();
        assert!(err.contains("made for target web-01, not db-01"), "{err}");
        let other_key = Use {
            client_key_hash: &[2; 32],
            ..USE
        };
        assert!(proof_fits(&c, &other_key, 1020)
            .unwrap_err()
            .contains("another client key"));
        let wrong = Use {
            proof_hash: &[8; 32],
            ..USE
        };
        assert!(proof_fits(&c, &wrong, 1020)
            .unwrap_err()
            .contains("not valid"));
        let stranger = Use {
            user_id: "u_2",
            ..USE
        };
        assert!(proof_fits(&c, &stranger, 1020)
            .unwrap_err()
            .contains("not valid"));
        let mut spent = proven();
        spent.used_at = Some(1015);
        assert!(proof_fits(&spent, &USE, 1020)
            .unwrap_err()
            .contains("already used"));
        assert!(proof_fits(&c, &USE, 1300).unwrap_err().contains("expired"));
    }
}
