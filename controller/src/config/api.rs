//! `[api]`: the HTTPS API's listener, its certificate (the admin's own files, or one from the
//! internal CA for `tls_names`), request size and token lifetime; `[api.connections]` is
//! `api/limits`.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
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
    pub certificate: Option<CertificateFiles>,
    pub max_body_bytes: usize,
    pub token_lifetime: Duration,
    pub connections: ConnectionLimits,
    pub trusted_proxies: TrustedProxies,
}

/// The API's own certificate (`api.tls_cert_file`, `api.tls_key_file`): a PEM chain, leaf
/// first, and its private key (PKCS#8, RSA or EC), both from the admin's PKI. The files are
/// read at start and again whenever they change (`api/certificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl RawApi {
    pub(super) fn validate(self) -> Result<Api, ConfigError> {
        let certificate = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some(CertificateFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "api.tls_key_file",
                    message: "is missing: api.tls_cert_file needs the private key of that \
                              certificate (set both, or neither to use the internal CA)"
                        .into(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "api.tls_cert_file",
                    message: "is missing: api.tls_key_file needs the certificate chain it \
                              belongs to (set both, or neither to use the internal CA)"
                        .into(),
                })
            }
        };
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
            certificate,
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
