//! Leased secrets read with a session's token, and revocation of a session's token (and so
//! of every lease made under it) by its accessor.

use super::{Vault, VaultError};
use crate::secret::SecretString;

/// A leased secret read with a session's token.
pub(crate) struct Leased {
    pub lease_id: String,
    pub lease_duration: u64,
    pub data: serde_json::Value,
}

impl Vault {
    /// Reads a (leased) secret with the session's token.
    pub(crate) async fn read_leased(
        &self,
        token: &SecretString,
        path: &str,
    ) -> Result<Leased, VaultError> {
        let client = self.as_token(token).await;
        let what = format!("a read of {path:?}");
        let result = self
            .raw(
                &client,
                &what,
                rustify::enums::RequestMethod::GET,
                path,
                None,
            )
            .await?;
        Ok(Leased {
            lease_id: result.lease_id,
            lease_duration: u64::from(result.lease_duration),
            data: result.data.unwrap_or(serde_json::Value::Null),
        })
    }

    /// Revokes a token (and with it every lease made under it) by its accessor. Vault answers
    /// success for an accessor it no longer knows: the token is gone either way.
    pub(crate) async fn revoke_accessor(&self, accessor: &str) -> Result<(), VaultError> {
        let client = self.client().await;
        vaultrs::token::revoke_accessor(client.as_ref(), accessor)
            .await
            .map_err(|e| self.map_err("a token revocation by accessor", e))
    }
}
