//! The master key: 32 bytes that seal every private key in the store (AES-256-GCM). Its file
//! must be readable by its owner only; `portcullis controller keygen` writes one.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use portcullis_crypto::aead::SealingKey;
use zeroize::Zeroizing;

use super::KeyError;
use crate::secret::{ExposeSecret as _, SecretBytes, SecretString};

pub struct MasterKey {
    key: SealingKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    /// The master key from where the config names it: its file, or the environment.
    pub(crate) fn from_source(
        source: &crate::config::MasterKeySource,
    ) -> Result<MasterKey, KeyError> {
        match source {
            crate::config::MasterKeySource::File(path) => MasterKey::from_file(path),
            crate::config::MasterKeySource::Env(hex) => MasterKey::from_hex(hex),
        }
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &SecretString) -> Result<MasterKey, KeyError> {
        let bytes = Zeroizing::new(hex::decode(text.expose_secret().trim()).map_err(|_| {
            KeyError::MasterKey("the master key must be 64 hex characters (32 bytes)".into())
        })?);
        if bytes.len() != 32 {
            return Err(KeyError::MasterKey(format!(
                "the master key must be 32 bytes, found {}",
                bytes.len()
            )));
        }
        let key = SealingKey::new(&bytes)
            .map_err(|_| KeyError::MasterKey("cannot use the master key".into()))?;
        Ok(MasterKey { key })
    }

    /// Reads a master key file, which only its owner may read: a file the group or others
    /// can read is refused, naming the `chmod` that fixes it.
    pub fn from_file(path: &Path) -> Result<MasterKey, KeyError> {
        let cannot_read = |e: std::io::Error| {
            KeyError::MasterKey(format!(
                "cannot read master key file {}: {e}",
                path.display()
            ))
        };
        let mut file = std::fs::File::open(path).map_err(cannot_read)?;
        // The mode of the file opened, not of whatever the path names a moment later.
        let mode = file.metadata().map_err(cannot_read)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::MasterKey(format!(
                "master key file {path} has mode {mode:o}: other users can read it; run `chmod 600 {path}` \
                 (owned by the account the controller runs as) and start again",
                path = path.display()
            )));
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(cannot_read)?;
        Self::from_hex(&SecretString::from(text.trim().to_owned()))
    }

    /// A new random master key as hex, for first starts.
    pub fn generate_hex() -> Result<SecretString, KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        portcullis_crypto::random::fill(bytes.as_mut())
            .map_err(|_| KeyError::Crypto("no system randomness".into()))?;
        Ok(SecretString::from(hex::encode(bytes.as_ref())))
    }

    /// Writes a new random master key to `path` (mode 0600): written in full to a temporary
    /// file beside it, flushed, then moved into place, so a reader sees no key or the whole
    /// key. An existing file is refused unless `replace`.
    pub fn generate_file(path: &Path, replace: bool) -> Result<(), KeyError> {
        let exists = || {
            KeyError::Refused(format!(
                "{} exists: it may be the key that seals a keyset, and a keyset cannot be opened \
                 without it. Pass --force to replace it",
                path.display()
            ))
        };
        if !replace && path.symlink_metadata().is_ok() {
            return Err(exists());
        }
        let hex = Self::generate_hex()?;
        let text = Zeroizing::new(format!("{}\n", hex.expose_secret()));
        let written = if replace {
            portcullis_files::write_private_atomic(path, text.as_bytes())
        } else {
            // Fails if the path appeared meanwhile: never overwrites without --force.
            portcullis_files::create_private_atomic(path, text.as_bytes())
        };
        written.map_err(|e| match e {
            portcullis_files::WriteError::Exists { .. } => exists(),
            other => KeyError::MasterKey(other.to_string()),
        })
    }

    /// Encrypts `plain`, binding it to `context` (the key's id and purpose): the sealed blob
    /// cannot be moved to another row.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.key
            .seal(context.as_bytes(), plain)
            .map_err(|e| KeyError::Crypto(format!("sealing failed: {e}")))
    }

    /// Decrypts what [`MasterKey::seal`] sealed with the same `context`; the plaintext is
    /// zeroised when dropped.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretBytes, KeyError> {
        let plain = self
            .key
            .open(context.as_bytes(), sealed)
            .map_err(|_| KeyError::Unseal(context.to_owned()))?;
        Ok(SecretBytes::from(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let hex = MasterKey::generate_hex().unwrap();
        let key = MasterKey::from_hex(&hex).unwrap();
        let sealed = key.seal("k1/grant", b"private").unwrap();
        assert_eq!(
            key.open("k1/grant", &sealed).unwrap().expose_secret(),
            b"private"
        );
        assert!(key.open("k2/grant", &sealed).is_err());
        let other = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
        assert!(other.open("k1/grant", &sealed).is_err());
        assert!(MasterKey::from_hex(&SecretString::from("abcd".to_owned())).is_err());
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_naming_the_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::generate_file(&path, false).unwrap();
        assert!(MasterKey::from_file(&path).is_ok());
        for loose in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            let err = MasterKey::from_file(&path).unwrap_err().to_string();
            let chmod = format!("chmod 600 {}", path.display());
            assert!(
                err.contains(&chmod) && err.contains(&format!("mode {loose:o}")),
                "{err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::from_file(&path).is_ok());
    }

    #[test]
    fn generate_file_writes_0600_refuses_to_overwrite_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::generate_file(&path, false).unwrap();
        assert_eq!(mode(&path), 0o600);
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(first.trim().len(), 64);
        assert!(MasterKey::from_file(&path).is_ok());

        let err = MasterKey::generate_file(&path, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

        // Replaced by a rename: a reader that opened the old file still reads the whole old
        // key, never a truncated or half-written one.
        let mut reader = std::fs::File::open(&path).unwrap();
        MasterKey::generate_file(&path, true).unwrap();
        let mut old = String::new();
        reader.read_to_string(&mut old).unwrap();
        assert_eq!(old, first);
        let second = std::fs::read_to_string(&path).unwrap();
        assert_ne!(second, first);
        assert_eq!(mode(&path), 0o600);
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("master.key")]);
    }
}
