//! Discovery: the provider's metadata and its signing keys (JWKS), cached for
//! [`METADATA_TTL`] and fetched again early when an ID token names a key id they lack; and
//! the `openidconnect` client built on them.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, ClientId, ClientSecret, IssuerUrl, ProviderMetadata, RedirectUrl,
};
use serde::{Deserialize, Serialize};

use super::{chain, OidcError, Relying};
use crate::secret::ExposeSecret as _;

/// How long discovery metadata (and the JWKS in it) is reused.
const METADATA_TTL: Duration = Duration::from_secs(300);

/// The discovery fields beyond the core ones that Portcullis reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(super) struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) device_authorization_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub(super) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

impl Relying {
    /// The provider's discovery metadata and keys, cached for [`METADATA_TTL`]; `force`
    /// fetches them again.
    pub(super) async fn metadata(&self, force: bool) -> Result<Arc<Metadata>, OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, md)) = cached.as_ref() {
            if !force && self.clock.instant().duration_since(*at) < METADATA_TTL {
                return Ok(md.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Config(format!("auth.oidc.issuer: {e}")))?;
        let md = Metadata::discover_async(issuer, &super::http::Http(&self.http))
            .await
            .map_err(|e| {
                let text = chain(&e);
                if matches!(e, openidconnect::DiscoveryError::Request(_)) {
                    OidcError::Unreachable {
                        what: format!("discovery at {}", self.config.issuer),
                        cause: text,
                    }
                } else {
                    OidcError::Refused(format!(
                        "its discovery document at {}/.well-known/openid-configuration is unusable: {text}",
                        self.config.issuer.trim_end_matches('/')
                    ))
                }
            })?;
        let md = Arc::new(md);
        *cached = Some((self.clock.instant(), md.clone()));
        Ok(md)
    }

    pub(super) fn client(
        &self,
        md: &Metadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Config(format!("auth.oidc.redirect_url: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            md.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Whether an unknown key id may re-fetch the keys now (see [`super::refresh`]).
    pub(super) fn may_force_refresh(&self) -> bool {
        let Ok(mut limit) = self.forced_refresh.lock() else {
            return false;
        };
        limit.allow(self.clock.instant())
    }
}
