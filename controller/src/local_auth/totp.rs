//! TOTP (RFC 6238): HMAC-SHA-1, 30-second steps, 6 digits, what every authenticator app
//! computes by default (and Debian's `oathtool --totp`).
//!
//! The rules of verification, all pure (the caller passes `now` and the last step used):
//! - a code is accepted for the current step and one step either side (clock skew);
//! - a code is single-use per time step: a step at or before the last one used is refused,
//!   so a code seen over a shoulder, or replayed, does not log in again; the caller stores the
//!   step [`TotpVerdict::Accepted`] returns, in the same transaction as the login;
//! - every candidate is computed and compared in constant time, whichever matches.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use portcullis_crypto::hmac::hmac_sha1_for_otp;
use portcullis_crypto::random::RandomError;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::secret::constant_time_eq;

/// Seconds per time step.
pub(crate) const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub(crate) const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub(crate) const SKEW_STEPS: u64 = 1;
/// Bytes of a generated secret: 160 bits, the HMAC-SHA-1 block RFC 4226 recommends.
pub(crate) const SECRET_LEN: usize = 20;
/// The issuer shown in authenticator apps.
const ISSUER: &str = "Portcullis";

#[derive(Debug, thiserror::Error)]
pub(crate) enum TotpError {
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("the stored TOTP secret is not base32; enrol the user's TOTP again")]
    SecretEncoding,
    #[error("the stored TOTP secret has {0} bytes, fewer than 16; enrol the user's TOTP again")]
    SecretTooShort(usize),
}

/// A user's TOTP secret. Its `Debug` shows nothing; its memory is zeroed when dropped.
pub(crate) struct TotpSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<secret>)")
    }
}

impl TotpSecret {
    /// A fresh random secret of [`SECRET_LEN`] bytes.
    pub(crate) fn generate() -> Result<TotpSecret, RandomError> {
        let bytes = Zeroizing::new(portcullis_crypto::random::bytes::<SECRET_LEN>()?);
        Ok(TotpSecret(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret from its base32 text (as [`TotpSecret::to_base32`] writes it; padding,
    /// spaces and lower case are accepted). At least 128 bits, as RFC 4226 requires.
    pub(crate) fn from_base32(text: &str) -> Result<TotpSecret, TotpError> {
        let clean: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let bytes = BASE32_NOPAD
            .decode(clean.as_bytes())
            .map_err(|_| TotpError::SecretEncoding)?;
        if bytes.len() < 16 {
            return Err(TotpError::SecretTooShort(bytes.len()));
        }
        Ok(TotpSecret(Zeroizing::new(bytes)))
    }

    /// The secret as base32 without padding (RFC 4648), what authenticator apps read.
    pub(crate) fn to_base32(&self) -> SecretString {
        SecretString::from(BASE32_NOPAD.encode(&self.0))
    }

    /// The `otpauth://` URI an authenticator app enrols from (the QR code's content):
    /// `otpauth://totp/Portcullis:NAME?secret=BASE32&issuer=Portcullis`, NAME percent-encoded.
    pub(crate) fn provisioning_uri(&self, user: &str) -> SecretString {
        let secret = self.to_base32();
        SecretString::from(format!(
            "otpauth://totp/{ISSUER}:{}?secret={}&issuer={ISSUER}",
            percent_encode(user),
            secrecy::ExposeSecret::expose_secret(&secret),
        ))
    }
}

/// The time step `unix_secs` falls in.
pub(crate) fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECONDS
}

/// What checking a code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TotpVerdict {
    /// The code is the one of `step`, later than the last step used: store `step` as used.
    Accepted { step: u64 },
    /// The code is right, but for a step already used (or before it): a replay.
    Reused { step: u64 },
    /// The code is not the one of any step in the window (or is not six digits).
    Wrong,
}

/// Checks `code` (six digits; spaces are ignored) against `secret` at `now_unix`, one step of
/// skew either side, refusing any step at or before `last_used_step`.
pub(crate) fn verify(
    secret: &TotpSecret,
    code: &str,
    now_unix: u64,
    last_used_step: Option<u64>,
) -> TotpVerdict {
    let typed: Zeroizing<String> =
        Zeroizing::new(code.chars().filter(|c| !c.is_whitespace()).collect());
    if typed.len() != DIGITS as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return TotpVerdict::Wrong;
    }
    let now = step_at(now_unix);
    let mut newest_fresh = None;
    let mut newest_used = None;
    // Every candidate is computed and compared; no early exit on a match.
    for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
        let expected = Zeroizing::new(format_code(hotp(&secret.0, step, DIGITS), DIGITS));
        if constant_time_eq(expected.as_bytes(), typed.as_bytes()) {
            if last_used_step.is_some_and(|last| step <= last) {
                newest_used = Some(step);
            } else {
                newest_fresh = Some(step);
            }
        }
    }
    match (newest_fresh, newest_used) {
        (Some(step), _) => TotpVerdict::Accepted { step },
        (None, Some(step)) => TotpVerdict::Reused { step },
        (None, None) => TotpVerdict::Wrong,
    }
}

/// The code of `step` as an app shows it (zero-padded). Only for tests.
#[cfg(test)]
pub(crate) fn code_at_step(secret: &TotpSecret, step: u64) -> Zeroizing<String> {
    Zeroizing::new(format_code(hotp(&secret.0, step, DIGITS), DIGITS))
}

/// HOTP (RFC 4226 section 5.3): the dynamically truncated HMAC-SHA-1 of the counter, modulo
/// 10^digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mac = Zeroizing::new(hmac_sha1_for_otp(key, &counter.to_be_bytes()));
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    binary % 10u32.pow(digits)
}

fn format_code(code: u32, digits: u32) -> String {
    format!("{code:0width$}", width = digits as usize)
}

/// Percent-encodes all but RFC 3986's unreserved characters (so `:`, `/`, `?`, `&`, `#`,
/// space and non-ASCII cannot break the URI's label).
fn percent_encode(text: &str) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests;
