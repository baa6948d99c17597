//! The session grant: what a controller signs and a worker checks before it dials a target.
//!
//! A grant is a compact JWS (EdDSA over Ed25519) whose header names the signing key (`kid`).
//! Verification pins the algorithm, requires a known key id, and checks expiry and audience;
//! the checks that need the TLS connection (client key, source address) are the worker's.

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The issuer every grant carries.
pub const GRANT_ISSUER: &str = "portcullis-controller";

/// The claims of a session grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantClaims {
    /// Always [`GRANT_ISSUER`].
    pub iss: String,
    /// The worker the grant is for, as `worker:<worker id>`.
    pub aud: String,
    /// The user id the session belongs to.
    pub sub: String,
    /// Session id.
    pub sid: String,
    /// Target id.
    pub tid: String,
    /// Hex SHA-256 of the client's TLS public key (SPKI DER).
    pub ckh: String,
    /// The client's source address as the controller saw it (IP only).
    pub src: String,
    /// The vetted endpoint the worker dials: `IP:PORT`, never a name.
    pub dst: String,
    /// Connection limit of the session; 0 means unlimited.
    pub lim: u32,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Present when the session runs through the worker's SSH gateway
    /// ([`crate::gateway`]): who may log in to it, as whom, and which channels they may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<GatewayClaims>,
    /// Present when the worker's Proxmox API proxy serves the session with a token minted
    /// for it ([`crate::pve`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pve: Option<crate::pve::PveClaims>,
}

/// What the SSH gateway enforces for a session, as the controller signed it into the grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayClaims {
    /// The only key that may authenticate to the gateway: the per-session OpenSSH public key
    /// sent with authorize-session (`ssh-ed25519 AAAA...`, no comment).
    pub key: String,
    /// The SSH user names the user may log in as: the role's `logins` for this target.
    pub logins: Vec<String>,
    /// The channels the session may open.
    pub rights: portcullis_policy::SshRights,
    /// How the session is recorded (absent: not recorded). A worker that cannot record
    /// refuses a grant that carries it (unknown fields are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rec: Option<portcullis_policy::Recording>,
}

impl GrantClaims {
    /// The audience string for a worker id.
    pub fn audience_for(worker_id: &str) -> String {
        format!("worker:{worker_id}")
    }
}

/// A public grant-verification key as the controller hands it to workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantKey {
    pub kid: String,
    /// Raw 32-byte Ed25519 public key, base64url.
    pub public_key: String,
}

/// Why a grant was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("grant is malformed: {0}")]
    Malformed(String),
    #[error("grant is signed with an unexpected algorithm")]
    WrongAlgorithm,
    #[error("grant names no key id")]
    MissingKeyId,
    #[error("grant is signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("grant signature is invalid")]
    BadSignature,
    #[error("grant has expired")]
    Expired,
    #[error("grant is for another worker")]
    WrongAudience,
    #[error("grant has an unexpected issuer")]
    WrongIssuer,
    #[error("could not sign grant: {0}")]
    Signing(String),
}

/// Signs `claims` with an Ed25519 key given as PKCS#8 DER (parsed for this one grant; a
/// signer that signs many parses once and calls [`sign_with`]).
pub fn sign(claims: &GrantClaims, kid: &str, pkcs8_der: &[u8]) -> Result<String, GrantError> {
    let key = portcullis_crypto::ed25519::SigningKey::from_pkcs8(pkcs8_der)
        .map_err(|e| GrantError::Signing(e.to_string()))?;
    sign_with(claims, kid, &key)
}

/// [`sign`] with a key parsed once (parsing an Ed25519 key costs as much as signing): the
/// same compact JWS, `{"typ":"JWT","alg":"EdDSA","kid":..}` over the claims' JSON.
pub fn sign_with(
    claims: &GrantClaims,
    kid: &str,
    key: &portcullis_crypto::ed25519::SigningKey,
) -> Result<String, GrantError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let header = serde_json::to_vec(&header).map_err(|e| GrantError::Signing(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| GrantError::Signing(e.to_string()))?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The key id a grant's header names, without verifying anything: for a worker to tell a
/// grant signed by a key it has not heard of yet. `None` for a token that is not a JWS or
/// names no key.
pub fn key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Verifies a grant's signature (EdDSA only, key chosen by `kid` among `keys`), issuer,
/// audience and expiry at `now` (unix seconds, no leeway).
pub fn verify(
    token: &str,
    keys: &[GrantKey],
    worker_id: &str,
    now: u64,
) -> Result<GrantClaims, GrantError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| GrantError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(GrantError::WrongAlgorithm);
    }
    let kid = header.kid.ok_or(GrantError::MissingKeyId)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| GrantError::UnknownKey(kid.clone()))?;
    let raw = crate::keys::unb64(&key.public_key)
        .map_err(|_| GrantError::Malformed("bad public key encoding".into()))?;
    let decoding = DecodingKey::from_ed_der(&raw);
    let mut validation = Validation::new(Algorithm::EdDSA);
    // Expiry and audience are checked below against the injected clock.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<GrantClaims>(token, &decoding, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => GrantError::BadSignature,
            _ => GrantError::Malformed(e.to_string()),
        })?;
    let claims = data.claims;
    if claims.iss != GRANT_ISSUER {
        return Err(GrantError::WrongIssuer);
    }
    if claims.aud != GrantClaims::audience_for(worker_id) {
        return Err(GrantError::WrongAudience);
    }
    if now >= claims.exp {
        return Err(GrantError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
