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
    /// Logs in anew (at start, and when the token can no longer be renewed) and says how
    /// long the token lasts. When Vault is unreachable the controller still starts (pending
    /// revocations wait in the store): a warning is logged, and [`Vault::keep_token_alive`]
    /// tries again within seconds ([`TokenLife::Unknown`]). A refusal (a bad token or secret
    /// id) is an error.
    pub(crate) async fn login(&self) -> Result<TokenLife, VaultError> {
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
                        tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot log in to Vault yet; retrying within 5 s");
                        return Ok(TokenLife::Unknown);
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
            return Ok(TokenLife::from_ttl(ttl));
        }
        match vaultrs::token::lookup_self(client.as_ref()).await {
            Ok(me) => Ok(TokenLife::from_ttl(Duration::from_secs(me.ttl))),
            Err(err) => match self.map_err("a lookup of the controller's token", err) {
                VaultError::Refused { errors, .. } => Err(VaultError::Login(format!(
                    "Vault does not accept the controller's token ({errors}); check the token file or variable"
                ))),
                err @ (VaultError::Unreachable { .. } | VaultError::Untrusted { .. }) => {
                    tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot check the controller's Vault token yet; retrying within 5 s");
                    Ok(TokenLife::Unknown)
                }
                other => Err(other),
            },
        }
    }

    /// Keeps the controller's own token alive: renews it at two thirds of its TTL, and logs
    /// in again (AppRole, or a re-read token file) when renewal fails or the token nears its
    /// maximum. A token without a TTL (root, periodic without expiry) is re-checked every five
    /// minutes. While Vault cannot be reached, or refuses the login, the login is tried again
    /// after [`RETRY_MIN`] to [`RETRY_MAX`] (jittered, so that controllers that lost Vault
    /// together do not return in step).
    pub(crate) async fn keep_token_alive(self, mut life: TokenLife, shutdown: CancellationToken) {
        let retries = || portcullis_net::retry::schedule(RETRY_MIN, RETRY_MAX);
        let mut waits = retries();
        loop {
            let wait = match life {
                TokenLife::Expires(ttl) => (ttl * 2 / 3).max(Duration::from_secs(1)),
                TokenLife::Unlimited => Duration::from_secs(300),
                TokenLife::Unknown => waits.next().unwrap_or(RETRY_MAX),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match life {
                TokenLife::Unlimited => {
                    // Re-check: a token file may have been replaced by one that expires.
                    if let Ok(me) = vaultrs::token::lookup_self(self.client().await.as_ref()).await
                    {
                        life = TokenLife::from_ttl(Duration::from_secs(me.ttl));
                    }
                    continue;
                }
                TokenLife::Expires(_) => {
                    let renewed =
                        vaultrs::token::renew_self(self.client().await.as_ref(), None).await;
                    match renewed {
                        Ok(auth) if auth.lease_duration * 3 >= wait.as_secs() * 2 => {
                            life = TokenLife::from_ttl(Duration::from_secs(auth.lease_duration));
                            tracing::debug!(
                                ttl_secs = auth.lease_duration,
                                "renewed the Vault token"
                            );
                            continue;
                        }
                        Ok(_) => {}
                        Err(err) => {
                            let err = self.map_err("a renewal of the controller's token", err);
                            tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot renew the controller's Vault token; logging in again");
                        }
                    }
                }
                TokenLife::Unknown => {}
            }
            life = match self.login().await {
                Ok(new) => new,
                Err(err) => {
                    tracing::error!(error = %portcullis_proto::text::escaped(&err), "cannot log in to Vault; retrying within 5 s");
                    TokenLife::Unknown
                }
            };
            if life != TokenLife::Unknown {
                waits = retries();
            }
        }
    }
}

/// The waits between login attempts while Vault cannot be reached or refuses (the bounds of
/// the fixed waits they replace).
const RETRY_MIN: Duration = Duration::from_secs(3);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long the controller's token lasts, as far as the controller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenLife {
    /// It expires after this long; renewed at two thirds of it.
    Expires(Duration),
    /// It does not expire (root, or periodic without an end).
    Unlimited,
    /// Vault could not be reached to log in or to look the token up: try again soon.
    Unknown,
}

impl TokenLife {
    /// A TTL as Vault reports it (zero: the token does not expire).
    fn from_ttl(ttl: Duration) -> TokenLife {
        if ttl.is_zero() {
            TokenLife::Unlimited
        } else {
            TokenLife::Expires(ttl)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::TokenLife;

    #[test]
    fn a_ttl_of_zero_is_a_token_that_does_not_expire() {
        assert_eq!(TokenLife::from_ttl(Duration::ZERO), TokenLife::Unlimited);
        assert_eq!(
            TokenLife::from_ttl(Duration::from_secs(60)),
            TokenLife::Expires(Duration::from_secs(60))
        );
    }
}
