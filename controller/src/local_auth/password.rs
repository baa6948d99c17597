//! Local users' passwords: argon2id hashes in PHC strings (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`),
//! the cost parameters from `[auth.local.argon2]`, and the minimum length of a new password.
//!
//! A hash records its own parameters, so a hash made before the parameters were raised still
//! verifies; [`PasswordCheck::Valid`] then says `needs_rehash`, and the login that proved the
//! password stores a new hash with the current parameters. Verification compares the outputs
//! in constant time (the `password-hash` crate's `Output` equality).

use argon2::password_hash::phc::PasswordHash as Phc;
use argon2::password_hash::{Error as HashError, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret as _, SecretString};

/// The shortest password a local user may set (characters, not bytes), unless
/// `auth.local.min_password_length` says more.
pub(crate) const DEFAULT_MIN_PASSWORD_CHARS: usize = 12;

/// The longest password accepted (bytes): a bound on what one login makes the server hash.
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// The length of the random salt in bytes (the PHC recommendation).
const SALT_LEN: usize = 16;

/// argon2id's cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Argon2Params {
    /// Memory in KiB.
    pub(crate) m_cost_kib: u32,
    /// Passes over the memory.
    pub(crate) t_cost: u32,
    /// Lanes.
    pub(crate) p_cost: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Argon2Params {
            m_cost_kib: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: Params::DEFAULT_P_COST,
        }
    }
}

impl Argon2Params {
    /// The argon2 crate's parameters, or why these are not valid ones.
    pub(crate) fn to_params(self) -> Result<Params, PasswordError> {
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None)
            .map_err(|e| PasswordError::Parameters(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswordError {
    #[error(
        "the password has {found} characters; local passwords need at least {min}: choose a \
         longer one (a passphrase of several words is easiest to remember)"
    )]
    TooShort { min: usize, found: usize },
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes: choose a shorter one")]
    TooLong,
    #[error("invalid argon2 parameters ({0}); check `[auth.local.argon2]`")]
    Parameters(String),
    #[error(transparent)]
    Random(#[from] portcullis_crypto::random::RandomError),
    #[error("hashing the password failed: {0}")]
    Hash(String),
    /// The stored hash is not a PHC string of argon2: the store was changed by hand, or holds
    /// a hash this version cannot read.
    #[error(
        "the stored password hash cannot be read ({0}); reset the user's password with \
         `portcullis controller users reset`"
    )]
    Stored(String),
}

/// A password that passed the rules for a new one; only these are hashed.
pub(crate) struct NewPassword(SecretString);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<secret>)")
    }
}

impl NewPassword {
    /// `password`, if it has at least `min_chars` characters and at most
    /// [`MAX_PASSWORD_BYTES`] bytes.
    pub(crate) fn new(
        password: SecretString,
        min_chars: usize,
    ) -> Result<NewPassword, PasswordError> {
        let text = password.expose_secret();
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let found = text.chars().count();
        if found < min_chars {
            return Err(PasswordError::TooShort {
                min: min_chars,
                found,
            });
        }
        Ok(NewPassword(password))
    }
}

/// A stored password hash: an argon2 PHC string. Not a secret, but what an offline guesser
/// needs, so its `Debug` shows only the parameters.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params = self.0.rsplitn(3, '$').nth(2).unwrap_or("?");
        write!(f, "PasswordHash({params}$..)")
    }
}

impl PasswordHash {
    /// A hash read from the store; refused unless it is an argon2 PHC string.
    pub(crate) fn from_phc(text: String) -> Result<PasswordHash, PasswordError> {
        let phc = Phc::new(&text).map_err(|e| PasswordError::Stored(e.to_string()))?;
        Algorithm::try_from(phc.algorithm.as_str())
            .map_err(|e| PasswordError::Stored(e.to_string()))?;
        Ok(PasswordHash(text))
    }

    /// The PHC string, as stored.
    pub(crate) fn as_phc(&self) -> &str {
        &self.0
    }
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordCheck {
    /// The password is right. `needs_rehash`: the hash was made with other parameters (or
    /// another argon2 variant) than the current ones; store a new hash of this password.
    Valid { needs_rehash: bool },
    /// The password is wrong.
    Invalid,
}

/// The argon2id hash of `password` with `params` and a fresh random salt.
pub(crate) fn hash(
    password: &NewPassword,
    params: Argon2Params,
) -> Result<PasswordHash, PasswordError> {
    let salt: [u8; SALT_LEN] = portcullis_crypto::random::bytes()?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    let phc = hasher
        .hash_password_with_salt(password.0.expose_secret().as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(PasswordHash(phc.to_string()))
}

/// Checks `password` against `stored` (with the parameters recorded in it); `current` are
/// the parameters new hashes are made with.
pub(crate) fn verify(
    password: &SecretString,
    stored: &PasswordHash,
    current: Argon2Params,
) -> Result<PasswordCheck, PasswordError> {
    let phc = Phc::new(&stored.0).map_err(|e| PasswordError::Stored(e.to_string()))?;
    match Argon2::default().verify_password(password.expose_secret().as_bytes(), &phc) {
        Ok(()) => Ok(PasswordCheck::Valid {
            needs_rehash: needs_rehash(&phc, current),
        }),
        Err(HashError::PasswordInvalid) => Ok(PasswordCheck::Invalid),
        Err(e) => Err(PasswordError::Stored(e.to_string())),
    }
}

/// Whether `phc` was made otherwise than argon2id, version 0x13, with `current`.
fn needs_rehash(phc: &Phc, current: Argon2Params) -> bool {
    let same_kind = Algorithm::try_from(phc.algorithm.as_str()).ok() == Some(Algorithm::Argon2id)
        && phc.version == Some(Version::V0x13.into());
    let same_cost = Params::try_from(phc).is_ok_and(|p| {
        p.m_cost() == current.m_cost_kib
            && p.t_cost() == current.t_cost
            && p.p_cost() == current.p_cost
    });
    !(same_kind && same_cost)
}

#[cfg(test)]
mod tests;
