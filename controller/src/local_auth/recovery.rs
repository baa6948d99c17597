//! Recovery codes: ten single-use codes shown once at TOTP enrolment, each standing in for
//! one TOTP code when the phone is lost.
//!
//! A code is 80 random bits written as 16 base32 characters in groups of four
//! (`abcd-efgh-ijkl-mnop`; RFC 4648's alphabet has no `0`, `1`, `8` or `9`, so nothing is
//! misread as `o`, `l` or `b`). Only its SHA-256 is stored. A password needs a slow, salted
//! hash because people choose guessable ones; a code of 80 random bits cannot be guessed,
//! whatever the hash: finding a preimage means trying 2^79 codes on average, per code, and a
//! salt would add nothing because no two users can share a code. The hash input is prefixed
//! with a fixed label, so these digests are useless as hashes of anything else.
//!
//! Redeeming compares the typed code's digest with every unused code's digest in constant
//! time, and marks the match used: the caller stores the result in the same transaction.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use portcullis_crypto::digest::{Sha256, SHA256_LEN};
use portcullis_crypto::random::RandomError;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::secret::constant_time_eq;

/// Codes made at each enrolment.
pub(crate) const CODE_COUNT: usize = 10;
/// Random bytes per code: 80 bits, 16 base32 characters.
const CODE_BYTES: usize = 10;
/// Characters per group in the shown form.
const GROUP: usize = 4;
/// Prefixed to a code before hashing (domain separation).
const HASH_LABEL: &[u8] = b"portcullis recovery code v1\0";

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecoveryError {
    #[error("the stored recovery code hash is not 64 hex digits; issue new recovery codes")]
    StoredHash,
}

/// A recovery code as shown to the user, once. `Debug` shows nothing.
pub(crate) struct RecoveryCode(SecretString);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<secret>)")
    }
}

impl RecoveryCode {
    /// The grouped form to show, e.g. `abcd-efgh-ijkl-mnop`.
    pub(crate) fn as_shown(&self) -> &SecretString {
        &self.0
    }
}

/// The stored digest of one code.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CodeHash([u8; SHA256_LEN]);

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

impl CodeHash {
    pub(crate) fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn from_hex(text: &str) -> Result<CodeHash, RecoveryError> {
        let mut out = [0u8; SHA256_LEN];
        hex::decode_to_slice(text, &mut out).map_err(|_| RecoveryError::StoredHash)?;
        Ok(CodeHash(out))
    }
}

/// One stored code: its digest, and when it was used (Unix seconds), if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCode {
    pub(crate) hash: CodeHash,
    pub(crate) used_at: Option<u64>,
}

/// A fresh set: the codes to show once, and what to store.
#[derive(Debug)]
pub(crate) struct NewCodes {
    pub(crate) shown: Vec<RecoveryCode>,
    pub(crate) stored: Vec<StoredCode>,
}

/// Ten fresh codes.
pub(crate) fn generate() -> Result<NewCodes, RandomError> {
    let mut shown = Vec::with_capacity(CODE_COUNT);
    let mut stored = Vec::with_capacity(CODE_COUNT);
    for _ in 0..CODE_COUNT {
        let bytes = Zeroizing::new(portcullis_crypto::random::bytes::<CODE_BYTES>()?);
        let plain = Zeroizing::new(BASE32_NOPAD.encode(&*bytes).to_ascii_lowercase());
        stored.push(StoredCode {
            hash: hash_normalised(&plain),
            used_at: None,
        });
        shown.push(RecoveryCode(SecretString::from(grouped(&plain))));
    }
    Ok(NewCodes { shown, stored })
}

/// Redeems `typed` against `codes` at `now`: the index of the unused code it matches, now
/// marked used, or `None` (a wrong code, a malformed one, or one already used).
pub(crate) fn redeem(codes: &mut [StoredCode], typed: &str, now: u64) -> Option<usize> {
    let plain = normalise(typed)?;
    let digest = hash_normalised(&plain);
    let mut found = None;
    // Every stored digest is compared; no early exit on a match.
    for (index, code) in codes.iter().enumerate() {
        if constant_time_eq(&code.hash.0, &digest.0) && code.used_at.is_none() {
            found = Some(index);
        }
    }
    let index = found?;
    codes[index].used_at = Some(now);
    Some(index)
}

/// How many codes are left unused.
pub(crate) fn remaining(codes: &[StoredCode]) -> usize {
    codes.iter().filter(|c| c.used_at.is_none()).count()
}

/// The typed code in lower case without dashes or spaces, if it has the shape of a code.
fn normalise(typed: &str) -> Option<Zeroizing<String>> {
    let plain: Zeroizing<String> = Zeroizing::new(
        typed
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    let shape = plain.len() == CODE_BYTES * 8 / 5
        && plain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    shape.then_some(plain)
}

fn hash_normalised(plain: &str) -> CodeHash {
    CodeHash(
        Sha256::new()
            .chain(HASH_LABEL)
            .chain(plain.as_bytes())
            .finish(),
    )
}

fn grouped(plain: &str) -> String {
    let groups: Vec<&str> = plain
        .as_bytes()
        .chunks(GROUP)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    groups.join("-")
}

#[cfg(test)]
mod tests;
