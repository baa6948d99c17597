//! Per-session tokens, created through the configured token role: orphans whose lifetime is
//! the session's, so that revoking one by its accessor revokes every lease made with it.

use std::collections::HashMap;
use std::time::Duration;

use vaultrs::api::token::requests::CreateRoleTokenRequestBuilder;

use super::{Vault, VaultError};
use crate::secret::SecretString;

/// A session's token: the secret itself stays in memory only while minting.
pub(crate) struct SessionToken {
    pub token: SecretString,
    pub accessor: String,
}

impl Vault {
    /// Creates a session's token through the configured token role. It starts with a short
    /// TTL (`orphan_window`): if the controller dies before the accessor is stored, the token
    /// expires on its own; [`Vault::extend`] then gives it the session's lifetime.
    pub(crate) async fn create_session_token(
        &self,
        session_id: &str,
        user: &str,
        target: &str,
        orphan_window: Duration,
        max_ttl: Duration,
    ) -> Result<SessionToken, VaultError> {
        let role = &self.inner.config.token_role;
        let mut options = CreateRoleTokenRequestBuilder::default();
        options
            .display_name(format!("portcullis-{session_id}"))
            .meta(HashMap::from([
                ("portcullis_session".to_owned(), session_id.to_owned()),
                ("portcullis_user".to_owned(), user.to_owned()),
                ("portcullis_target".to_owned(), target.to_owned()),
            ]))
            .ttl(format!("{}s", orphan_window.as_secs().max(1)))
            .explicit_max_ttl(format!("{}s", max_ttl.as_secs().max(1)))
            .renewable(true);
        let client = self.client().await;
        let what = format!("a session token from token role {role:?}");
        let auth = vaultrs::token::new_role(client.as_ref(), role, Some(&mut options))
            .await
            .map_err(|e| self.map_err(&what, e))?;
        Ok(SessionToken {
            token: SecretString::from(auth.client_token),
            accessor: auth.accessor,
        })
    }

    /// Gives a session's token its full lifetime (bounded by its `explicit_max_ttl`).
    pub(crate) async fn extend(
        &self,
        token: &SecretString,
        ttl: Duration,
    ) -> Result<(), VaultError> {
        let client = self.as_token(token).await;
        vaultrs::token::renew_self(&client, Some(&format!("{}s", ttl.as_secs().max(1))))
            .await
            .map_err(|e| self.map_err("a renewal of the session token", e))?;
        Ok(())
    }
}
