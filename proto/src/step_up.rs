//! Step-up authentication for one session request (`docs/auth.md`, "Step-up MFA").
//!
//! A role's `mfa` constraint that the caller's token does not meet (too weak, too old) makes
//! authorize-session answer 403 `step_up_required` with a [`StepUpChallenge`] in the error
//! body. The client logs in again, fresh, bound to that challenge: OIDC through
//! `POST /v1/auth/oidc/start` with `step_up` set (the controller asks the provider for
//! `max_age=0` and the challenge's `acr_values`, and checks the ID token itself), or a local
//! user's TOTP code at `POST /v1/step-up/{id}/totp`. Either gives a [`StepUpProof`], which the
//! client sends once, with the same target and client key, as
//! [`crate::api::AuthorizeSession::step_up`]. A proof is single-use and counts for that one
//! session request, never for the token.

use serde::{Deserialize, Serialize};

/// The `error` code of the 403 that carries a challenge.
pub const STEP_UP_REQUIRED: &str = "step_up_required";

/// A method that can answer a challenge.
pub const METHOD_OIDC: &str = "oidc";
/// A method that can answer a challenge.
pub const METHOD_TOTP: &str = "totp";

/// What a step-up login must show, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpChallenge {
    pub id: String,
    /// The OIDC `nonce` the step-up login's ID token must carry.
    pub nonce: String,
    /// The target (name) the session request was for: the proof counts only for it.
    pub target: String,
    /// The role whose MFA constraint asks for it.
    pub role: String,
    /// One of these `amr` values, or an `acr` among `acr_values`, must be in the login.
    pub amr: Vec<String>,
    pub acr_values: Vec<String>,
    /// The `max_age` asked of the provider: 0, a fresh authentication. The login's
    /// `auth_time` must be at or after `created_at`.
    pub max_age: u64,
    pub created_at: u64,
    /// Unix seconds; answer before then.
    pub expires_at: u64,
    /// How the caller can answer: `oidc` (a user of the OpenID provider) or `totp` (a local
    /// user with an authenticator app).
    pub methods: Vec<String>,
}

/// `POST /v1/step-up/{id}/totp`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpTotp {
    /// The 6-digit code of the user's authenticator app.
    pub code: String,
}

impl std::fmt::Debug for StepUpTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpTotp")
            .field("code", &"<secret>")
            .finish()
    }
}

/// The answer to a challenge: a single-use proof for the one session request that asked.
#[derive(Clone, Serialize, Deserialize)]
pub struct StepUpProof {
    pub challenge_id: String,
    /// Shown once; the controller keeps its hash.
    pub proof: String,
    /// Use it before then.
    pub expires_at: u64,
    /// What the step-up login showed.
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    pub auth_time: u64,
}

impl std::fmt::Debug for StepUpProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpProof")
            .field("challenge_id", &self.challenge_id)
            .field("proof", &"<secret>")
            .field("expires_at", &self.expires_at)
            .field("amr", &self.amr)
            .field("acr", &self.acr)
            .field("auth_time", &self.auth_time)
            .finish()
    }
}

/// [`crate::api::AuthorizeSession::step_up`]: the proof, sent back with the same target and
/// client key as the request that was challenged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpAnswer {
    pub challenge_id: String,
    pub proof: String,
}

impl std::fmt::Debug for StepUpAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpAnswer")
            .field("challenge_id", &self.challenge_id)
            .field("proof", &"<secret>")
            .finish()
    }
}
