//! `[vault]`: how the controller reaches Vault (or OpenBao), how it logs in, and what it asks
//! for. Read only when `ssh.backend = "vault"`.
//!
//! Every key, commented, is in the `[vault]` block of `config/controller.toml`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::config::values::{positive_duration, vault_segment, DurationValue};

/// `[vault]`: how the controller reaches Vault and what it asks for.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `https://vault.example:8200` (plain `http://` only for loopback test servers).
    pub address: String,
    /// A PEM bundle of CAs to trust for Vault's TLS certificate, besides none other.
    pub ca_file: Option<PathBuf>,
    pub auth: VaultAuth,
    /// The SSH secrets engine mount and the role used unless a target names its own.
    pub ssh_mount: String,
    pub ssh_role: Option<String>,
    /// The token role per-session tokens are created through (`auth/token/create/ROLE`).
    pub token_role: String,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// The longest wait between two attempts of a pending revocation.
    pub revoke_retry_max: Duration,
    /// How long a mint may stay unfinished before any controller treats it as abandoned.
    pub mint_timeout: Duration,
    /// How often the job that retries revocations and recovers abandoned mints runs.
    pub job_interval: Duration,
}

/// How the controller logs in to Vault.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token read from a file (0600) at start and whenever it must log in again.
    TokenFile(PathBuf),
    /// A token from an environment variable (`PORTCULLIS_VAULT_TOKEN` by default).
    TokenEnv(String),
    /// AppRole: a role id and a file holding the secret id.
    AppRole {
        mount: String,
        role_id: String,
        secret_id_file: PathBuf,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVault {
    address: Option<String>,
    ca_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    approle_mount: Option<String>,
    approle_role_id: Option<String>,
    approle_secret_id_file: Option<PathBuf>,
    ssh_mount: Option<String>,
    ssh_role: Option<String>,
    token_role: Option<String>,
    request_timeout: Option<DurationValue>,
    revoke_retry_max: Option<DurationValue>,
    mint_timeout: Option<DurationValue>,
    job_interval: Option<DurationValue>,
}

impl RawVault {
    /// `env` tells whether the token variable is set (its value is read at login, not here).
    pub(crate) fn validate(
        &self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<VaultConfig, ConfigError> {
        let address = self.address()?;
        let auth = self.auth(env)?;
        let ssh_role = self
            .ssh_role
            .as_deref()
            .map(|r| vault_segment(r, "vault.ssh_role", false))
            .transpose()?;
        let token_role = vault_segment(
            self.token_role.as_deref().ok_or(ConfigError::Invalid {
                key: "vault.token_role",
                message: "missing: the token role per-session tokens are created through, e.g. \"portcullis-session\"".into(),
            })?,
            "vault.token_role",
            false,
        )?;
        let timeout = |value, key, secs| positive_duration(value, key, Duration::from_secs(secs));
        Ok(VaultConfig {
            address,
            ca_file: self.ca_file.clone(),
            auth,
            ssh_mount: vault_segment(
                self.ssh_mount.as_deref().unwrap_or("ssh"),
                "vault.ssh_mount",
                true,
            )?,
            ssh_role,
            token_role,
            request_timeout: timeout(&self.request_timeout, "vault.request_timeout", 10)?,
            revoke_retry_max: timeout(&self.revoke_retry_max, "vault.revoke_retry_max", 30)?,
            mint_timeout: timeout(&self.mint_timeout, "vault.mint_timeout", 60)?,
            job_interval: timeout(&self.job_interval, "vault.job_interval", 1)?,
        })
    }

    /// `https://`, or plain `http://` to a loopback address; without a trailing `/`.
    fn address(&self) -> Result<String, ConfigError> {
        let address = self.address.as_deref().ok_or(ConfigError::Invalid {
            key: "vault.address",
            message: "missing: ssh.backend = \"vault\" needs the Vault address, e.g. https://vault.internal:8200".into(),
        })?;
        let loopback_http = address.strip_prefix("http://").is_some_and(|rest| {
            rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
        });
        if !(address.starts_with("https://") || loopback_http) {
            return Err(ConfigError::Invalid {
                key: "vault.address",
                message: format!(
                    "{address:?} must start with https:// (plain http:// only on loopback)"
                ),
            });
        }
        Ok(address.trim_end_matches('/').to_owned())
    }

    /// One way to log in: AppRole, a token file, or a token in the environment.
    fn auth(&self, env: &impl Fn(&str) -> Option<String>) -> Result<VaultAuth, ConfigError> {
        let approle = (&self.approle_role_id, &self.approle_secret_id_file);
        match (approle, &self.token_file) {
            ((Some(_), None), _) | ((None, Some(_)), _) => Err(ConfigError::Invalid {
                key: "vault.approle_role_id",
                message: "AppRole needs both approle_role_id and approle_secret_id_file".into(),
            }),
            ((Some(_), Some(_)), Some(_)) => Err(ConfigError::Invalid {
                key: "vault.token_file",
                message: "choose one way to log in: token_file or AppRole, not both".into(),
            }),
            ((Some(role_id), Some(file)), None) => Ok(VaultAuth::AppRole {
                mount: vault_segment(
                    self.approle_mount.as_deref().unwrap_or("approle"),
                    "vault.approle_mount",
                    true,
                )?,
                role_id: role_id.clone(),
                secret_id_file: file.clone(),
            }),
            ((None, None), Some(file)) => Ok(VaultAuth::TokenFile(file.clone())),
            ((None, None), None) => {
                let name = self
                    .token_env
                    .clone()
                    .unwrap_or_else(|| "PORTCULLIS_VAULT_TOKEN".into());
                if env(&name).is_none() {
                    return Err(ConfigError::Invalid {
                        key: "vault.token_file",
                        message: format!(
                            "no way to log in to Vault: set token_file, approle_role_id with approle_secret_id_file, or the environment variable {name}"
                        ),
                    });
                }
                Ok(VaultAuth::TokenEnv(name))
            }
        }
    }
}
