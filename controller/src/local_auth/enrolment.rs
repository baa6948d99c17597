//! The TOTP enrolment of a local login: the offer (a fresh secret, its `otpauth://` URI and a
//! ticket) and the ticket's opening when the user's code comes back.
//!
//! The login endpoint keeps no state between steps, so the offered secret travels in the
//! ticket, sealed under the master key (AES-GCM through [`Sealer`]) with associated data
//! that binds the user id and the expiry: a ticket opens only for the user it was made for,
//! and its expiry cannot be changed. The ticket is `base64url(expires_at as 8 bytes
//! big-endian ‖ sealed base32 secret)`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::ExposeSecret as _;

use super::totp::{TotpSecret, DIGITS, STEP_SECONDS};
use crate::keys::{KeyError, Keyset, MasterKey};
use crate::secret::SecretBytes;

/// How long an offer may be answered.
pub(crate) const TICKET_LIFETIME_SECS: u64 = 600;

/// What seals and opens the ticket's secret: the keyset (the endpoint) or the master key
/// (tests).
pub(crate) trait Sealer {
    fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError>;
    fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretBytes, KeyError>;
}

impl Sealer for Keyset {
    fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.seal_secret(context, plain)
    }
    fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretBytes, KeyError> {
        self.open_secret(context, sealed)
    }
}

impl Sealer for MasterKey {
    fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        MasterKey::seal(self, context, plain)
    }
    fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretBytes, KeyError> {
        MasterKey::open(self, context, sealed)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EnrolmentError {
    /// Not a ticket, made for another user, or altered.
    #[error("the TOTP enrolment ticket is not valid for this user: log in again for a new one")]
    Invalid,
    #[error("the TOTP enrolment ticket expired: log in again for a new one")]
    Expired,
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Random(#[from] portcullis_crypto::random::RandomError),
}

/// An offer: what the person is shown, and the ticket that carries the secret.
pub(crate) struct Offer {
    pub(crate) secret: TotpSecret,
    pub(crate) ticket: String,
    pub(crate) otpauth_uri: String,
    pub(crate) expires_at: u64,
}

/// The associated data of a ticket: the user and the expiry.
fn context(user_id: &str, expires_at: u64) -> String {
    format!("local_auth.totp_enrolment/{user_id}/{expires_at}")
}

/// A fresh secret offered to `username` (`user_id`) at `now`.
pub(crate) fn offer(
    sealer: &impl Sealer,
    user_id: &str,
    username: &str,
    now: u64,
) -> Result<Offer, EnrolmentError> {
    let secret = TotpSecret::generate()?;
    let expires_at = now.saturating_add(TICKET_LIFETIME_SECS);
    let sealed = sealer.seal(
        &context(user_id, expires_at),
        secret.to_base32().expose_secret().as_bytes(),
    )?;
    let mut raw = expires_at.to_be_bytes().to_vec();
    raw.extend_from_slice(&sealed);
    Ok(Offer {
        otpauth_uri: otpauth_uri(&secret, username),
        ticket: URL_SAFE_NO_PAD.encode(raw),
        secret,
        expires_at,
    })
}

/// The secret `ticket` carries, if it was made for `user_id` and has not expired at `now`.
pub(crate) fn open(
    sealer: &impl Sealer,
    ticket: &str,
    user_id: &str,
    now: u64,
) -> Result<TotpSecret, EnrolmentError> {
    let raw = URL_SAFE_NO_PAD
        .decode(ticket.trim())
        .map_err(|_| EnrolmentError::Invalid)?;
    let (head, sealed) = raw
        .split_first_chunk::<8>()
        .ok_or(EnrolmentError::Invalid)?;
    let expires_at = u64::from_be_bytes(*head);
    let plain = sealer
        .open(&context(user_id, expires_at), sealed)
        .map_err(|_| EnrolmentError::Invalid)?;
    if now > expires_at {
        return Err(EnrolmentError::Expired);
    }
    let text = std::str::from_utf8(plain.expose_secret()).map_err(|_| EnrolmentError::Invalid)?;
    TotpSecret::from_base32(text).map_err(|_| EnrolmentError::Invalid)
}

/// `otpauth://totp/Portcullis:NAME?secret=...&issuer=Portcullis&algorithm=SHA1&digits=6&period=30`
/// (NAME percent-encoded): the QR code's text, with the parameters every app assumes spelled
/// out.
pub(crate) fn otpauth_uri(secret: &TotpSecret, username: &str) -> String {
    format!(
        "{}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        secret.provisioning_uri(username).expose_secret()
    )
}

#[cfg(test)]
mod tests;
