//! SSH certificates signed by Vault's SSH secrets engine with a session's token, and the
//! engine's CA public key (for the KRL and `GET /v1/ssh/ca`).

use std::collections::HashMap;
use std::time::Duration;

use vaultrs::api::ssh::requests::SignSSHKeyRequestBuilder;

use super::{Vault, VaultError};
use crate::secret::SecretString;

/// How long an SSH CA public key read from Vault is reused.
pub(super) const CA_CACHE: Duration = Duration::from_secs(300);

/// An SSH certificate signed by Vault.
pub(crate) struct SignedCertificate {
    pub certificate: String,
    pub serial: u64,
}

/// What one SSH certificate is for.
pub(crate) struct SignRequest<'a> {
    pub mount: &'a str,
    pub role: &'a str,
    pub public_key: &'a str,
    pub key_id: &'a str,
    pub principals: &'a [String],
    pub source_addresses: &'a [String],
    pub ttl_secs: u64,
}

impl Vault {
    /// Signs an SSH user certificate with the session's token.
    pub(crate) async fn sign_ssh(
        &self,
        token: &SecretString,
        req: &SignRequest<'_>,
    ) -> Result<SignedCertificate, VaultError> {
        let client = self.as_token(token).await;
        let mut options = SignSSHKeyRequestBuilder::default();
        options
            .cert_type("user")
            .key_id(req.key_id)
            .valid_principals(req.principals.join(","))
            .ttl(format!("{}s", req.ttl_secs.max(1)));
        if !req.source_addresses.is_empty() {
            options.critical_options(HashMap::from([(
                "source-address".to_owned(),
                req.source_addresses.join(","),
            )]));
        }
        let what = format!(
            "an SSH certificate from role {:?} on mount {:?}",
            req.role, req.mount
        );
        let data = vaultrs::ssh::ca::sign(
            &client,
            req.mount,
            req.role,
            req.public_key.trim(),
            Some(&mut options),
        )
        .await
        .map_err(|e| self.map_err(&what, e))?;
        let serial =
            u64::from_str_radix(&data.serial_number.replace([':', '-'], ""), 16).map_err(|_| {
                VaultError::Unexpected {
                    what: what.clone(),
                    message: format!("serial {:?} is not hexadecimal", data.serial_number),
                }
            })?;
        Ok(SignedCertificate {
            certificate: data.signed_key.trim().to_owned(),
            serial,
        })
    }

    /// The SSH CA public key of `mount` (OpenSSH line), cached for [`CA_CACHE`].
    pub(crate) async fn ssh_ca_public_key(&self, mount: &str) -> Result<String, VaultError> {
        if let Some((key, at)) = self.inner.ca_keys.read().await.get(mount) {
            if at.elapsed() < CA_CACHE {
                return Ok(key.clone());
            }
        }
        let client = self.client().await;
        let what = format!("the SSH CA public key of mount {mount:?}");
        let data = vaultrs::ssh::ca::read(client.as_ref(), mount)
            .await
            .map_err(|e| self.map_err(&what, e))?;
        let key = data.public_key.trim().to_owned();
        self.inner
            .ca_keys
            .write()
            .await
            .insert(mount.to_owned(), (key.clone(), std::time::Instant::now()));
        Ok(key)
    }
}
