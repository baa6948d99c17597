//! `[access]`: just-in-time access requests (docs/access.md).
//!
//! ```toml
//! [access]
//! approver_max_auth_age = "10m"   # an approver's login must be this fresh (and met MFA)
//! pending_ttl = "24h"             # a request not approved within it expires
//! [access.notify]
//! webhook_url = "https://chat.example/hooks/portcullis"   # one JSON object per event
//! webhook_ca_file = "/etc/portcullis/hooks-ca.pem"        # optional: trust only this CA
//! syslog = "siem.example.org:6514"                        # RFC 5424 over TLS, as the audit's
//! syslog_ca_file = "/etc/portcullis/siem-ca.pem"          # syslog-tls sink (required with it)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::config::values::{positive_duration, DurationValue};

/// The validated `[access]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// An approver's token must come from a login at most this old.
    pub approver_max_auth_age: Duration,
    /// A pending request expires this long after it was made.
    pub pending_ttl: Duration,
    /// Where notifications go (`[access.notify]`); none: nowhere.
    pub webhook: Option<Webhook>,
    /// A syslog server (TLS) that gets one message per notification.
    pub syslog: Option<crate::audit::config::SyslogTls>,
}

/// `[access.notify]`'s webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    /// A PEM CA that alone is trusted for the webhook's certificate; none: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            approver_max_auth_age: Duration::from_secs(600),
            pending_ttl: Duration::from_secs(24 * 3600),
            webhook: None,
            syslog: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    approver_max_auth_age: Option<DurationValue>,
    pending_ttl: Option<DurationValue>,
    #[serde(default)]
    notify: RawNotify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    webhook_url: Option<String>,
    webhook_ca_file: Option<PathBuf>,
    syslog: Option<String>,
    syslog_ca_file: Option<PathBuf>,
}

impl RawAccess {
    pub(crate) fn validate(self) -> Result<AccessConfig, ConfigError> {
        let defaults = AccessConfig::default();
        let approver_max_auth_age = positive_duration(
            &self.approver_max_auth_age,
            "access.approver_max_auth_age",
            defaults.approver_max_auth_age,
        )?;
        let pending_ttl = positive_duration(
            &self.pending_ttl,
            "access.pending_ttl",
            defaults.pending_ttl,
        )?;
        let webhook = match (self.notify.webhook_url, self.notify.webhook_ca_file) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "access.notify.webhook_ca_file",
                    message: "is set but webhook_url is not: set the URL, or drop the CA".into(),
                })
            }
            (Some(url), ca_file) => {
                let parsed = url::Url::parse(&url).map_err(|e| ConfigError::Invalid {
                    key: "access.notify.webhook_url",
                    message: format!("{url:?} is not a URL: {e}"),
                })?;
                if parsed.scheme() != "https" || parsed.host_str().is_none() {
                    return Err(ConfigError::Invalid {
                        key: "access.notify.webhook_url",
                        message: format!(
                            "{url:?} must be an https:// URL with a host (notifications name \
                             requests and users, so they never go in the clear)"
                        ),
                    });
                }
                Some(Webhook { url, ca_file })
            }
        };
        let syslog = syslog(self.notify.syslog, self.notify.syslog_ca_file)?;
        Ok(AccessConfig {
            approver_max_auth_age,
            pending_ttl,
            webhook,
            syslog,
        })
    }
}

/// `syslog = "HOST:PORT"` with its `syslog_ca_file`: TLS, the server's name the host's.
fn syslog(
    address: Option<String>,
    ca_file: Option<PathBuf>,
) -> Result<Option<crate::audit::config::SyslogTls>, ConfigError> {
    let key = "access.notify.syslog";
    let (address, ca_file) = match (address, ca_file) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "access.notify.syslog_ca_file",
                message: "is set but syslog is not: set the server, or drop the CA".into(),
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::Invalid {
                key: "access.notify.syslog_ca_file",
                message: "syslog needs syslog_ca_file, the PEM CA that signed the server's \
                          certificate (notifications go over TLS only)"
                    .into(),
            })
        }
        (Some(address), Some(ca_file)) => (address, ca_file),
    };
    let host = address
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        .map(|(host, _)| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .ok_or_else(|| ConfigError::Invalid {
            key,
            message: format!("{address:?} is not host:port (e.g. siem.example.org:6514)"),
        })?;
    Ok(Some(crate::audit::config::SyslogTls {
        address,
        server_name: host,
        ca_file,
        client_cert_file: None,
        client_key_file: None,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AccessConfig, ConfigError> {
        toml::from_str::<RawAccess>(text).unwrap().validate()
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("").unwrap();
        assert_eq!(c, AccessConfig::default());
        let c = parse(
            "approver_max_auth_age = \"5m\"\npending_ttl = \"2h\"\n[notify]\nwebhook_url = \"https://hooks.example/x\"\n",
        )
        .unwrap();
        assert_eq!(c.approver_max_auth_age, Duration::from_secs(300));
        assert_eq!(c.pending_ttl, Duration::from_secs(7200));
        assert_eq!(c.webhook.unwrap().url, "https://hooks.example/x");
    }

    #[test]
    fn a_plain_http_webhook_or_a_zero_duration_is_refused_by_name() {
        let err = parse("[notify]\nwebhook_url = \"http://hooks.example/x\"\n").unwrap_err();
        assert!(
            err.to_string().contains("access.notify.webhook_url"),
            "{err}"
        );
        let err = parse("pending_ttl = \"0s\"\n").unwrap_err();
        assert!(err.to_string().contains("access.pending_ttl"), "{err}");
        let err = parse("[notify]\nwebhook_ca_file = \"/ca.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("webhook_ca_file"), "{err}");
    }

    #[test]
    fn syslog_is_tls_with_its_ca() {
        let c =
            parse("[notify]\nsyslog = \"siem.lab:6514\"\nsyslog_ca_file = \"/ca.pem\"\n").unwrap();
        let syslog = c.syslog.unwrap();
        assert_eq!(
            (syslog.address.as_str(), syslog.server_name.as_str()),
            ("siem.lab:6514", "siem.lab")
        );
        let err = parse("[notify]\nsyslog = \"siem.lab:6514\"\n").unwrap_err();
        assert!(err.to_string().contains("syslog_ca_file"), "{err}");
        let err =
            parse("[notify]\nsyslog = \"udp://siem\"\nsyslog_ca_file = \"/ca.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("host:port"), "{err}");
    }
}
