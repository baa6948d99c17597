//! `[auth.oidc]`: the OpenID provider the controller logs admins in with.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::config::values::{duration, positive, DurationValue};
use crate::secret::SecretString;

/// The validated provider settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL exactly as the provider states it in its discovery document.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: ClientSecretSource,
    /// Where the provider sends the browser back: this controller's
    /// `https://HOST:PORT/v1/auth/oidc/callback`, registered at the provider.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// The ID token claim that lists the user's groups.
    pub groups_claim: String,
    pub group_match: GroupMatch,
    /// The claim the user name comes from (then `preferred_username`, `email`, `sub`).
    pub username_claim: String,
    /// When a login counts as multi-factor: it then carries `mfa` in its amr.
    pub mfa: MfaRule,
    /// How long a started login may take to complete.
    pub login_timeout: Duration,
    /// The device authorization grant (RFC 8628); off by default, see docs/auth.md.
    pub device_flow: bool,
    /// A PEM file of CAs to trust for the provider instead of the public web roots.
    pub ca_file: Option<PathBuf>,
}

/// Where the client secret comes from; it is never in the config file itself.
#[derive(Debug, Clone)]
pub enum ClientSecretSource {
    File(PathBuf),
    /// Read from the named environment variable when the config was loaded.
    Env(SecretString),
}

/// How group names from the provider are normalised before the policy matches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupMatch {
    /// Byte for byte, as sent.
    Exact,
    /// Keycloak-style paths: `org/admins/` becomes `/org/admins` (the policy's `path` group
    /// matching then compares whole trailing segments).
    Path,
}

/// Provider-specific markers of a multi-factor login. A login whose `amr` holds one of
/// `amr`, or whose `acr` is one of `acr`, gets `mfa` added to its amr, so the policy's MFA
/// constraints can say `amr = ["mfa"]` whatever the provider calls it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MfaRule {
    pub amr: Vec<String>,
    pub acr: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOidc {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    redirect_url: Option<String>,
    scopes: Option<Vec<String>>,
    groups_claim: Option<String>,
    group_match: Option<GroupMatch>,
    username_claim: Option<String>,
    #[serde(default)]
    mfa: RawMfa,
    login_timeout: Option<DurationValue>,
    device_flow: Option<bool>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMfa {
    amr: Option<Vec<String>>,
    acr: Option<Vec<String>>,
}

fn required(value: Option<String>, key: &'static str, hint: &str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Invalid {
            key,
            message: format!("missing: {hint}"),
        }),
    }
}

fn http_url(text: &str, key: &'static str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(text).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("{text:?} is not a URL ({e})"),
    })?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(ConfigError::Invalid {
            key,
            message: format!("{text:?} must be an https:// URL (http:// only on 127.0.0.1)"),
        }),
    }
}

impl RawOidc {
    pub(crate) fn validate(
        self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<OidcConfig, ConfigError> {
        let issuer = required(
            self.issuer,
            "auth.oidc.issuer",
            "the provider's issuer URL, e.g. https://sso.example.com/realms/ops",
        )?;
        http_url(&issuer, "auth.oidc.issuer")?;
        let client_id = required(
            self.client_id,
            "auth.oidc.client_id",
            "the client id of the confidential client registered for Portcullis",
        )?;
        let client_secret = client_secret(self.client_secret_file, self.client_secret_env, env)?;
        let redirect_url = redirect_url(self.redirect_url)?;
        let mut scopes = self
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let groups_claim = self.groups_claim.unwrap_or_else(|| "groups".into());
        if groups_claim.is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth.oidc.groups_claim",
                message: "must name a claim (default `groups`)".into(),
            });
        }
        let login_timeout = login_timeout(&self.login_timeout)?;
        Ok(OidcConfig {
            issuer,
            client_id,
            client_secret,
            redirect_url,
            scopes,
            groups_claim,
            group_match: self.group_match.unwrap_or(GroupMatch::Exact),
            username_claim: self
                .username_claim
                .unwrap_or_else(|| "preferred_username".into()),
            mfa: MfaRule {
                amr: self.mfa.amr.unwrap_or_else(|| {
                    vec!["mfa".into(), "otp".into(), "hwk".into(), "swk".into()]
                }),
                acr: self.mfa.acr.unwrap_or_default(),
            },
            login_timeout,
            device_flow: self.device_flow.unwrap_or(false),
            ca_file: self.ca_file,
        })
    }
}

/// Where the client secret comes from: a file, or an environment variable read now.
fn client_secret(
    file: Option<PathBuf>,
    var: Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ClientSecretSource, ConfigError> {
    match (file, var) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            key: "auth.oidc.client_secret_file",
            message: "set client_secret_file or client_secret_env, not both".into(),
        }),
        (Some(path), None) => Ok(ClientSecretSource::File(path)),
        (None, Some(var)) => match env(&var) {
            Some(value) if !value.trim().is_empty() => Ok(ClientSecretSource::Env(
                SecretString::from(value.trim().to_owned()),
            )),
            _ => Err(ConfigError::Invalid {
                key: "auth.oidc.client_secret_env",
                message: format!("the environment variable {var} is not set or empty"),
            }),
        },
        (None, None) => Err(ConfigError::Invalid {
            key: "auth.oidc.client_secret_file",
            message: "missing: point it at a file (mode 0600) holding the client secret, or set client_secret_env to the name of an environment variable".into(),
        }),
    }
}

/// This controller's callback URL as registered at the provider.
fn redirect_url(value: Option<String>) -> Result<String, ConfigError> {
    let redirect_url = required(
        value,
        "auth.oidc.redirect_url",
        "this controller's https://HOST:PORT/v1/auth/oidc/callback, as registered at the provider",
    )?;
    let parsed = http_url(&redirect_url, "auth.oidc.redirect_url")?;
    if parsed.path() != "/v1/auth/oidc/callback" {
        return Err(ConfigError::Invalid {
            key: "auth.oidc.redirect_url",
            message: format!("{redirect_url:?} must end in /v1/auth/oidc/callback"),
        });
    }
    Ok(redirect_url)
}

/// How long a login may take: ten minutes unless set, at most an hour.
fn login_timeout(value: &Option<DurationValue>) -> Result<Duration, ConfigError> {
    let login_timeout = positive(
        duration(value, "auth.oidc.login_timeout", Duration::from_secs(600))?,
        "auth.oidc.login_timeout",
    )?;
    if login_timeout > Duration::from_secs(3600) {
        return Err(ConfigError::Invalid {
            key: "auth.oidc.login_timeout",
            message: "at most one hour".into(),
        });
    }
    Ok(login_timeout)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";

    #[test]
    fn defaults_and_required_keys() {
        let text = format!(
            "{BASE}[auth.oidc]\nissuer = \"https://sso.example.com\"\nclient_id = \"pc\"\n\
             client_secret_env = \"SECRET\"\nredirect_url = \"https://pc.example.com:9200/v1/auth/oidc/callback\"\n"
        );
        let c = Config::parse(&text, "t", |k| (k == "SECRET").then(|| "s3".into())).unwrap();
        let o = c.oidc.unwrap();
        assert_eq!(o.groups_claim, "groups");
        assert_eq!(o.login_timeout.as_secs(), 600);
        assert!(!o.device_flow);
        assert_eq!(o.scopes[0], "openid");
        let err = Config::parse(&text, "t", |_| None).unwrap_err().to_string();
        assert!(
            err.contains("client_secret_env") && err.contains("SECRET"),
            "{err}"
        );
        let err = Config::parse(
            &format!("{BASE}[auth.oidc]\nclient_id = \"x\"\n"),
            "t",
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("auth.oidc.issuer"), "{err}");
        let bad = text.replace("https://pc.example.com", "http://pc.example.com");
        let secret = |k: &str| (k == "SECRET").then(|| "s".to_string());
        let err = Config::parse(&bad, "t", secret).unwrap_err().to_string();
        assert!(err.contains("redirect_url"), "{err}");
        let err = Config::parse(&format!("{text}grups_claim = \"g\"\n"), "t", secret)
            .unwrap_err()
            .to_string();
        assert!(err.contains("grups_claim"), "{err}");
    }
}
