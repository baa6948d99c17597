//! ID token verification: the signature against the provider's keys with an allowed
//! algorithm, the standard claims, then the identity read from the verified claims.

use std::sync::Arc;

use openidconnect::core::{CoreIdToken, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, Nonce, SignatureVerificationError};

use super::discovery::Metadata;
use super::{claims, OidcError, OidcIdentity, Relying};

/// Clock skew tolerated on `iat`.
const SKEW_SECS: i64 = 60;

/// Only asymmetric signatures: `none` and HMAC (where the "key" would be the client secret,
/// the classic key-confusion attack) are refused.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

impl Relying {
    /// Verifies an ID token: signature against the provider's JWKS (re-fetched once, rate
    /// limited, when the key id is unknown: the provider may have rotated keys), `iss`, `aud`,
    /// `azp`, `exp`, `iat` with [`SKEW_SECS`] of skew, and the nonce when there is one. Then
    /// reads the identity from the verified claims.
    pub(super) async fn verify(
        &self,
        md: Arc<Metadata>,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<OidcIdentity, OidcError> {
        let mut result = self.check(&md, id_token, nonce);
        let unknown_key = matches!(
            result,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey
            ))
        );
        if unknown_key && self.may_force_refresh() {
            tracing::info!(
                issuer = %self.config.issuer,
                "ID token signed with an unknown key id: fetching the provider's keys again"
            );
            let fresh = self.metadata(true).await?;
            result = self.check(&fresh, id_token, nonce);
        }
        result.map_err(describe)?;
        let payload = payload_of(id_token)?;
        let rules = claims::ClaimRules {
            groups_claim: &self.config.groups_claim,
            group_match: self.config.group_match,
            username_claim: &self.config.username_claim,
            mfa: &self.config.mfa,
        };
        claims::identity(md.issuer().as_str(), &payload, &rules).map_err(OidcError::Claims)
    }

    fn check(
        &self,
        md: &Metadata,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<(), ClaimsVerificationError> {
        let client = self
            .client(md)
            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?;
        let max_age =
            i64::try_from(self.config.login_timeout.as_secs()).unwrap_or(3600) + SKEW_SECS;
        let now = crate::clock::to_i64(self.clock.unix_secs());
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(ALLOWED_ALGS)
            .set_issue_time_verifier_fn(move |iat| {
                let iat = iat.timestamp();
                if iat > now + SKEW_SECS {
                    Err(format!("issued {} s in the future", iat - now))
                } else if iat < now - max_age {
                    Err(format!(
                        "issued {} s ago, too long for a fresh login",
                        now - iat
                    ))
                } else {
                    Ok(())
                }
            });
        match nonce {
            Some(n) => id_token
                .claims(&verifier, &Nonce::new(n.to_owned()))
                .map(drop),
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(drop),
        }
    }
}

/// What was wrong with an ID token, in words.
fn describe(err: ClaimsVerificationError) -> OidcError {
    let text = match err {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "it is signed with a key the provider does not publish in its JWKS (unknown key id)"
            .to_owned(),
        ClaimsVerificationError::SignatureVerification(inner) => {
            format!("bad signature ({inner})")
        }
        ClaimsVerificationError::InvalidAudience(m) => {
            format!("it is not meant for this client (audience: {m})")
        }
        ClaimsVerificationError::Expired(m) => format!("it has expired ({m})"),
        other => other.to_string(),
    };
    OidcError::InvalidToken(text)
}

/// The payload of an ID token whose signature has been verified, as JSON (for the claims the
/// core types do not model: groups, `_claim_names`).
fn payload_of(id_token: &CoreIdToken) -> Result<serde_json::Value, OidcError> {
    use base64::Engine as _;
    let compact = id_token.to_string();
    let payload = compact
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::InvalidToken("not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| OidcError::InvalidToken(format!("payload is not base64url ({e})")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::InvalidToken(format!("payload is not JSON ({e})")))
}
