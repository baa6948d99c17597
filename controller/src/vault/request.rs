//! The HTTP underneath every call: the vaultrs client (the controller's own, or one acting
//! with a session's token), the generic request for the one call vaultrs has no typed endpoint
//! for (a read of any path that returns the lease with the data: `leases`), and Vault's
//! errors read into [`VaultError`]s.

use std::sync::Arc;

use rustify::endpoint::Endpoint as _;
use vaultrs::api::EndpointResult;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::config::VaultConfig;
use super::{Vault, VaultError};
use crate::secret::{ExposeSecret as _, SecretString};

/// A generic request: any path, any JSON body, the whole response envelope back (vaultrs's
/// typed reads drop the lease id and duration a leased read needs).
struct Raw {
    path: String,
    method: rustify::enums::RequestMethod,
    body: Option<serde_json::Value>,
}

impl rustify::endpoint::Endpoint for Raw {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        self.body
            .as_ref()
            .map(|b| {
                serde_json::to_vec(b)
                    .map_err(|e| rustify::errors::ClientError::DataParseError { source: e.into() })
            })
            .transpose()
    }
}

impl Vault {
    pub(super) async fn client(&self) -> Arc<VaultClient> {
        self.inner.client.read().await.clone()
    }

    /// A client that acts with `token` instead of the controller's own.
    pub(super) async fn as_token(&self, token: &SecretString) -> VaultClient {
        let base = self.client().await;
        let mut client = VaultClient {
            http: rustify::clients::reqwest::Client::new(&base.http.base, base.http.http.clone()),
            middle: base.middle.clone(),
            settings: base.settings.clone(),
        };
        client.set_token(token.expose_secret());
        client
    }

    pub(super) async fn raw(
        &self,
        client: &VaultClient,
        what: &str,
        method: rustify::enums::RequestMethod,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<EndpointResult<serde_json::Value>, VaultError> {
        let endpoint = Raw {
            path: path.to_owned(),
            method,
            body,
        };
        let response = endpoint
            .with_middleware(client.middle())
            .exec(client.http())
            .await
            .map_err(|e| self.map_err(what, rest_error(e)))?;
        response
            .wrap::<EndpointResult<serde_json::Value>>()
            .map_err(|e| VaultError::Unexpected {
                what: what.to_owned(),
                message: e.to_string(),
            })
    }

    pub(super) fn map_err(&self, what: &str, err: ClientError) -> VaultError {
        match err {
            ClientError::APIError { code, errors } => VaultError::Refused {
                what: what.to_owned(),
                code,
                errors: errors
                    .iter()
                    .map(|e| {
                        e.replace("1 error occurred:", "")
                            .replace(['\n', '\t'], " ")
                    })
                    .map(|e| e.trim().trim_start_matches('*').trim().to_owned())
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            ClientError::RestClientError { source } => match source {
                rustify::errors::ClientError::ServerResponseError { code, .. } => {
                    VaultError::Refused {
                        what: what.to_owned(),
                        code,
                        errors: "no error detail".into(),
                    }
                }
                other => {
                    let message = error_chain(&other);
                    if message.contains("invalid peer certificate") {
                        VaultError::Untrusted {
                            address: self.address().to_owned(),
                            what: what.to_owned(),
                            message,
                        }
                    } else {
                        VaultError::Unreachable {
                            address: self.address().to_owned(),
                            what: what.to_owned(),
                            message,
                        }
                    }
                }
            },
            other => VaultError::Unexpected {
                what: what.to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// Vault's error envelope, like vaultrs does for its own endpoints.
fn rest_error(e: rustify::errors::ClientError) -> ClientError {
    if let rustify::errors::ClientError::ServerResponseError {
        code,
        content: Some(content),
    } = &e
    {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<String>,
        }
        if let Ok(errs) = serde_json::from_str::<Errors>(content) {
            return ClientError::APIError {
                code: *code,
                errors: errs.errors,
            };
        }
    }
    ClientError::RestClientError { source: e }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(super) fn build_client(config: &VaultConfig, token: &str) -> Result<VaultClient, VaultError> {
    let mut settings = VaultClientSettingsBuilder::default();
    if url_ok(&config.address) {
        settings.address(&config.address);
    } else {
        return Err(VaultError::Login(format!(
            "vault.address {:?} is not a URL",
            config.address
        )));
    }
    settings
        .token(token)
        .timeout(Some(config.request_timeout))
        .verify(true)
        .ca_certs(
            config
                .ca_file
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        );
    let settings = settings
        .build()
        .map_err(|e| VaultError::Login(format!("bad Vault client settings: {e}")))?;
    VaultClient::new(settings)
        .map_err(|e| VaultError::Login(format!("cannot set up the Vault client: {e}")))
}

/// The builder's `address` setter panics on a bad URL: check first.
fn url_ok(address: &str) -> bool {
    let Some((scheme, rest)) = address.split_once("://") else {
        return false;
    };
    (scheme == "http" || scheme == "https")
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]/_".contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_checked() {
        assert!(super::url_ok("https://vault.internal:8200"));
        assert!(!super::url_ok("vault.internal:8200"));
    }
}
