//! `[ssh]`: SSH certificates (lifetime, the addresses they are valid from) and where they come
//! from (`backend`: the embedded CA, or Vault configured in `[vault]`, see `vault/config`).

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::{ip_or_cidr, positive_duration, DurationValue};
use crate::vault::config::{RawVault, VaultConfig};

/// The source of SSH user certificates (`ssh.backend`).
#[derive(Debug, Clone, Default)]
pub enum SshBackend {
    /// The embedded CA of the keyset (`local-ca`, the default).
    #[default]
    LocalCa,
    /// HashiCorp Vault or OpenBao (`vault`, configured in `[vault]`).
    Vault(Box<VaultConfig>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsh {
    certificate_ttl: Option<DurationValue>,
    source_addresses: Option<Vec<String>>,
    backend: Option<String>,
}

/// The validated `[ssh]` section.
pub(super) struct Ssh {
    pub certificate_ttl: Duration,
    pub source_addresses: Vec<String>,
    pub backend: SshBackend,
}

impl RawSsh {
    /// `vault` is the `[vault]` section, read only when the backend is Vault.
    pub(super) fn validate(
        self,
        vault: Option<&RawVault>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Ssh, ConfigError> {
        let source_addresses = self.source_addresses.unwrap_or_default();
        for addr in &source_addresses {
            ip_or_cidr(addr, "ssh.source_addresses")?;
        }
        let backend = match self.backend.as_deref().unwrap_or("local-ca") {
            "local-ca" => SshBackend::LocalCa,
            "vault" => {
                let vault = vault.ok_or(ConfigError::Invalid {
                    key: "vault",
                    message: "ssh.backend = \"vault\" needs a [vault] section".into(),
                })?;
                SshBackend::Vault(Box::new(vault.validate(env)?))
            }
            other => {
                return Err(ConfigError::Invalid {
                    key: "ssh.backend",
                    message: format!("{other:?} is not a backend: use \"local-ca\" or \"vault\""),
                })
            }
        };
        Ok(Ssh {
            certificate_ttl: positive_duration(
                &self.certificate_ttl,
                "ssh.certificate_ttl",
                Duration::from_secs(300),
            )?,
            source_addresses,
            backend,
        })
    }
}
