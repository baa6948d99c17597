//! `[store]` (where the state lives) and `[keys]` (where the master key that seals the keyset
//! comes from); both can come from the environment instead of the file.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::at_least_one;
use crate::secret::SecretString;

/// Where the master key that seals the keyset comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    File(PathBuf),
    /// Hex from `PORTCULLIS_MASTER_KEY`.
    Env(SecretString),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    url: Option<String>,
    max_connections: Option<u32>,
}

/// The validated `[store]` section.
pub(super) struct Store {
    pub url: SecretString,
    pub max_connections: u32,
}

impl RawStore {
    /// `PORTCULLIS_DATABASE_URL` overrides `store.url`.
    pub(super) fn validate(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Store, ConfigError> {
        let url = env("PORTCULLIS_DATABASE_URL")
            .or(self.url)
            .ok_or(ConfigError::Invalid {
                key: "store.url",
                message: "missing: set it to sqlite:///path/portcullis.db or postgres://... (or PORTCULLIS_DATABASE_URL)".into(),
            })?;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "store.url",
                message: "must start with sqlite: or postgres://".into(),
            });
        }
        Ok(Store {
            url: SecretString::from(url),
            max_connections: at_least_one(
                self.max_connections.unwrap_or(10),
                "store.max_connections",
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    master_key_file: Option<PathBuf>,
}

impl RawKeys {
    /// `PORTCULLIS_MASTER_KEY` (hex) overrides `keys.master_key_file`.
    pub(super) fn validate(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<MasterKeySource, ConfigError> {
        match (env("PORTCULLIS_MASTER_KEY"), self.master_key_file) {
            (Some(hex), _) => Ok(MasterKeySource::Env(SecretString::from(hex))),
            (None, Some(path)) => Ok(MasterKeySource::File(path)),
            (None, None) => Err(ConfigError::Invalid {
                key: "keys.master_key_file",
                message: "missing: point it at a file holding 64 hex characters (or set PORTCULLIS_MASTER_KEY)".into(),
            }),
        }
    }
}
