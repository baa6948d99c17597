//! `[auth]`: the login rate limit, the OpenID provider (`[auth.oidc]`, see `oidc/config`) and
//! local users and service accounts (`[auth.local]`, see `local_auth/config`);
//! refuses the removed `auth.dev_login` with its line and what to do instead.

use serde::Deserialize;

use super::error::ConfigError;
use crate::local_auth::config::{LocalAuthConfig, RawLocal};
use crate::oidc::config::{OidcConfig, RawOidc};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    /// Removed: the development login exists only in `portcullis dev`. Read (whatever its
    /// value) only to refuse it with its line and what to do instead.
    dev_login: Option<toml::Spanned<serde::de::IgnoredAny>>,
    login_rate_limit_per_minute: Option<u32>,
    oidc: Option<RawOidc>,
    #[serde(default)]
    local: RawLocal,
}

/// The validated `[auth]` section.
pub(super) struct Auth {
    pub login_rate_limit: u32,
    pub oidc: Option<OidcConfig>,
    pub local: LocalAuthConfig,
}

impl RawAuth {
    /// Refuses keys that were removed, naming their line in `text` (read from `origin`).
    pub(super) fn refuse_removed(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let Some(removed) = &self.dev_login else {
            return Ok(());
        };
        Err(ConfigError::Removed {
            path: origin.to_owned(),
            line: text[..removed.span().start].matches('\n').count() + 1,
            key: "auth.dev_login",
            advice: "the development login exists only in `portcullis dev`. Delete the \
                     line; for an admin token without OIDC login, run `portcullis controller \
                     issue-token --config FILE --user NAME --group GROUP` on the controller",
        })
    }

    pub(super) fn validate(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Auth, ConfigError> {
        Ok(Auth {
            login_rate_limit: self.login_rate_limit_per_minute.unwrap_or(30),
            oidc: self.oidc.map(|raw| raw.validate(env)).transpose()?,
            local: self.local.validate()?,
        })
    }
}
