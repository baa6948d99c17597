//! The device authorization grant (RFC 8628): starting one at the provider and polling its
//! token endpoint for the user's answer.

use openidconnect::core::CoreTokenResponse;
use openidconnect::TokenResponse as _;
use serde::Deserialize;

use super::{chain, OidcError, OidcIdentity, Relying};
use crate::secret::ExposeSecret as _;

/// A started device authorization (RFC 8628).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// The outcome of one device token poll.
#[derive(Debug)]
pub(crate) enum DevicePoll {
    Pending,
    SlowDown,
    Done(Box<OidcIdentity>),
}

impl Relying {
    /// Posts `form` to `endpoint` with the client's credentials (HTTP Basic, form-encoded as
    /// RFC 6749 section 2.3.1 asks); returns the status and the body. `what` names the
    /// endpoint in the error when the provider cannot be reached.
    async fn post_form(
        &self,
        endpoint: &str,
        what: &str,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), OidcError> {
        let response = self
            .http
            .post(endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.secret.expose_secret())),
            )
            .form(form)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable {
                what: what.into(),
                cause: chain(&e),
            })?;
        let status = response.status();
        Ok((status, response.bytes().await.unwrap_or_default()))
    }

    /// Starts a device authorization at the provider (RFC 8628 section 3.1).
    pub(crate) async fn device_start(&self) -> Result<DeviceAuthorization, OidcError> {
        let md = self.metadata(false).await?;
        let endpoint = md
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                OidcError::Refused(
                    "it publishes no device_authorization_endpoint: it does not offer the device flow"
                        .into(),
                )
            })?;
        let scope = self.config.scopes.join(" ");
        let form = [
            ("client_id", self.config.client_id.as_str()),
            ("scope", &scope),
        ];
        let (status, body) = self
            .post_form(&endpoint, "device authorization endpoint", &form)
            .await?;
        if !status.is_success() {
            return Err(OidcError::Refused(format!(
                "device authorization: {status} {}",
                oauth_error(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            OidcError::Refused(format!("device authorization: unexpected answer ({e})"))
        })
    }

    /// Polls the token endpoint once for a device authorization (RFC 8628 section 3.4).
    pub(crate) async fn device_poll(&self, device_code: &str) -> Result<DevicePoll, OidcError> {
        let md = self.metadata(false).await?;
        let endpoint = md
            .token_endpoint()
            .ok_or_else(|| OidcError::Refused("its metadata has no token endpoint".into()))?
            .to_string();
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", self.config.client_id.as_str()),
        ];
        let (status, body) = self.post_form(&endpoint, "token endpoint", &form).await?;
        if !status.is_success() {
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return match code.as_str() {
                "authorization_pending" => Ok(DevicePoll::Pending),
                "slow_down" => Ok(DevicePoll::SlowDown),
                _ => Err(OidcError::Refused(format!(
                    "device login: {}",
                    oauth_error(&body)
                ))),
            };
        }
        let tokens: CoreTokenResponse = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Refused(format!("token response: unexpected answer ({e})")))?;
        let id_token = tokens.id_token().ok_or_else(|| {
            OidcError::InvalidToken(
                "the token response has no id_token (is `openid` among the scopes?)".into(),
            )
        })?;
        self.verify(md, id_token, None)
            .await
            .map(|identity| DevicePoll::Done(Box::new(identity)))
    }
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An OAuth error body as `error (description)`.
fn oauth_error(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let error = v.get("error").and_then(|e| e.as_str()).unwrap_or("error");
            match v.get("error_description").and_then(|e| e.as_str()) {
                Some(d) => format!("{error} ({d})"),
                None => error.to_owned(),
            }
        }
        Err(_) => format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    }
}
