//! Vault (or OpenBao: the same API) as the source of per-session credentials, through the
//! `vaultrs` crate on rustls (the process installs the ring provider).
//!
//! The controller logs in with its own token (from a file or the environment) or AppRole and
//! keeps that token renewed. For each session it creates a child token through a token role
//! (orphan, `explicit_max_ttl` = the session's maximum, metadata naming the session), and uses
//! that token, not its own, to sign the SSH certificate and to read the target's leased
//! secrets, so that revoking the session's token by its accessor revokes every lease made for
//! the session. Tokens, secret ids and certificates never reach a log or an audit event: only
//! accessors, lease ids and serials do.
//!
//! `login` holds the controller's own login and its renewal, `token` the per-session tokens,
//! `ssh` the certificates and the CA's public key, `leases` leased reads and revocation by
//! accessor, and `request` the HTTP underneath them and Vault's errors in words. Every call
//! goes through vaultrs's typed endpoints (token role creation, renewal and revocation, SSH
//! signing and the CA key, the AppRole login) except the leased read, for which vaultrs has
//! no endpoint that keeps the lease (`request::Raw`).

pub(crate) mod config;
mod kv;
mod leases;
mod login;
mod request;
mod ssh;
mod token;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::RwLock;
use vaultrs::client::VaultClient;

use config::VaultConfig;
pub(crate) use login::TokenLife;
pub(crate) use ssh::SignRequest;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("Vault at {address} is unreachable ({what}): {message}; the controller retries")]
    Unreachable {
        address: String,
        what: String,
        message: String,
    },
    #[error("Vault at {address} presented a TLS certificate this controller does not trust ({what}): {message}; set vault.ca_file to the CA that issued it")]
    Untrusted {
        address: String,
        what: String,
        message: String,
    },
    #[error("Vault refused {what} (HTTP {code}): {errors}")]
    Refused {
        what: String,
        code: u16,
        errors: String,
    },
    #[error("Vault login failed: {0}")]
    Login(String),
    #[error("Vault answered {what} unexpectedly: {message}")]
    Unexpected { what: String, message: String },
}

impl VaultError {
    /// True when Vault answered (so retrying the same request will not help).
    pub fn is_refusal(&self) -> bool {
        matches!(self, VaultError::Refused { .. })
    }
}

/// Whether `path` is a plausible Vault mount, role or secret path (no `..`, no leading or
/// trailing slash, a conservative alphabet), so that no request is steered elsewhere.
pub(crate) fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && !path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("..")
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// A handle on Vault with the controller's own token; cheap to clone.
#[derive(Clone)]
pub(crate) struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    config: VaultConfig,
    client: RwLock<Arc<VaultClient>>,
    /// Public keys of the SSH CAs per mount (for the KRL and `GET /v1/ssh/ca`), with when
    /// they were read: re-read after [`CA_CACHE`] so that a CA rotated in Vault is picked up.
    ca_keys: RwLock<HashMap<String, (String, std::time::Instant)>>,
}

impl Vault {
    /// Logs in (token or AppRole) and checks that the token works; also returns how long the
    /// token lasts, for [`Vault::keep_token_alive`].
    pub(crate) async fn connect(config: VaultConfig) -> Result<(Vault, TokenLife), VaultError> {
        let vault = Vault {
            inner: Arc::new(Inner {
                client: RwLock::new(Arc::new(request::build_client(&config, "")?)),
                config,
                ca_keys: RwLock::default(),
            }),
        };
        let ttl = vault.login().await?;
        Ok((vault, ttl))
    }

    pub(crate) fn config(&self) -> &VaultConfig {
        &self.inner.config
    }

    fn address(&self) -> &str {
        &self.inner.config.address
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_checked() {
        assert!(super::valid_path("database/creds/readonly"));
        assert!(super::valid_path("ssh-client-signer"));
        assert!(!super::valid_path("../sys/raw"));
        assert!(!super::valid_path("/ssh"));
        assert!(!super::valid_path("ssh/"));
        assert!(!super::valid_path("a b"));
        assert!(!super::valid_path("a?b=c"));
    }
}
