//! `[access]`: just-in-time access requests (docs/access.md).
//!
//! ```toml
//! [access]
//! approver_max_auth_age = "10m"   # an approver's login must be this fresh (and met MFA)
//! pending_ttl = "24h"             # a request not approved within it expires
//! [access.notify]
//! webhook_url = "https://chat.example/hooks/portcullis"   # one JSON object per event
//! webhook_ca_file = "/etc/portcullis/hooks-ca.pem"        # optional: trust only this CA
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
        Ok(AccessConfig {
            approver_max_auth_age,
            pending_ttl,
            webhook,
        })
    }
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
}
