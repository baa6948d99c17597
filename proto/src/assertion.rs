//! The service-account assertion: what an automation identity (a CI job running Terraform or
//! Ansible) signs with its own key and exchanges for an API token.
//!
//! A service account has no password and no browser; it proves possession of an Ed25519 key
//! the controller holds the public half of. The proof is a compact JWS (EdDSA over Ed25519,
//! nothing else) whose header names the key by its fingerprint (`kid`, see
//! [`crate::keys::ed25519_fingerprint`]) and whose claims say who signs (`iss` =
//! `service:NAME`, `sub` = `NAME`), for which controller (`aud`: its API URL, compared
//! exactly), when (`iat`, `exp`, at most [`MAX_LIFETIME_SECS`] apart) and a random `jti` of at
//! least 128 bits.
//!
//! [`verify`] is pure: the account's keys, the expected audience and the clock are passed in.
//! It cannot stop a replay on its own: the controller must remember each accepted `jti` (per
//! account) until [`Verified::remember_until`] and refuse an assertion whose `jti` it already
//! holds. Because `exp` is at most five minutes after `iat`, that memory stays small.
//! The account name read by [`unverified_account`] only chooses whose keys to try; nothing in
//! an assertion is trusted before [`verify`] accepts it.

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use portcullis_crypto::ed25519::SigningKey;
use serde::{Deserialize, Serialize};

use crate::keys::{b64, ed25519_fingerprint, unb64};

/// The prefix of every assertion's issuer: `service:NAME`.
pub const SERVICE_ISSUER_PREFIX: &str = "service:";
/// The longest an assertion may live (`exp - iat`); a longer one is refused even if unexpired.
pub const MAX_LIFETIME_SECS: u64 = 300;
/// The fewest random bytes a `jti` carries (128 bits).
pub const MIN_JTI_BYTES: usize = 16;
/// The most bytes a `jti` may decode to: the controller stores it, so it is bounded.
pub const MAX_JTI_BYTES: usize = 64;

/// The claims of a service-account assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionClaims {
    /// `service:NAME`.
    pub iss: String,
    /// The account's name.
    pub sub: String,
    /// The controller's API URL, exactly as the controller knows itself.
    pub aud: String,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expiry, unix seconds; at most [`MAX_LIFETIME_SECS`] after `iat`.
    pub exp: u64,
    /// Base64url (no padding) of at least [`MIN_JTI_BYTES`] random bytes, never reused.
    pub jti: String,
}

impl AssertionClaims {
    /// Fresh claims for `account` addressed to the controller at `audience`, valid from `now`
    /// for `lifetime_secs`, with a new random `jti`.
    pub fn new(
        account: &str,
        audience: &str,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<AssertionClaims, AssertionError> {
        if account.is_empty() {
            return Err(AssertionError::Malformed(
                "the service account name is empty".into(),
            ));
        }
        if lifetime_secs == 0 || lifetime_secs > MAX_LIFETIME_SECS {
            return Err(AssertionError::LifetimeTooLong);
        }
        let jti = portcullis_crypto::random::bytes::<MIN_JTI_BYTES>()
            .map_err(|e| AssertionError::Signing(e.to_string()))?;
        Ok(AssertionClaims {
            iss: issuer_for(account),
            sub: account.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            exp: now.saturating_add(lifetime_secs),
            jti: b64(&jti),
        })
    }
}

/// The audience of assertions for the controller whose API is at `api_url`: the URL without
/// trailing slashes, so that `https://pc.example/` and `https://pc.example` name the same
/// controller. Signer and controller both derive it here; [`verify`] compares exactly.
pub fn audience_for(api_url: &str) -> String {
    api_url.trim_end_matches('/').to_owned()
}

/// The issuer an account's assertions carry.
pub fn issuer_for(account: &str) -> String {
    format!("{SERVICE_ISSUER_PREFIX}{account}")
}

/// An assertion [`verify`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: AssertionClaims,
    /// The fingerprint of the key that signed it: the token it buys is bound to this key, so
    /// revoking the key can revoke the token.
    pub key_fingerprint: String,
    /// Until when (unix seconds) the controller must remember `claims.jti` to refuse a replay:
    /// from this second on, [`verify`] refuses the assertion as expired anyway.
    pub remember_until: u64,
}

/// Why an assertion was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssertionError {
    #[error("the service-account assertion is malformed: {0}")]
    Malformed(String),
    #[error("the service-account assertion is not signed with EdDSA (Ed25519 keys only)")]
    WrongAlgorithm,
    #[error("the service-account assertion names no key (kid): sign it with `portcullis login --service-account`")]
    MissingKeyId,
    #[error("the service-account assertion is signed by key {0}, which is not registered for this account: add its public key to the account, or sign with a registered key")]
    UnknownKey(String),
    #[error("the service-account assertion's signature does not verify with the key it names")]
    BadSignature,
    #[error("the service-account assertion has expired: make a new one (and check this machine's clock)")]
    Expired,
    #[error("the service-account assertion is not valid yet: check this machine's clock")]
    NotYetValid,
    #[error("the service-account assertion lives longer than {MAX_LIFETIME_SECS} s (exp - iat): make one with a shorter lifetime")]
    LifetimeTooLong,
    #[error("the service-account assertion is for another controller (aud {0:?}): sign it for this controller's API URL")]
    WrongAudience(String),
    #[error("the service-account assertion's issuer is not `service:` followed by its subject")]
    WrongIssuer,
    #[error("the service-account assertion's jti is not base64url of {MIN_JTI_BYTES} to {MAX_JTI_BYTES} random bytes")]
    BadJti,
    #[error("could not sign the service-account assertion: {0}")]
    Signing(String),
}

/// Signs `claims` with `key` as a compact JWS whose `kid` is the key's fingerprint.
pub fn sign(claims: &AssertionClaims, key: &SigningKey) -> Result<String, AssertionError> {
    let public: [u8; 32] = key
        .public_key()
        .try_into()
        .map_err(|_| AssertionError::Signing("not an Ed25519 key".into()))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ed25519_fingerprint(&public));
    let header = serde_json::to_vec(&header).map_err(|e| AssertionError::Signing(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| AssertionError::Signing(e.to_string()))?;
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64(&signature)))
}

/// The account an assertion claims to be from (`sub`), read WITHOUT checking anything: only
/// to look up the keys to pass to [`verify`].
pub fn unverified_account(token: &str) -> Result<String, AssertionError> {
    #[derive(Deserialize)]
    struct Subject {
        sub: String,
    }
    unverified_payload::<Subject>(token).map(|s| s.sub)
}

/// The controller an assertion claims to be for (`aud`), read WITHOUT checking anything:
/// only for a controller known under several names to choose which one to pass to
/// [`verify`] as the expected audience, which [`verify`] then compares exactly.
pub fn unverified_audience(token: &str) -> Result<String, AssertionError> {
    #[derive(Deserialize)]
    struct Audience {
        aud: String,
    }
    unverified_payload::<Audience>(token).map(|a| a.aud)
}

fn unverified_payload<T: serde::de::DeserializeOwned>(token: &str) -> Result<T, AssertionError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed(
            "not a compact JWS (three dot-separated parts)".into(),
        ));
    };
    let payload =
        unb64(payload).map_err(|_| AssertionError::Malformed("payload is not base64url".into()))?;
    serde_json::from_slice(&payload).map_err(|e| AssertionError::Malformed(format!("payload: {e}")))
}

/// Verifies an assertion against the account's registered keys (raw Ed25519 public keys):
/// the algorithm (EdDSA only), the key named by `kid`, the signature, the issuer, the audience
/// (exactly `expected_aud`), the lifetime, and the time window at `now` (unix seconds)
/// tolerating `skew_secs` of clock difference either way. Replays are the caller's to refuse
/// (see the module documentation).
pub fn verify(
    token: &str,
    account_keys: &[[u8; 32]],
    expected_aud: &str,
    now: u64,
    skew_secs: u64,
) -> Result<Verified, AssertionError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| AssertionError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(AssertionError::WrongAlgorithm);
    }
    let kid = header.kid.ok_or(AssertionError::MissingKeyId)?;
    let key = account_keys
        .iter()
        .find(|k| ed25519_fingerprint(k) == kid)
        .ok_or_else(|| AssertionError::UnknownKey(kid.clone()))?;
    let decoding = DecodingKey::from_ed_der(key);
    let mut validation = Validation::new(Algorithm::EdDSA);
    // Times and audience are checked below, against the injected clock.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AssertionClaims>(token, &decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AssertionError::BadSignature,
            _ => AssertionError::Malformed(e.to_string()),
        })?
        .claims;
    if claims.sub.is_empty() || claims.iss != issuer_for(&claims.sub) {
        return Err(AssertionError::WrongIssuer);
    }
    if claims.aud != expected_aud {
        return Err(AssertionError::WrongAudience(claims.aud));
    }
    let jti_len = unb64(&claims.jti)
        .map_err(|_| AssertionError::BadJti)?
        .len();
    if !(MIN_JTI_BYTES..=MAX_JTI_BYTES).contains(&jti_len) {
        return Err(AssertionError::BadJti);
    }
    if claims.exp <= claims.iat {
        return Err(AssertionError::Malformed("exp is not after iat".into()));
    }
    if claims.exp - claims.iat > MAX_LIFETIME_SECS {
        return Err(AssertionError::LifetimeTooLong);
    }
    if claims.iat > now.saturating_add(skew_secs) {
        return Err(AssertionError::NotYetValid);
    }
    let remember_until = claims.exp.saturating_add(skew_secs);
    if now >= remember_until {
        return Err(AssertionError::Expired);
    }
    Ok(Verified {
        claims,
        key_fingerprint: kid,
        remember_until,
    })
}

#[cfg(test)]
mod tests;
