//! `portcullis connect ssh TARGET [-- SSH-ARGS]`: OpenSSH through a brokered session.
//!
//! The CLI makes an ephemeral Ed25519 SSH key, sends its public half with authorize-session,
//! writes the key, a session hand-off file and a known_hosts file into a private 0700
//! directory removed at exit, and runs `ssh` with `ProxyCommand` = `portcullis connect
//! --stdio --session-file` of the same session. Host-key checking stays strict. What else ssh
//! is told depends on the session's SSH mode, as the policy decided it ([`trust`]):
//!
//! - certificate mode: the controller certifies the key for this session (key id = session
//!   id, principals = the logins the policy grants, usable only from the workers' egress
//!   addresses, valid for minutes); ssh shows key and certificate to the target and checks the
//!   target's pinned host keys (or its SSH host CAs);
//! - gateway mode: the worker terminates SSH and logs into the target with a key and
//!   certificate that never leave it; ssh shows only the session's key (bound in the grant)
//!   and checks the gateway's host certificate, trusting the gateway host CA for the one name
//!   `portcullis-gateway`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use portcullis_files::write_private_atomic;
use portcullis_proto::api::Target;

pub(crate) mod trust;

pub(crate) use trust::known_hosts;
use trust::SshTrust;

use super::session_file::{HandoffFile, SessionFile};
use super::tls::ClientIdentity;
use crate::cli::http::{segment, ApiClient, ClientArgs};

const EXAMPLES: &str = "\
In a deployment (an SSH target; `portcullis dev` has only its TCP echo target):
  portcullis connect ssh web-01
  portcullis connect ssh web-01 -- uptime
  portcullis connect ssh web-01 --login deploy -- -t htop
  portcullis connect ssh web-01 -- -L 8080:localhost:80     # gateway mode, if the role allows

The policy decides how the session runs (`ssh_mode` on the role, grant or zone):
  certificate  you get a certificate for this session only and ssh logs into the target;
  gateway      the worker's SSH gateway logs into the target for you with a credential you
               never hold; ssh logs into the gateway with the session's key and checks its
               host certificate (HostKeyAlias portcullis-gateway); every channel (shell,
               command, sftp, -L/-W, -R, -A, X11) is checked against your role.
Either way the key and files live in a private directory removed when ssh exits.

The target needs a pinned host key (`portcullis targets update web-01 --ssh-host-key \"$(ssh-keyscan -t ed25519 HOST | cut -d' ' -f2-)\"`):
ssh checks it in certificate mode, the worker in gateway mode.";

/// Run OpenSSH through a brokered session: with a short-lived certificate, or through the
/// worker's SSH gateway, as the policy decides.
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
    let target = pinned_target(&api, &args.target).await?;
    let files = SshFiles::create()?;
    let public = write_ssh_key(&files.key())?;

    let identity = ClientIdentity::generate()?;
    let auth = super::session::authorize(&api, &target.name, &identity, Some(public), None).await?;
    // ssh may run for hours before the cancel: the connection the authorisation used goes
    // back now rather than idling in the pool, since the controller allows each address only a
    // few (`api.connections.max_per_address`) and many `connect ssh` may run side by side.
    drop(api);
    let mut session = CancelOnDrop {
        api: Some(ApiClient::from_args(&args.client)?),
        id: auth.session_id.clone(),
        token_expires_at: auth.token_expires_at,
    };
    let trust = trust::for_session(&target, &auth)?;
    if let Some(cert) = &trust.certificate {
        write_private_atomic(&files.cert(), format!("{cert}\n").as_bytes())?;
    }
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
    write_private_atomic(&files.known_hosts(), trust.known_hosts.as_bytes())?;

    let proxy = proxy_command(&target.name, &files.session())?;
    let how = match trust.mode {
        portcullis_policy::SshMode::Certificate => "certificate valid for minutes",
        portcullis_policy::SshMode::Gateway => "through the worker's SSH gateway",
    };
    eprintln!(
        "Session {} to {} as {login}; {how}, session until {}.",
        auth.session_id,
        target.name,
        crate::cli::output::time(auth.expires_at)
    );
    let status = ssh_command(&args, &files, &trust, &proxy, &login)
        .status()
        .await
        .with_context(|| format!("cannot run {}", args.ssh_program))?;
    session.finish().await;
    drop(files);
    Ok(status.code().unwrap_or(255))
}

/// Looks the target up, or says how an admin pins a host key: host-key checking stays on, by
/// ssh in certificate mode and by the worker in gateway mode.
async fn pinned_target(api: &ApiClient, name: &str) -> anyhow::Result<Target> {
    let target: Target = api
        .get(&format!("/v1/targets/{}", segment(name)?))
        .await
        .with_context(|| format!("cannot look up target {name}"))?;
    if known_hosts(&target).is_none() {
        bail!(
            "target {} has no pinned SSH host key and no SSH host CA, and host-key checking is never \
             turned off; an admin adds one with `portcullis targets update {} --ssh-host-key 'ssh-ed25519 AAAA...'` \
             or `--ssh-host-ca 'ssh-ed25519 AAAA...'`",
            target.name,
            target.name
        );
    }
    Ok(target)
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

    /// The certificate the controller issued for the key (certificate mode only).
    fn cert(&self) -> PathBuf {
        self.dir.path().join("id_ed25519-cert.pub")
    }

    /// The session hand-off file `ProxyCommand` joins.
    fn session(&self) -> PathBuf {
        self.dir.path().join("session.json")
    }

    /// The target's pinned host keys and host CAs, or the gateway host CA's one line.
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

/// The ssh command line: only the session's key (and its certificate, in certificate mode),
/// only the host keys of `trust` (strictly checked), through `proxy`, never a shared control
/// connection.
fn ssh_command(
    args: &SshArgs,
    files: &SshFiles,
    trust: &SshTrust,
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
        .arg(files.key());
    if trust.certificate.is_some() {
        command
            .arg("-o")
            .arg(format!("CertificateFile={}", files.cert().display()));
    }
    command
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
        .arg(format!("HostKeyAlias={}", trust.alias))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg("-o")
        .arg("ControlMaster=no")
        .arg("-o")
        .arg("ControlPath=none")
        .arg("-l")
        .arg(login)
        .arg(&trust.alias)
        .args(&args.ssh_args);
    command
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
