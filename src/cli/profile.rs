//! Named profiles: what `portcullis login URL` saves so that later commands need no flags and
//! no environment. A profile is a directory `CONFIG/portcullis/profiles/NAME/` (0700):
//!
//! - `profile.toml` (0600): `controllers = ["https://a:9200", "https://b:9200"]`, tried in
//!   order, the last one that answered first (see `http/failover.rs`);
//! - `ca.pem`: the controller's CA the user confirmed by fingerprint at login, the only trust
//!   anchor; the CLI follows a CA rotation into it (see `http/ca_bundle.rs`);
//! - `token` (0600): the API token login saved;
//! - `last-good`: the controller that answered last (not secret).
//!
//! `CONFIG/portcullis/current` names the profile used when neither `--profile` nor
//! `PORTCULLIS_PROFILE` does; without it the profile `default` is used if it exists.

pub(crate) mod fingerprint;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// The profile `login URL` writes when none is named.
pub(crate) const DEFAULT: &str = "default";
const PROFILE_FILE: &str = "profile.toml";
const CA_FILE: &str = "ca.pem";
const TOKEN_FILE: &str = "token";
const LAST_GOOD: &str = "last-good";
const CURRENT: &str = "current";

/// A saved profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub name: String,
    pub dir: PathBuf,
    /// `https://host:port` each, at least one.
    pub controllers: Vec<String>,
}

/// `profile.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    controllers: Vec<String>,
}

/// Letters, digits, `-` and `_`, at most 64: a name that is a safe directory name.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("{name:?} is not a profile name: use letters, digits, '-' and '_' (at most 64)");
    }
    Ok(())
}

impl Profile {
    fn dir_of(config: &Path, name: &str) -> PathBuf {
        config.join("profiles").join(name)
    }

    /// The profile `name` under `config`, or `None` when it was never saved.
    pub(crate) fn load(config: &Path, name: &str) -> anyhow::Result<Option<Profile>> {
        check_name(name)?;
        let dir = Profile::dir_of(config, name);
        let file = dir.join(PROFILE_FILE);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let parsed: ProfileFile = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a profile; run `portcullis login URL --profile {name}` again",
                file.display()
            )
        })?;
        if parsed.controllers.is_empty() {
            bail!("{} lists no controllers", file.display());
        }
        Ok(Some(Profile {
            name: name.to_owned(),
            dir,
            controllers: parsed.controllers,
        }))
    }

    /// Writes the profile's `profile.toml` (creating its directory, 0700).
    pub(crate) fn save(
        config: &Path,
        name: &str,
        controllers: &[String],
    ) -> anyhow::Result<Profile> {
        use std::os::unix::fs::PermissionsExt as _;
        check_name(name)?;
        let dir = Profile::dir_of(config, name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
        let text = toml::to_string(&ProfileFile {
            controllers: controllers.to_vec(),
        })
        .context("cannot encode the profile")?;
        let text = format!("# Written by `portcullis login`; see docs/cli.md (Profiles).\n{text}");
        portcullis_files::write_private_atomic(&dir.join(PROFILE_FILE), text.as_bytes())?;
        Ok(Profile {
            name: name.to_owned(),
            dir,
            controllers: controllers.to_vec(),
        })
    }

    pub(crate) fn file(&self) -> PathBuf {
        self.dir.join(PROFILE_FILE)
    }

    pub(crate) fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    pub(crate) fn token_path(&self) -> PathBuf {
        self.dir.join(TOKEN_FILE)
    }

    /// The controller that answered last, if it is still one of the profile's.
    pub(crate) fn last_good(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join(LAST_GOOD)).ok()?;
        let text = text.trim();
        self.controllers
            .iter()
            .any(|c| c == text)
            .then(|| text.to_owned())
    }

    /// Remembers the controller that answered; a failure only costs the order next time.
    pub(crate) fn set_last_good(&self, addr: &str) {
        let _ = portcullis_files::write_private_atomic(
            &self.dir.join(LAST_GOOD),
            format!("{addr}\n").as_bytes(),
        );
    }
}

/// The name in `CONFIG/portcullis/current`, if any.
pub(crate) fn current(config: &Path) -> anyhow::Result<Option<String>> {
    let file = config.join(CURRENT);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let name = text.trim().to_owned();
            check_name(&name).with_context(|| format!("in {}", file.display()))?;
            Ok(Some(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

pub(crate) fn set_current(config: &Path, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    portcullis_files::write_private_atomic(&config.join(CURRENT), format!("{name}\n").as_bytes())?;
    Ok(())
}

/// Which profile a command uses: the one `explicit` names (`--profile`, `PORTCULLIS_PROFILE`),
/// which must exist; else none when the address is given (`--addr`, `PORTCULLIS_ADDR`: the
/// settings of before profiles); else the `current` one, else `default` if it exists.
pub(crate) fn choose(
    config: &Path,
    explicit: Option<&str>,
    addr_given: bool,
) -> anyhow::Result<Option<Profile>> {
    let missing = |name: &str| {
        anyhow::anyhow!(
            "there is no profile {name:?}: run `portcullis login https://CONTROLLER:9200 \
             --profile {name}` to create it (`portcullis status` shows the one in use)"
        )
    };
    if let Some(name) = explicit {
        return Profile::load(config, name)?
            .map(Some)
            .ok_or_else(|| missing(name));
    }
    if addr_given {
        return Ok(None);
    }
    if let Some(name) = current(config)? {
        return Profile::load(config, &name)?
            .map(Some)
            .ok_or_else(|| missing(&name));
    }
    Profile::load(config, DEFAULT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn two(config: &Path) {
        Profile::save(
            config,
            "prod",
            &["https://p1:9200".into(), "https://p2:9200".into()],
        )
        .unwrap();
        Profile::save(config, DEFAULT, &["https://d:9200".into()]).unwrap();
    }

    #[test]
    fn a_named_profile_wins_then_current_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path();
        assert_eq!(choose(config, None, false).unwrap(), None);
        two(config);
        assert_eq!(choose(config, None, false).unwrap().unwrap().name, DEFAULT);
        set_current(config, "prod").unwrap();
        let chosen = choose(config, None, false).unwrap().unwrap();
        assert_eq!(chosen.name, "prod");
        assert_eq!(chosen.controllers.len(), 2);
        assert_eq!(
            choose(config, Some(DEFAULT), false).unwrap().unwrap().name,
            DEFAULT
        );
        // An address given (flag or PORTCULLIS_ADDR) means the settings of before profiles,
        // unless a profile is named too.
        assert_eq!(choose(config, None, true).unwrap(), None);
        assert_eq!(
            choose(config, Some("prod"), true).unwrap().unwrap().name,
            "prod"
        );
        let err = choose(config, Some("nope"), false).unwrap_err().to_string();
        assert!(err.contains("--profile nope"), "{err}");
        set_current(config, "gone").unwrap();
        assert!(choose(config, None, false).is_err());
    }

    #[test]
    fn files_are_private_and_names_are_checked() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        two(dir.path());
        let p = Profile::load(dir.path(), "prod").unwrap().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p.dir), 0o700);
        assert_eq!(mode(&p.file()), 0o600);
        for bad in ["", "../x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
            assert!(Profile::load(dir.path(), bad).is_err(), "{bad}");
        }
        std::fs::write(p.file(), "controllers = []\n").unwrap();
        assert!(Profile::load(dir.path(), "prod").is_err());
    }

    #[test]
    fn the_last_good_controller_must_still_be_listed() {
        let dir = tempfile::tempdir().unwrap();
        two(dir.path());
        let p = Profile::load(dir.path(), "prod").unwrap().unwrap();
        assert_eq!(p.last_good(), None);
        p.set_last_good("https://p2:9200");
        assert_eq!(p.last_good().as_deref(), Some("https://p2:9200"));
        p.set_last_good("https://elsewhere:9200");
        assert_eq!(p.last_good(), None);
    }
}
