//! HMAC-SHA-1, for one use only: one-time passwords (HOTP, RFC 4226, and TOTP, RFC 6238).
//!
//! Why SHA-1 is fine here: the practical attacks on SHA-1 are collision attacks (two chosen
//! inputs with the same digest), and HMAC's security does not rest on collision resistance but
//! on the compression function behaving as a pseudo-random function under a secret key
//! (Bellare, "New Proofs for NMAC and HMAC", 2006), which no known attack breaks. RFC 4226
//! (appendix A) makes the same argument for HOTP, and authenticator apps (and `oathtool`)
//! compute SHA-1 codes by default; a TOTP secret made for SHA-256 would not scan in many of
//! them. ring names the algorithm `HMAC_SHA1_FOR_LEGACY_USE_ONLY` to keep it out of new
//! protocols: this module is the one place it is used, and it offers nothing but the
//! one-shot tag that OTP needs.

/// The length of an HMAC-SHA-1 tag in bytes.
pub const HMAC_SHA1_LEN: usize = 20;

/// HMAC-SHA-1 of `message` under `key`: only for HOTP/TOTP (see the module doc).
pub fn hmac_sha1_for_otp(key: &[u8], message: &[u8]) -> [u8; HMAC_SHA1_LEN] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = ring::hmac::sign(&key, message);
    let mut out = [0u8; HMAC_SHA1_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2202, test cases 1 and 2.
    #[test]
    fn matches_rfc_2202_vectors() {
        assert_eq!(
            hmac_sha1_for_otp(&[0x0b; 20], b"Hi There"),
            hex20("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        assert_eq!(
            hmac_sha1_for_otp(b"Jefe", b"what do ya want for nothing?"),
            hex20("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
    }

    fn hex20(text: &str) -> [u8; HMAC_SHA1_LEN] {
        let mut out = [0u8; HMAC_SHA1_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
