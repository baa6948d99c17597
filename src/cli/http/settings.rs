//! Where the CLI finds its controller: the `--addr`/`--ca`/`--token` flags, their environment
//! variables, the profile `portcullis login URL` saved (`--profile`, see `cli/profile.rs`)
//! and the older files under the user's config directory, resolved into [`ClientSettings`];
//! and the bearer [`Token`], whose `Debug` and `Display` print `<redacted>`.
//!
//! Precedence, per setting: flags, then environment, then the profile, then the older files
//! (`CONFIG/portcullis/{addr,ca.pem,token}`), which are read only when no profile is in use.
//! A profile's token is sent only to the profile's controllers: with `--addr` given, it is not
//! read.

use secrecy::{ExposeSecret as _, SecretString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context as _};

use crate::cli::profile::{self, Profile};

/// Where the CLI finds the controller: flags, then environment, then the profile, then files
/// under the user's config directory (`$XDG_CONFIG_HOME/portcullis/` or
/// `~/.config/portcullis/`).
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ClientArgs {
    /// The profile `portcullis login URL` saved to use [default: the current one, else
    /// `default`].
    #[arg(long, env = "PORTCULLIS_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Controller API address, e.g. https://127.0.0.1:9200; several, tried in turn, separated
    /// by commas [fallback: the profile's controllers].
    #[arg(long, env = "PORTCULLIS_ADDR", value_name = "URL")]
    pub addr: Option<String>,
    /// PEM file of the CA that signed the controller's certificate; the only CA trusted
    /// [fallback: CONFIG/portcullis/ca.pem].
    #[arg(long, env = "PORTCULLIS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// API token; prefer the environment or the file written by login, since a flag shows
    /// in the process list [fallback: CONFIG/portcullis/token].
    #[arg(
        long,
        env = "PORTCULLIS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<Token>,
}

/// A bearer token. It has no `Serialize`, `Debug`/`Display` never show it, and its memory is
/// zeroised when dropped.
#[derive(Clone)]
pub(crate) struct Token(SecretString);

impl Token {
    /// The token itself, for the `Authorization` header only.
    pub(super) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The token itself, for the 0600 token file `login` writes only.
    pub(crate) fn expose_for_saving(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        use subtle::ConstantTimeEq as _;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for Token {}

impl FromStr for Token {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the token is empty".into());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token contains spaces or non-ASCII characters".into());
        }
        Ok(Token(SecretString::from(text.to_owned())))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The user's Portcullis config directory: `$XDG_CONFIG_HOME/portcullis`, else
/// `$HOME/.config/portcullis`; `None` when neither variable is usable.
pub(crate) fn config_dir() -> Option<PathBuf> {
    let from_xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = from_xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|home| home.join(".config"))
    })?;
    Some(base.join("portcullis"))
}

/// [`ClientArgs`] with every fallback applied.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    /// `https://host:port` each, without a trailing slash; at least one, tried in turn.
    pub addrs: Vec<String>,
    pub ca: PathBuf,
    /// Whether `ca` is the CLI's own file (`CONFIG/portcullis/ca.pem`), which it replaces
    /// when a CA rotation changes the bundle; a file named by `--ca` or `PORTCULLIS_CA` is
    /// not.
    pub ca_managed: bool,
    pub token: Option<Token>,
    /// The profile in use, if any.
    pub profile: Option<Profile>,
}

impl ClientArgs {
    /// Applies the config-directory fallbacks (see [`config_dir`]).
    pub(crate) fn resolve(&self) -> anyhow::Result<ClientSettings> {
        self.resolve_in(config_dir().as_deref())
    }

    /// Applies the fallbacks from `dir` (the config directory, if there is one).
    pub(crate) fn resolve_in(&self, dir: Option<&Path>) -> anyhow::Result<ClientSettings> {
        let profile = match dir {
            Some(dir) => profile::choose(dir, self.profile.as_deref(), self.addr.is_some())?,
            None if self.profile.is_some() => {
                bail!("no config directory for profiles: set HOME or XDG_CONFIG_HOME")
            }
            None => None,
        };
        match profile {
            Some(profile) => self.resolve_with(profile),
            None => self.resolve_legacy(dir),
        }
    }

    /// Flags and environment over the profile's settings.
    fn resolve_with(&self, profile: Profile) -> anyhow::Result<ClientSettings> {
        let addrs = match &self.addr {
            Some(addr) => split_addrs(addr)?,
            None => profile
                .controllers
                .iter()
                .map(|a| normalize_addr(a))
                .collect::<anyhow::Result<_>>()?,
        };
        let (ca, ca_managed) = match &self.ca {
            Some(ca) => (ca.clone(), false),
            None if profile.ca_path().exists() => (profile.ca_path(), true),
            None => bail!(
                "the profile {} has no CA: run `portcullis login {} --profile {}` again",
                profile.name,
                profile.controllers.first().map_or("URL", String::as_str),
                profile.name
            ),
        };
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            // The profile's token goes to the profile's controllers only.
            None if self.addr.is_none() && profile.token_path().exists() => {
                Some(read_token_file(&profile.token_path())?)
            }
            None => None,
        };
        Ok(ClientSettings {
            addrs,
            ca,
            ca_managed,
            token,
            profile: Some(profile),
        })
    }

    /// The settings of before profiles: flags, environment, then `CONFIG/portcullis/*`.
    fn resolve_legacy(&self, dir: Option<&Path>) -> anyhow::Result<ClientSettings> {
        let addr = match &self.addr {
            Some(addr) => addr.clone(),
            None => match dir.map(|d| d.join("addr")).filter(|p| p.exists()) {
                Some(file) => read_small_file(&file)?,
                None => bail!(
                    "no controller address: run `portcullis login https://CONTROLLER:9200` to \
                     save a profile, pass --addr, set PORTCULLIS_ADDR (e.g. \
                     https://127.0.0.1:9200), or `. STATE/dev.env` after `portcullis dev`"
                ),
            },
        };
        let addrs = split_addrs(&addr)?;
        let (ca, ca_managed) = match &self.ca {
            Some(ca) => (ca.clone(), false),
            None => match dir.map(|d| d.join("ca.pem")).filter(|p| p.exists()) {
                Some(file) => (file, true),
                None => bail!(
                    "no CA for the controller: pass --ca FILE or set PORTCULLIS_CA to the PEM \
                     file of the controller's CA (the CLI trusts nothing else)"
                ),
            },
        };
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => match dir.map(|d| d.join("token")).filter(|p| p.exists()) {
                Some(file) => Some(read_token_file(&file)?),
                None => None,
            },
        };
        Ok(ClientSettings {
            addrs,
            ca,
            ca_managed,
            token,
            profile: None,
        })
    }
}

/// One address or several separated by commas, each normalised.
pub(crate) fn split_addrs(text: &str) -> anyhow::Result<Vec<String>> {
    let addrs = text
        .split(',')
        .filter(|a| !a.trim().is_empty())
        .map(normalize_addr)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if addrs.is_empty() {
        bail!("the controller address is empty: set PORTCULLIS_ADDR, e.g. https://127.0.0.1:9200");
    }
    Ok(addrs)
}

/// Accepts `https://host:port[/]` or a bare `host:port` (taken as HTTPS); refuses plain HTTP.
fn normalize_addr(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        bail!("the controller address is empty: set PORTCULLIS_ADDR, e.g. https://127.0.0.1:9200");
    }
    if addr.starts_with("http://") {
        bail!("the controller address {addr} uses plain HTTP; the API is served only over HTTPS");
    }
    let addr = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("https://{addr}")
    };
    let url = reqwest::Url::parse(&addr).with_context(|| {
        format!("the controller address {addr} is not a URL like https://HOST:PORT")
    })?;
    if url.scheme() != "https" || url.host_str().is_none() {
        bail!("the controller address {addr} must look like https://HOST:PORT");
    }
    Ok(addr)
}

fn read_small_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Reads the token file written by login, refusing it when other users could read it.
fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} holds an API token but other users may read it (mode {mode:03o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = read_small_file(path)?;
    text.parse::<Token>()
        .map_err(|why| anyhow!("{}: {why}; log in again", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
