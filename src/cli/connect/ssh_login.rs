//! `--ssh-key PATH`: the user's own SSH key bound into a session served by a local listener
//! (or a hand-off file), and what the user's ssh needs to log in through it.
//!
//! Only the public half is ever read: from PATH when it ends in `.pub`, else from `PATH.pub`.
//! It goes to the controller with authorize-session; what comes back depends on the session's
//! SSH mode, as the policy decided it:
//!
//! - gateway mode: the key is bound in the grant, and the worker's gateway accepts that key
//!   and no other (another local user reaching the same listener with their own key is
//!   refused). The CLI writes a 0600 known_hosts file with the one line
//!   `@cert-authority portcullis-gateway CA` ([`trust::gateway_known_hosts`]) in a private
//!   directory, and tells the user the ssh options that check the gateway against it.
//! - certificate mode: the controller certifies the key for this session; the certificate
//!   goes beside the private key as `KEY-cert.pub`, where OpenSSH looks for it, unless a file
//!   is there already (never replaced). Both files are removed at exit, if still ours.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use portcullis_files::{create_private_atomic, write_private_atomic, WriteError};
use portcullis_policy::SshMode;
use portcullis_proto::api::SessionAuthorization;
use portcullis_proto::gateway::HOST_ALIAS;

use super::ssh::{shell_quote, trust};

/// The user's SSH key as given by `--ssh-key`: its public half, and where OpenSSH looks for
/// the certificate of its private half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserKey {
    /// The public key, one OpenSSH line.
    pub public: String,
    /// `PRIVATE-cert.pub`, beside the private key.
    pub certificate_path: PathBuf,
}

impl UserKey {
    /// Reads the public half of the key at `path` (a `.pub` file, or a private key file
    /// whose `.pub` sits beside it).
    pub(super) fn read(path: &Path) -> anyhow::Result<Self> {
        let (public_path, private_path) = key_paths(path).with_context(|| {
            format!(
                "--ssh-key {}: give the public key file (KEY.pub) or a private key file with \
                 its KEY.pub beside it",
                path.display()
            )
        })?;
        let text = std::fs::read_to_string(&public_path)
            .with_context(|| format!("cannot read the SSH public key {}", public_path.display()))?;
        let mut key = ssh_key::PublicKey::from_openssh(text.trim()).with_context(|| {
            format!(
                "{} is not an OpenSSH public key (one line such as `ssh-ed25519 AAAA...`)",
                public_path.display()
            )
        })?;
        // The comment (often user@host) is nobody's business but the user's.
        key.set_comment("");
        let public = key
            .to_openssh()
            .context("cannot encode the SSH public key")?;
        let mut certificate_path = private_path.into_os_string();
        certificate_path.push("-cert.pub");
        Ok(Self {
            public,
            certificate_path: certificate_path.into(),
        })
    }
}

/// The public key file and the private key path of `--ssh-key PATH`, or None when PATH is
/// not a `.pub` file and has no `.pub` beside it.
fn key_paths(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let text = path.as_os_str().to_str()?;
    if let Some(private) = text.strip_suffix(".pub") {
        return Some((path.to_path_buf(), PathBuf::from(private)));
    }
    let public = PathBuf::from(format!("{text}.pub"));
    public.is_file().then(|| (public, path.to_path_buf()))
}

/// How the user's ssh logs in through this session, with the files it needs (removed when
/// this is dropped).
#[derive(Debug)]
pub(super) struct SshLogin {
    pub mode: SshMode,
    /// The logins the policy grants; the first is the one shown.
    pub logins: Vec<String>,
    files: LoginFiles,
}

#[derive(Debug)]
enum LoginFiles {
    /// The gateway's known_hosts file, in a private directory.
    Gateway { dir: tempfile::TempDir },
    /// The session's certificate beside the user's key.
    Certificate(OwnCertificate),
}

/// Where the user's ssh reaches the session.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reach<'a> {
    Port(u16),
    /// A Unix socket: through a ProxyCommand that connects to it.
    Unix(&'a Path),
    /// A hand-off file: through `portcullis connect TARGET --stdio --session-file FILE`.
    SessionFile {
        target: &'a str,
        file: &'a Path,
    },
}

impl SshLogin {
    /// Writes the files the session's mode needs: the gateway's known_hosts, or the
    /// certificate beside the key.
    pub(super) fn prepare(key: &UserKey, auth: &SessionAuthorization) -> anyhow::Result<Self> {
        if auth.ssh_principals.is_empty() {
            bail!("the policy grants no SSH login on {}", auth.target_name);
        }
        let files = match auth.ssh_mode {
            SshMode::Gateway => {
                let ca = auth.gateway_host_ca.as_deref().context(
                    "the controller put the session in SSH gateway mode but sent no gateway \
                     host CA; are the CLI and the controller the same version?",
                )?;
                let dir = tempfile::Builder::new()
                    .prefix("portcullis-connect-")
                    .tempdir()
                    .context("cannot create a private directory")?;
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
                write_private_atomic(
                    &dir.path().join("known_hosts"),
                    trust::gateway_known_hosts(ca)?.as_bytes(),
                )?;
                LoginFiles::Gateway { dir }
            }
            SshMode::Certificate => {
                let certificate = auth
                    .ssh_certificate
                    .as_deref()
                    .context("the controller returned no SSH certificate")?;
                LoginFiles::Certificate(OwnCertificate::write(&key.certificate_path, certificate)?)
            }
        };
        Ok(Self {
            mode: auth.ssh_mode,
            logins: auth.ssh_principals.clone(),
            files,
        })
    }

    /// The login shown (the first the policy grants).
    fn login(&self) -> &str {
        self.logins.first().map_or("", String::as_str)
    }

    /// The gateway's known_hosts file (gateway mode).
    pub(super) fn known_hosts(&self) -> Option<PathBuf> {
        match &self.files {
            LoginFiles::Gateway { dir } => Some(dir.path().join("known_hosts")),
            LoginFiles::Certificate(_) => None,
        }
    }

    /// The certificate written beside the key (certificate mode).
    fn certificate(&self) -> Option<&Path> {
        match &self.files {
            LoginFiles::Certificate(cert) => Some(&cert.path),
            LoginFiles::Gateway { .. } => None,
        }
    }

    /// The ssh options that check the host ssh reaches: in gateway mode, the gateway's host
    /// certificate under its one name, strictly.
    pub(super) fn options(&self) -> Vec<String> {
        match self.known_hosts() {
            Some(known_hosts) => vec![
                "-o".to_owned(),
                format!("HostKeyAlias={HOST_ALIAS}"),
                "-o".to_owned(),
                format!("UserKnownHostsFile={}", known_hosts.display()),
                "-o".to_owned(),
                "StrictHostKeyChecking=yes".to_owned(),
            ],
            None => Vec::new(),
        }
    }

    /// The whole ssh command line that logs in through `reach`, quoted for a shell.
    pub(super) fn command(&self, reach: Reach<'_>) -> anyhow::Result<String> {
        let mut words = vec!["ssh".to_owned()];
        for option in self.options() {
            words.push(shell_word(&option)?);
        }
        let host = match reach {
            Reach::Port(port) => {
                words.push(format!("-p {port}"));
                "127.0.0.1".to_owned()
            }
            Reach::Unix(path) => {
                let proxy = format!(
                    "ProxyCommand=nc -U {}",
                    shell_quote(&path.display().to_string())?
                );
                words.push(format!("-o {}", shell_quote(&proxy)?));
                HOST_ALIAS.to_owned()
            }
            Reach::SessionFile { target, file } => {
                // This very executable, as `connect ssh` names it in its ProxyCommand.
                let exe = std::env::current_exe()
                    .map_or_else(|_| "portcullis".to_owned(), |p| p.display().to_string());
                let proxy = format!(
                    "ProxyCommand={} connect {} --stdio --session-file {}",
                    shell_word(&exe)?,
                    shell_quote(target)?,
                    shell_quote(&file.display().to_string())?
                );
                words.push(format!("-o {}", shell_quote(&proxy)?));
                HOST_ALIAS.to_owned()
            }
        };
        words.push(shell_word(&format!("{}@{host}", self.login()))?);
        Ok(words.join(" "))
    }

    /// The `ssh` member of the JSON listening line.
    pub(super) fn json(&self, reach: Reach<'_>) -> anyhow::Result<serde_json::Value> {
        let mut value = serde_json::json!({
            "mode": self.mode.as_str(),
            "logins": self.logins,
            "login": self.login(),
            "options": self.options(),
            "command": self.command(reach)?,
        });
        if let Some(path) = self.known_hosts() {
            value["known_hosts"] = path.display().to_string().into();
        }
        if let Some(path) = self.certificate() {
            value["certificate"] = path.display().to_string().into();
        }
        Ok(value)
    }

    /// The lines of the text listening line.
    pub(super) fn text(&self, reach: Reach<'_>) -> anyhow::Result<String> {
        let logins = self.logins.join(", ");
        let mut text = match self.certificate() {
            Some(path) => format!(
                "SSH certificate for this session in {} (removed at exit; ssh finds it beside \
                 the key); logins: {logins}. Log in with:\n",
                path.display()
            ),
            None => format!(
                "SSH through the worker's gateway with your key only; logins: {logins}. \
                 Log in with:\n"
            ),
        };
        text.push_str(&format!("  {}\n", self.command(reach)?));
        Ok(text)
    }
}

/// `word` as a shell reads it: unchanged when it holds nothing a shell would interpret (so
/// the usual options read as they are typed), else quoted.
fn shell_word(word: &str) -> anyhow::Result<String> {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/:@=+%".contains(c));
    if plain {
        Ok(word.to_owned())
    } else {
        shell_quote(word)
    }
}

/// A certificate this process wrote; removed at drop if the file still holds it.
#[derive(Debug)]
struct OwnCertificate {
    path: PathBuf,
    contents: String,
}

impl OwnCertificate {
    fn write(path: &Path, certificate: &str) -> anyhow::Result<Self> {
        let contents = format!("{}\n", certificate.trim());
        match create_private_atomic(path, contents.as_bytes()) {
            Ok(()) => Ok(Self {
                path: path.to_path_buf(),
                contents,
            }),
            Err(WriteError::Exists { .. }) => bail!(
                "{} already exists and is not this session's; it is left alone. Move it away \
                 (or remove it, if an earlier portcullis session left it) and try again",
                path.display()
            ),
            Err(err) => Err(err)
                .with_context(|| format!("cannot write the SSH certificate to {}", path.display())),
        }
    }
}

impl Drop for OwnCertificate {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|text| text == self.contents) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
