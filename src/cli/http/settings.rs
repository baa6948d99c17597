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
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn parse(args: &[&str]) -> ClientArgs {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().client
    }

    #[test]
    fn flags_win_over_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("addr"), "https://file:1\n").unwrap();
        let args = parse(&[
            "--addr",
            "https://flag:9200/",
            "--ca",
            "/x/ca.pem",
            "--token",
            "t0k",
        ]);
        let settings = args.resolve_in(Some(dir.path())).unwrap();
        assert_eq!(settings.addrs, ["https://flag:9200"]);
        assert_eq!(settings.ca, PathBuf::from("/x/ca.pem"));
        assert_eq!(settings.token, Some("t0k".parse().unwrap()));
    }

    #[test]
    fn files_fill_in_what_flags_leave_out() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("addr"), "127.0.0.1:9200\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret-token\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let settings = parse(&[]).resolve_in(Some(dir.path())).unwrap();
        assert_eq!(settings.addrs, ["https://127.0.0.1:9200"]);
        assert_eq!(settings.ca, dir.path().join("ca.pem"));
        assert_eq!(settings.token, Some("secret-token".parse().unwrap()));

        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = parse(&[]).resolve_in(Some(dir.path())).unwrap_err();
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    }

    #[test]
    fn missing_settings_say_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let err = parse(&[]).resolve_in(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_ADDR"), "{err}");
        let err = parse(&["--addr", "https://a:1"])
            .resolve_in(None)
            .unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_CA"), "{err}");
        let settings = parse(&["--addr", "https://a:1", "--ca", "c"])
            .resolve_in(None)
            .unwrap();
        assert_eq!(settings.token, None);
        let err = parse(&["--addr", "http://a:1", "--ca", "c"])
            .resolve_in(None)
            .unwrap_err();
        assert!(err.to_string().contains("HTTPS"), "{err}");
    }

    #[test]
    fn a_profile_fills_in_what_flags_leave_out_and_keeps_its_token() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = Profile::save(
            dir.path(),
            profile::DEFAULT,
            &["https://a:1".into(), "b:2".into()],
        )
        .unwrap();
        std::fs::write(p.ca_path(), "x").unwrap();
        std::fs::write(p.token_path(), "profile-token\n").unwrap();
        std::fs::set_permissions(p.token_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        // The older files are not read while a profile is in use.
        std::fs::write(dir.path().join("addr"), "https://legacy:1\n").unwrap();
        let s = parse(&[]).resolve_in(Some(dir.path())).unwrap();
        assert_eq!(s.addrs, ["https://a:1", "https://b:2"]);
        assert_eq!(s.ca, p.ca_path());
        assert!(s.ca_managed);
        assert_eq!(s.token, Some("profile-token".parse().unwrap()));
        assert_eq!(s.profile.as_ref().map(|p| p.name.as_str()), Some("default"));
        // Another address: the profile's token is not sent there.
        let s = parse(&["--profile", "default", "--addr", "https://other:3"])
            .resolve_in(Some(dir.path()))
            .unwrap();
        assert_eq!(s.addrs, ["https://other:3"]);
        assert_eq!(s.ca, p.ca_path());
        assert_eq!(s.token, None);
        // An address without a profile named: the settings of before profiles.
        let s = parse(&["--addr", "https://other:3", "--ca", "c"])
            .resolve_in(Some(dir.path()))
            .unwrap();
        assert!(s.profile.is_none());
        let err = parse(&["--profile", "nope"])
            .resolve_in(Some(dir.path()))
            .unwrap_err();
        assert!(err.to_string().contains("no profile"), "{err}");
    }

    #[test]
    fn several_addresses_separated_by_commas() {
        let s = parse(&["--addr", "https://x:1, y:2,", "--ca", "c"])
            .resolve_in(None)
            .unwrap();
        assert_eq!(s.addrs, ["https://x:1", "https://y:2"]);
        assert!(parse(&["--addr", " , ", "--ca", "c"])
            .resolve_in(None)
            .is_err());
    }

    #[test]
    fn token_never_shows() {
        let args = parse(&["--token", "hunter2"]);
        assert!(!format!("{args:?}").contains("hunter2"));
        let settings = parse(&["--addr", "https://a:1", "--ca", "c", "--token", "hunter2"])
            .resolve_in(None)
            .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert_eq!(
            "hunter2".parse::<Token>().unwrap().to_string(),
            "<redacted>"
        );
        assert!("".parse::<Token>().is_err());
        assert!("a b".parse::<Token>().is_err());
    }
}
