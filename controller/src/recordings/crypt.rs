//! Chunks at rest: each chunk's canonical bytes sealed (AES-256-GCM) under the active
//! `recording` key of the keyset, the associated data binding the recording id, the seq and
//! the key id, so that a sealed chunk cannot be moved to another place, and a changed one
//! does not open.

use std::collections::HashMap;

use portcullis_crypto::aead::SealingKey;

use crate::keys::{KeyError, Keyset, Purpose};
use crate::secret::ExposeSecret as _;

/// The associated data of chunk `seq` of `recording_id` sealed under `key_id`.
fn context(recording_id: &str, seq: u64, key_id: &str) -> Vec<u8> {
    format!("portcullis-recording-chunk/1\n{recording_id}\n{seq}\n{key_id}").into_bytes()
}

/// The active recording key, for sealing new chunks.
pub(crate) struct Sealer {
    key_id: String,
    key: SealingKey,
}

impl Sealer {
    pub(crate) async fn active(keys: &Keyset) -> Result<Sealer, KeyError> {
        let active = keys.active(Purpose::Recording).await?;
        let key = SealingKey::new(active.pkcs8.expose_secret())
            .map_err(|e| KeyError::Crypto(format!("the recording key {}: {e}", active.id)))?;
        Ok(Sealer {
            key_id: active.id,
            key,
        })
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn seal(
        &self,
        recording_id: &str,
        seq: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.key
            .seal(&context(recording_id, seq, &self.key_id), plain)
            .map_err(|e| KeyError::Crypto(format!("cannot seal a recording chunk: {e}")))
    }
}

/// Every recording key, retired ones included, for opening stored chunks.
pub(crate) struct Openers {
    keys: HashMap<String, SealingKey>,
}

impl Openers {
    pub(crate) async fn load(keys: &Keyset) -> Result<Openers, KeyError> {
        let mut out = HashMap::new();
        for (id, secret) in keys.recording_keys().await? {
            let key = SealingKey::new(secret.expose_secret())
                .map_err(|e| KeyError::Crypto(format!("the recording key {id}: {e}")))?;
            out.insert(id, key);
        }
        Ok(Openers { keys: out })
    }

    /// The canonical bytes of chunk `seq`, or why they cannot be read (a sentence for the
    /// reviewer).
    pub(crate) fn open(
        &self,
        recording_id: &str,
        seq: u64,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, String> {
        let key = self.keys.get(key_id).ok_or_else(|| {
            format!("chunk {seq} is sealed under the recording key {key_id}, which the keyset does not hold")
        })?;
        key.open(&context(recording_id, seq, key_id), sealed)
            .map(|plain| plain.to_vec())
            .map_err(|_| {
                format!("chunk {seq} does not open: its stored ciphertext was changed or moved")
            })
    }
}
