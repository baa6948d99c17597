//! `portcullis connect ssh TARGET [-- SSH-ARGS]`: OpenSSH through a brokered session.
//!
//! The CLI makes an ephemeral Ed25519 SSH key, has the controller certify it for this session
//! (key id = session id, principals = the logins the policy grants, usable only from the
//! workers' egress addresses, valid for minutes), writes key, certificate, a session hand-off
//! file and a known_hosts file with the target's pinned host keys into a private 0700
//! directory removed at exit (host keys pinned on the target, or `@cert-authority` lines for
//! its SSH host CAs), and runs `ssh` with `ProxyCommand` = `portcullis connect
//! --stdio --session-file` of the same session. Host-key checking stays strict.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use portcullis_files::write_private_atomic;
use portcullis_proto::api::Target;

use super::session_file::{HandoffFile, SessionFile};
use super::tls::ClientIdentity;
use crate::cli::http::{segment, ApiClient, ClientArgs};

const EXAMPLES: &str = "\
Examples:
  portcullis connect ssh web-01
  portcullis connect ssh web-01 -- uptime
  portcullis connect ssh web-01 --login deploy -- -t htop

The target needs a pinned host key (`portcullis targets update web-01 --ssh-host-key \"$(ssh-keyscan -t ed25519 HOST | cut -d' ' -f2-)\"`).";

/// Run OpenSSH through a brokered session with a short-lived certificate.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
pub(crate) struct SshArgs {
    /// The target's id or name.
    pub target: String,
    /// The login (SSH principal) to use; by default the first one the policy grants.
    #[arg(long, short = 'l')]
    pub login: Option<String>,
    /// The ssh program to run.
    #[arg(long, default_value = "ssh")]
    pub ssh_program: String,
    /// Arguments for ssh, after `--` (a remote command, or options such as -t).
    #[arg(last = true, value_name = "SSH-ARGS")]
    pub ssh_args: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Quotes a word for the POSIX shell ssh runs `ProxyCommand` and `Match exec` with; a word
/// with a NUL byte cannot be passed and is refused.
pub(crate) fn shell_quote(word: &str) -> anyhow::Result<String> {
    shlex::try_quote(word)
        .map(std::borrow::Cow::into_owned)
        .with_context(|| format!("{word:?} cannot be passed to a shell"))
}

pub(crate) async fn run(args: SshArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let (target, alias, known_hosts) = pinned_target(&api, &args.target).await?;
    let files = SshFiles::create()?;
    let public = write_ssh_key(&files.key())?;

    let identity = ClientIdentity::generate()?;
    let auth = super::session::authorize(&api, &target.name, &identity, Some(public)).await?;
    let mut session = CancelOnDrop {
        api: Some(api),
        id: auth.session_id.clone(),
        token_expires_at: auth.token_expires_at,
    };
    let cert = auth
        .ssh_certificate
        .clone()
        .context("the controller returned no SSH certificate")?;
    write_private_atomic(&files.cert(), format!("{cert}\n").as_bytes())?;
    let login = choose_login(args.login.as_deref(), &auth.ssh_principals, &target.name)?;
    let _handoff = HandoffFile::write(
        &files.session(),
        &SessionFile {
            session_id: auth.session_id.clone(),
            target: Some(target.name.clone()),
            worker_addr: auth.worker_addr.clone(),
            worker_key_fingerprint: auth.worker_key_fingerprint.clone(),
            grant: auth.grant.clone(),
            expires_at: auth.expires_at,
            client_cert_pem: identity.cert_pem(),
            client_key_pem: identity.key_pem(),
        },
    )?;
    write_private_atomic(&files.known_hosts(), known_hosts.as_bytes())?;

    let proxy = proxy_command(&target.name, &files.session())?;
    eprintln!(
        "Session {} to {} as {login}; certificate valid for minutes, session until {}.",
        auth.session_id,
        target.name,
        crate::cli::output::time(auth.expires_at)
    );
    let status = ssh_command(&args, &files, &alias, &proxy, &login)
        .status()
        .await
        .with_context(|| format!("cannot run {}", args.ssh_program))?;
    session.finish().await;
    drop(files);
    Ok(status.code().unwrap_or(255))
}

/// Looks the target up; with its `HostKeyAlias` and known_hosts text (see [`known_hosts`]),
/// or an error saying how an admin pins a host key, since host-key checking stays on.
async fn pinned_target(api: &ApiClient, name: &str) -> anyhow::Result<(Target, String, String)> {
    let target: Target = api
        .get(&format!("/v1/targets/{}", segment(name)?))
        .await
        .with_context(|| format!("cannot look up target {name}"))?;
    let Some((alias, known_hosts)) = known_hosts(&target) else {
        bail!(
            "target {} has no pinned SSH host key and no SSH host CA, and host-key checking is never \
             turned off; an admin adds one with `portcullis targets update {} --ssh-host-key 'ssh-ed25519 AAAA...'` \
             or `--ssh-host-ca 'ssh-ed25519 AAAA...'`",
            target.name,
            target.name
        );
    };
    Ok((target, alias, known_hosts))
}

/// The files ssh is pointed at, in a private 0700 directory removed when this is dropped.
struct SshFiles {
    dir: tempfile::TempDir,
}

impl SshFiles {
    fn create() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-ssh-")
            .tempdir()
            .context("cannot create a private directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir })
    }

    /// The session's SSH private key.
    fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The certificate the controller issued for the key.
    fn cert(&self) -> PathBuf {
        self.dir.path().join("id_ed25519-cert.pub")
    }

    /// The session hand-off file `ProxyCommand` joins.
    fn session(&self) -> PathBuf {
        self.dir.path().join("session.json")
    }

    /// The target's pinned host keys and host CAs.
    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

/// Generates an ephemeral Ed25519 SSH key, writes it (0600) to `path` and returns its public
/// key in OpenSSH format, for the controller to certify.
fn write_ssh_key(path: &Path) -> anyhow::Result<String> {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .context("cannot generate an SSH key")?;
    let private = key
        .to_openssh(ssh_key::LineEnding::LF)
        .context("cannot encode the SSH key")?;
    write_private_atomic(path, private.as_bytes())?;
    key.public_key()
        .to_openssh()
        .context("cannot encode the SSH public key")
}

/// The login to use: the one asked for if the policy grants it, else the first one granted.
fn choose_login(asked: Option<&str>, granted: &[String], target: &str) -> anyhow::Result<String> {
    match asked {
        Some(login) if granted.iter().any(|g| g == login) => Ok(login.to_owned()),
        Some(login) => bail!(
            "the policy does not grant login {login:?} on {target}; granted: {}",
            granted.join(", ")
        ),
        None => granted
            .first()
            .cloned()
            .context("the policy grants no SSH login on this target"),
    }
}

/// `portcullis connect TARGET --stdio --session-file PATH` with this very executable, quoted
/// for the shell ssh runs `ProxyCommand` with.
fn proxy_command(target: &str, session_file: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe()
        .context("cannot find the portcullis executable for ProxyCommand")?;
    Ok(format!(
        "{} connect {} --stdio --session-file {}",
        shell_quote(&exe.display().to_string())?,
        shell_quote(target)?,
        shell_quote(&session_file.display().to_string())?
    ))
}

/// The ssh command line: only the session's key and certificate, only the target's pinned
/// host keys (strictly checked), through `proxy`, never a shared control connection.
fn ssh_command(
    args: &SshArgs,
    files: &SshFiles,
    alias: &str,
    proxy: &str,
    login: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&args.ssh_program);
    command
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        .arg("-o")
        .arg("IdentityAgent=none")
        .arg("-i")
        .arg(files.key())
        .arg("-o")
        .arg(format!("CertificateFile={}", files.cert().display()))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            files.known_hosts().display()
        ))
        .arg("-o")
        .arg("GlobalKnownHostsFile=/dev/null")
        .arg("-o")
        .arg("StrictHostKeyChecking=yes")
        .arg("-o")
        .arg(format!("HostKeyAlias={alias}"))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg("-o")
        .arg("ControlMaster=no")
        .arg("-o")
        .arg("ControlPath=none")
        .arg("-l")
        .arg(login)
        .arg(alias)
        .args(&args.ssh_args);
    command
}

/// The `HostKeyAlias` and the known_hosts file for a target, or None when it has neither a
/// pinned host key nor a host CA. Pinned keys are listed under the alias; host CAs as
/// `@cert-authority` lines. With a host CA the alias is the host of the target's address,
/// because ssh checks a host certificate's principals against it.
pub(crate) fn known_hosts(target: &Target) -> Option<(String, String)> {
    if target.ssh_host_keys.is_empty() && target.ssh_host_cas.is_empty() {
        return None;
    }
    let alias = if target.ssh_host_cas.is_empty() {
        format!("portcullis.{}", target.name)
    } else {
        let host = target
            .address
            .rsplit_once(':')
            .map_or(target.address.as_str(), |(h, _)| h);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    };
    let mut text = String::new();
    for key in &target.ssh_host_keys {
        text.push_str(&format!("{alias} {}\n", key.trim()));
    }
    for ca in &target.ssh_host_cas {
        text.push_str(&format!("@cert-authority {alias} {}\n", ca.trim()));
    }
    Some((alias, text))
}

/// Cancels the session when the command is done (or fails part-way).
struct CancelOnDrop {
    api: Option<ApiClient>,
    id: String,
    token_expires_at: Option<u64>,
}

impl CancelOnDrop {
    /// ssh has exited: the session closes.
    async fn finish(&mut self) {
        if let Some(api) = self.api.take() {
            let reason = portcullis_proto::api::CancelReason::Closed;
            let ended =
                super::session::end_own_session(&api, &self.id, reason, self.token_expires_at);
            if let Err(err) = ended.await {
                eprintln!("warning: could not cancel session {}: {err:#}", self.id);
            }
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.api.is_some() {
            eprintln!("warning: session {} was left open; it ends at its expiry (or `portcullis sessions cancel {}`)", self.id, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_hosts_lists_pinned_keys_and_host_cas() {
        let mut target: portcullis_proto::api::Target = serde_json::from_value(serde_json::json!({
            "id": "t_1", "name": "web", "address": "web-01.lan:22", "zone": null, "service": null,
            "vmid": null, "tags": [], "pool": null, "max_session_secs": 60, "connection_limit": 0,
            "created_at": 0, "updated_at": 0,
        }))
        .unwrap();
        assert!(super::known_hosts(&target).is_none());
        target.ssh_host_keys = vec!["ssh-ed25519 AAAA1".into()];
        let (alias, text) = super::known_hosts(&target).unwrap();
        assert_eq!(alias, "portcullis.web");
        assert_eq!(text, "portcullis.web ssh-ed25519 AAAA1\n");
        target.ssh_host_cas = vec!["ssh-ed25519 AAAA2".into()];
        let (alias, text) = super::known_hosts(&target).unwrap();
        assert_eq!(alias, "web-01.lan");
        assert!(
            text.contains("@cert-authority web-01.lan ssh-ed25519 AAAA2\n"),
            "{text}"
        );
    }

    #[test]
    fn a_quoted_word_reaches_the_shell_as_one_unchanged_word() {
        assert_eq!(super::shell_quote("a b").unwrap(), "'a b'");
        let words = [
            "/usr/local/bin/portcullis",
            "/home/o'brien/my tools/portcullis",
            "web-01",
            "$HOME `id` $(id) \\ \"quoted\" !x ^y *?[a] ~ # ; & | < > {a,b}",
            "tab\tnewline\nend",
            "",
            "日本",
        ];
        let mut script = String::from("printf '%s\\0'");
        for word in words {
            script.push(' ');
            script.push_str(&super::shell_quote(word).unwrap());
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        let read: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        assert_eq!(read, words, "{script}");
        assert!(super::shell_quote("a\0b").is_err());
    }

    #[test]
    fn the_login_is_one_the_policy_grants() {
        let granted = vec!["admin".to_owned(), "deploy".to_owned()];
        let chosen = |asked| super::choose_login(asked, &granted, "web");
        assert_eq!(chosen(None).unwrap(), "admin");
        assert_eq!(chosen(Some("deploy")).unwrap(), "deploy");
        let err = chosen(Some("root")).unwrap_err().to_string();
        assert_eq!(
            err,
            "the policy does not grant login \"root\" on web; granted: admin, deploy"
        );
        assert!(super::choose_login(None, &[], "web").is_err());
    }
}
