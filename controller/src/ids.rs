//! Identifiers and random secrets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Kinds of identifier, each with its prefix so an id says what it names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdKind {
    Session,
    Target,
    Worker,
    User,
    Token,
    JoinToken,
    Key,
    Event,
    Controller,
    /// A pending OIDC login.
    Login,
    /// Credentials minted from Vault for a session.
    Credential,
    /// A just-in-time access request.
    AccessRequest,
    /// A step-up challenge.
    StepUp,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            IdKind::Session => "s_",
            IdKind::Target => "t_",
            IdKind::Worker => "w_",
            IdKind::User => "u_",
            IdKind::Token => "at_",
            IdKind::JoinToken => "jt_",
            IdKind::Key => "k_",
            IdKind::Event => "e_",
            IdKind::Controller => "ctl_",
            IdKind::Login => "lg_",
            IdKind::Credential => "vc_",
            IdKind::AccessRequest => "ar_",
            IdKind::StepUp => "su_",
        }
    }
}

/// A new random identifier (96 bits of randomness) with the kind's prefix.
pub(crate) fn new_id(kind: IdKind) -> String {
    let mut bytes = [0u8; 12];
    fill(&mut bytes);
    format!("{}{}", kind.prefix(), hex::encode(bytes))
}

/// A new random secret of 256 bits, base64url encoded.
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A short code a person can read and type: 8 characters from an alphabet without
/// look-alikes (40 bits), shown as `XXXX-XXXX`.
pub(crate) fn new_short_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 8];
    fill(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// A short code as typed: case, spaces and dashes do not matter.
pub(crate) fn normalize_short_code(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A random 64-bit number (certificate serials).
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    fill(&mut bytes);
    u64::from_be_bytes(bytes)
}

/// SHA-256 of a secret: what the store keeps instead of the secret.
pub(crate) fn secret_hash(secret: &str) -> Vec<u8> {
    portcullis_crypto::digest::sha256(secret.as_bytes()).to_vec()
}

fn fill(bytes: &mut [u8]) {
    // The system RNG only fails if the OS has no entropy source at all; a process that
    // cannot draw random numbers must not issue ids or secrets.
    if portcullis_crypto::random::fill(bytes).is_err() {
        std::process::abort();
    }
}

/// A syntactically plausible id of this kind (used to tell ids from names in paths).
pub(crate) fn looks_like(kind: IdKind, text: &str) -> bool {
    text.strip_prefix(kind.prefix())
        .is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_unique_and_recognised() {
        let a = new_id(IdKind::Session);
        let b = new_id(IdKind::Session);
        assert_ne!(a, b);
        assert!(looks_like(IdKind::Session, &a));
        assert!(!looks_like(IdKind::Target, &a));
        assert!(!looks_like(IdKind::Session, "s_web-01"));
        assert_eq!(new_secret().len(), 43);
        assert_eq!(secret_hash("x").len(), 32);
        let code = new_short_code();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert_eq!(
            normalize_short_code(&code.to_lowercase().replace('-', " ")),
            code.replace('-', "")
        );
    }
}
