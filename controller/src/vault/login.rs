//! The controller's own login (a token from a file or the environment, or AppRole) and
//! keeping its token alive.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::VaultAuth;
use super::request::build_client;
use super::{Vault, VaultError};
use crate::secret::{ExposeSecret as _, SecretString};

impl Vault {
    /// Logs in anew (at start, and when the token can no longer be renewed). Returns the
    /// token's TTL (zero: it does not expire). When Vault is unreachable the controller still
    /// starts (pending revocations wait in the store): a warning is logged and the login is
    /// tried again within seconds. A refusal (a bad token or secret id) is an error.
    pub(crate) async fn login(&self) -> Result<Duration, VaultError> {
        const RETRY: Duration = Duration::from_secs(5);
        let config = &self.inner.config;
        let (token, ttl) = match &config.auth {
            VaultAuth::TokenFile(path) => {
                warn_if_readable_by_others(path);
                let text = std::fs::read_to_string(path).map_err(|e| {
                    VaultError::Login(format!(
                        "cannot read the Vault token file {}: {e}",
                        path.display()
                    ))
                })?;
                (SecretString::from(text.trim().to_owned()), None)
            }
            VaultAuth::TokenEnv(name) => {
                let token = std::env::var(name).map_err(|_| {
                    VaultError::Login(format!("the environment variable {name} is not set"))
                })?;
                (SecretString::from(token.trim().to_owned()), None)
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => {
                warn_if_readable_by_others(secret_id_file);
                let secret_id = std::fs::read_to_string(secret_id_file).map_err(|e| {
                    VaultError::Login(format!(
                        "cannot read the AppRole secret-id file {}: {e}",
                        secret_id_file.display()
                    ))
                })?;
                let anonymous = build_client(config, "")?;
                let auth =
                    vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id.trim())
                        .await
                        .map_err(|e| self.map_err("the AppRole login", e));
                match auth {
                    Ok(auth) => (
                        SecretString::from(auth.client_token),
                        Some(Duration::from_secs(auth.lease_duration)),
                    ),
                    Err(err @ (VaultError::Unreachable { .. } | VaultError::Untrusted { .. })) => {
                        tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot log in to Vault yet; retrying in 5 s");
                        return Ok(RETRY);
                    }
                    Err(VaultError::Refused { errors, .. }) => {
                        return Err(VaultError::Login(format!(
                            "Vault refused the AppRole login ({errors}); check approle_role_id and the secret-id file"
                        )))
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        let client = Arc::new(build_client(config, token.expose_secret())?);
        *self.inner.client.write().await = client.clone();
        if let Some(ttl) = ttl {
            return Ok(ttl);
        }
        match vaultrs::token::lookup_self(client.as_ref()).await {
            Ok(me) => Ok(Duration::from_secs(me.ttl)),
            Err(err) => match self.map_err("a lookup of the controller's token", err) {
                VaultError::Refused { errors, .. } => Err(VaultError::Login(format!(
                    "Vault does not accept the controller's token ({errors}); check the token file or variable"
                ))),
                err @ (VaultError::Unreachable { .. } | VaultError::Untrusted { .. }) => {
                    tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot check the controller's Vault token yet; retrying in 5 s");
                    Ok(RETRY)
                }
                other => Err(other),
            },
        }
    }

    /// Keeps the controller's own token alive: renews it at two thirds of its TTL, and logs
    /// in again (AppRole, or a re-read token file) when renewal fails or the token nears its
    /// maximum. A token without a TTL (root, periodic without expiry) needs nothing.
    pub(crate) async fn keep_token_alive(self, mut ttl: Duration, shutdown: CancellationToken) {
        loop {
            let wait = if ttl.is_zero() {
                Duration::from_secs(300)
            } else {
                (ttl * 2 / 3).max(Duration::from_secs(1))
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if ttl.is_zero() {
                // Re-check: a token file may have been replaced by one that expires.
                if let Ok(me) = vaultrs::token::lookup_self(self.client().await.as_ref()).await {
                    ttl = Duration::from_secs(me.ttl);
                }
                continue;
            }
            let renewed = vaultrs::token::renew_self(self.client().await.as_ref(), None).await;
            match renewed {
                Ok(auth) if auth.lease_duration * 3 >= wait.as_secs() * 2 => {
                    ttl = Duration::from_secs(auth.lease_duration);
                    tracing::debug!(ttl_secs = auth.lease_duration, "renewed the Vault token");
                }
                other => {
                    if let Err(err) = other {
                        let err = self.map_err("a renewal of the controller's token", err);
                        tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot renew the controller's Vault token; logging in again");
                    }
                    match self.login().await {
                        Ok(new_ttl) => ttl = new_ttl,
                        Err(err) => {
                            tracing::error!(error = %portcullis_proto::text::escaped(&err), "cannot log in to Vault; retrying in 5 s");
                            ttl = Duration::from_secs(8);
                        }
                    }
                }
            }
        }
    }
}

/// Credential files should be 0600 (or stricter): say so when they are not.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "a Vault credential file is readable by others; chmod 600 it"
            );
        }
    }
}
