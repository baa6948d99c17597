//! `[api]`: the HTTPS API's listener, certificate names, request size and token lifetime;
//! `[api.connections]` is `api/limits`.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_net::proxy_header::TrustedProxies;
use serde::Deserialize;

use super::error::ConfigError;
use super::values::{positive_duration, socket, DurationValue};
use crate::api::limits::{ConnectionLimits, RawConnectionLimits};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    listen: Option<String>,
    tls_names: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    token_lifetime: Option<DurationValue>,
    #[serde(default)]
    connections: RawConnectionLimits,
    /// Load balancers whose PROXY protocol header names the client (docs/deploy.md).
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

/// The validated `[api]` section.
pub(super) struct Api {
    pub listen: SocketAddr,
    pub tls_names: Vec<String>,
    pub max_body_bytes: usize,
    pub token_lifetime: Duration,
    pub connections: ConnectionLimits,
    pub trusted_proxies: TrustedProxies,
}

impl RawApi {
    pub(super) fn validate(self) -> Result<Api, ConfigError> {
        let tls_names = self
            .tls_names
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into()]);
        if tls_names.is_empty() {
            return Err(ConfigError::Invalid {
                key: "api.tls_names",
                message: "needs at least one name".into(),
            });
        }
        let max_body_bytes = self.max_body_bytes.unwrap_or(64 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::Invalid {
                key: "api.max_body_bytes",
                message: "must be between 1024 and 16777216".into(),
            });
        }
        Ok(Api {
            listen: socket(&self.listen, "api.listen", "127.0.0.1:9200")?,
            tls_names,
            max_body_bytes,
            token_lifetime: positive_duration(
                &self.token_lifetime,
                "api.token_lifetime",
                Duration::from_secs(8 * 3600),
            )?,
            connections: self.connections.validate()?,
            trusted_proxies: TrustedProxies::parse(&self.trusted_proxies).map_err(|e| {
                ConfigError::Invalid {
                    key: "api.trusted_proxies",
                    message: e.to_string(),
                }
            })?,
        })
    }
}
