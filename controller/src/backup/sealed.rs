//! `master-key.sealed`: the master key under the operator's passphrase.
//!
//! The key that seals it is derived from the passphrase with argon2id and a random salt;
//! the master key is sealed with AES-256-GCM under a random nonce. The file is JSON: a
//! `header` (format, version, the derivation's algorithm, cost and salt, the cipher) and the
//! `sealed` bytes in hex. The header's JSON is the associated data, so a header changed to
//! weaker parameters or another salt does not open: the file needs nothing else to be
//! opened, and nothing in it can be swapped.

use argon2::{Algorithm, Argon2, Params, Version};
use portcullis_crypto::aead::SealingKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Passphrase;

/// The file's name in a backup.
pub(crate) const FILE: &str = "master-key.sealed";
const FORMAT: &str = "portcullis-sealed-master-key";
const VERSION: u32 = 1;
const KDF: &str = "argon2id-v19";
const AEAD: &str = "aes-256-gcm";
const SALT_LEN: usize = 16;
/// The largest file read: a header and a sealed 32-byte key are a few hundred bytes.
pub(crate) const MAX_FILE_BYTES: u64 = 4096;

/// argon2id's cost parameters, recorded in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cost {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

/// What a backup uses: 64 MiB, 3 passes, 1 lane, above OWASP's minimum (19 MiB, 2 passes)
/// since a backup is sealed and opened rarely and may be attacked offline for years; each
/// guess at the passphrase costs an attacker the same memory and passes.
pub(crate) const COST: Cost = Cost {
    m_cost_kib: 64 * 1024,
    t_cost: 3,
    p_cost: 1,
};

/// The costs a file may name: below, it is not a file this code wrote; above, opening it
/// would take unbounded memory or time.
const MIN_M_COST_KIB: u32 = 19 * 1024;
const MAX_M_COST_KIB: u32 = 1024 * 1024;
const MIN_T_COST: u32 = 2;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    kdf: String,
    cost: Cost,
    /// Hex.
    salt: String,
    aead: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    header: Header,
    /// Hex: the nonce, the ciphertext and the tag.
    sealed: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SealError {
    #[error("{0}")]
    Malformed(String),
    #[error("wrong passphrase, or the file was changed")]
    WrongPassphrase,
    #[error("{0}")]
    Crypto(String),
}

/// Seals `master` (the master key's 32 bytes) under `passphrase`; returns the file's text.
pub(crate) fn seal(
    master: &[u8],
    passphrase: &Passphrase,
    cost: Cost,
) -> Result<String, SealError> {
    let salt = portcullis_crypto::random::bytes::<SALT_LEN>()
        .map_err(|e| SealError::Crypto(format!("no system randomness: {e}")))?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kdf: KDF.into(),
        cost,
        salt: hex::encode(salt),
        aead: AEAD.into(),
    };
    let key = derive(passphrase, &salt, cost)?;
    let sealed = key
        .seal(&associated_data(&header)?, master)
        .map_err(|e| SealError::Crypto(format!("sealing the master key failed: {e}")))?;
    let file = SealedFile {
        header,
        sealed: hex::encode(sealed),
    };
    serde_json::to_string_pretty(&file)
        .map(|text| text + "\n")
        .map_err(|e| SealError::Crypto(e.to_string()))
}

/// Opens what [`seal`] wrote: the master key's bytes, zeroised when dropped.
pub(crate) fn open(text: &str, passphrase: &Passphrase) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let file: SealedFile =
        serde_json::from_str(text).map_err(|e| SealError::Malformed(e.to_string()))?;
    let header = &file.header;
    if header.format != FORMAT || header.version != VERSION {
        return Err(SealError::Malformed(format!(
            "format {:?} version {}, this version reads {FORMAT:?} version {VERSION}",
            header.format, header.version
        )));
    }
    if header.kdf != KDF || header.aead != AEAD {
        return Err(SealError::Malformed(format!(
            "key derivation {:?} and cipher {:?}, this version uses {KDF:?} and {AEAD:?}",
            header.kdf, header.aead
        )));
    }
    let c = header.cost;
    if !(MIN_M_COST_KIB..=MAX_M_COST_KIB).contains(&c.m_cost_kib)
        || !(MIN_T_COST..=MAX_T_COST).contains(&c.t_cost)
        || !(1..=MAX_P_COST).contains(&c.p_cost)
    {
        return Err(SealError::Malformed(format!(
            "argon2 cost m={} KiB t={} p={} is outside what this version writes and reads",
            c.m_cost_kib, c.t_cost, c.p_cost
        )));
    }
    let salt = hex::decode(&header.salt)
        .ok()
        .filter(|s| s.len() == SALT_LEN)
        .ok_or_else(|| SealError::Malformed(format!("the salt is not {SALT_LEN} bytes of hex")))?;
    let sealed =
        hex::decode(&file.sealed).map_err(|_| SealError::Malformed("sealed is not hex".into()))?;
    let key = derive(passphrase, &salt, c)?;
    key.open(&associated_data(header)?, &sealed)
        .map_err(|_| SealError::WrongPassphrase)
}

/// The header's JSON: bound to the sealed bytes.
fn associated_data(header: &Header) -> Result<Vec<u8>, SealError> {
    serde_json::to_vec(header).map_err(|e| SealError::Crypto(e.to_string()))
}

fn derive(passphrase: &Passphrase, salt: &[u8], cost: Cost) -> Result<SealingKey, SealError> {
    let params = Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(32))
        .map_err(|e| SealError::Malformed(format!("argon2 parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.bytes(), salt, key.as_mut())
        .map_err(|e| SealError::Crypto(format!("argon2 failed: {e}")))?;
    SealingKey::new(key.as_ref()).map_err(|e| SealError::Crypto(e.to_string()))
}
