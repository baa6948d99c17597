//! `portcullis connect` on an injecting Proxmox API target (the authorisation carries
//! [`ProxmoxSession`]): the worker speaks HTTP on every brokered connection and adds the
//! Proxmox API token minted for the session, so the local end is itself a credential.
//!
//! How the session is served locally:
//! - by default, and with `--socket PATH`, on a unix socket, 0600, in a 0700 directory
//!   (`$XDG_RUNTIME_DIR/portcullis/`, else `~/.cache/portcullis/run/`): only this user reaches
//!   it, and the CLI passes the bytes through;
//! - with `--listen-port` or `--exec`, on loopback HTTPS that this CLI terminates with a leaf
//!   of the user's local CA ([`crate::cli::local_tls`]); every request must carry the
//!   per-session [`LocalSecret`], whose SHA-256 went to the controller with authorize-session
//!   and reaches the worker in the grant, which checks and strips it. Another local user can
//!   reach the port but not act through it.
//!
//! The secret goes only into the child's environment (`--exec`) or a 0600 environment file
//! removed at exit (`--listen-port`): never to stdout, stderr, a log or the hand-off file.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use portcullis_proto::api::Target;
use portcullis_proto::pve::{ProxmoxSession, LOCAL_TOKEN_NAME, LOCAL_TOKEN_USER};
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use super::exec::ChildEnv;
use crate::cli::http::{config_dir, segment, ApiClient};
use crate::cli::local_tls::{self, CaBundle, LocalCa};

/// The host name a client is told to use for the HTTPS listener: the leaf certifies it, and
/// Terraform and Ansible need a name rather than an address.
pub(super) const HTTPS_HOST: &str = "localhost";

/// The per-session secret of a local HTTPS listener: 32 random bytes, hex. `Debug` and
/// `Display` never show it.
pub(super) struct LocalSecret(Zeroizing<String>);

impl LocalSecret {
    pub(super) fn generate() -> anyhow::Result<Self> {
        let bytes = Zeroizing::new(portcullis_crypto::random::bytes::<32>()?);
        Ok(Self(Zeroizing::new(hex::encode(*bytes))))
    }

    /// Hex SHA-256 of the secret's text: what authorize-session sends as
    /// `local_secret_sha256`.
    pub(super) fn sha256_hex(&self) -> String {
        portcullis_crypto::digest::sha256_hex(self.0.as_bytes())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LocalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalSecret(<redacted>)")
    }
}

/// Whether a target looks like an injecting Proxmox API target, before a session is asked
/// for: it names a cluster, or it is a node the catalog discovered as `proxmox-api`. The
/// authorisation decides; this only keeps a mistaken `--socket` from opening a session.
pub(super) fn looks_injecting(target: &Target) -> bool {
    target.proxmox_cluster.is_some()
        || (target.source.as_ref().is_some_and(|s| s.kind == "proxmox")
            && target.service.as_deref() == Some("proxmox-api"))
}

/// Checks, before any session, that `target` can be served as a Proxmox API (for
/// `--socket`, or when no way of connecting was named).
pub(super) async fn check_target(
    api: &ApiClient,
    target: &str,
    socket_named: bool,
) -> anyhow::Result<()> {
    let found: Target = api
        .get(&format!("/v1/targets/{}", segment(target)?))
        .await
        .with_context(|| format!("cannot look up target {target}"))?;
    if looks_injecting(&found) {
        return Ok(());
    }
    bail!(not_injecting(target, socket_named))
}

/// The error for `--socket`, or for naming no way of connecting, on a target whose sessions
/// get no Proxmox token.
pub(super) fn not_injecting(target: &str, socket_named: bool) -> String {
    if socket_named {
        format!(
            "{target} is not a Proxmox API target with a token per session, so --socket has \
             nothing to serve; for a plain tunnel use --listen-unix PATH (or --listen-port), \
             or ask an administrator for `portcullis targets update {target} \
             --proxmox-cluster CLUSTER` (the cluster needs a sessions table)"
        )
    } else {
        format!(
            "say how to carry connections: --listen-port PORT, --listen-unix PATH, --stdio, \
             --exec CMD or --write-session-file PATH (see `portcullis connect --help`); only \
             a Proxmox API target with a token per session gets a unix socket by default, and \
             {target} is a plain tunnel"
        )
    }
}

/// The directory of default sockets, from `$XDG_RUNTIME_DIR` or `$HOME`.
fn runtime_dir(xdg_runtime_dir: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let usable = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    match usable(xdg_runtime_dir) {
        Some(dir) if dir.is_absolute() => Some(dir.join("portcullis")),
        _ => usable(home)
            .filter(|home| home.is_absolute())
            .map(|home| home.join(".cache/portcullis/run")),
    }
}

/// Creates `dir` (and its parents) if needed and makes sure it is ours and 0700.
pub(super) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        bail!(
            "{} is not a directory of yours; remove it or choose a socket with --socket PATH",
            dir.display()
        );
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} 0700", dir.display()))?;
    }
    Ok(())
}

/// The private runtime directory of this user (see [`runtime_dir`]), created 0700.
pub(super) fn runtime_dir_from_env() -> anyhow::Result<PathBuf> {
    let dir = runtime_dir(
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("HOME"),
    )
    .context(
        "no directory for the session's socket: set XDG_RUNTIME_DIR or HOME, or pass \
         --socket PATH",
    )?;
    private_dir(&dir)?;
    Ok(dir)
}

/// The default socket of a session to `target`: `DIR/TARGET.sock` in the private runtime
/// directory. A socket left there by a process that died (nobody answers on it) is removed.
pub(super) fn default_socket(dir: &Path, target: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(socket_name(target));
    let meta = std::fs::symlink_metadata(&path);
    if meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) {
        match std::os::unix::net::UnixStream::connect(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
            }
            _ => bail!(
                "{} is in use by another session to {target}; end it, or choose another \
                 socket with --socket PATH",
                path.display()
            ),
        }
    }
    Ok(path)
}

/// `TARGET.sock`, with anything but letters, digits, `.`, `-` and `_` replaced.
fn socket_name(target: &str) -> String {
    let name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.sock", name.trim_start_matches('.'))
}

/// The environment of a client of the HTTPS listener on `port`: the endpoint and the
/// local "token" in the shapes the bpg Terraform provider, proxmoxer and Ansible's
/// `community.proxmox` read, and a CA bundle that includes the local CA.
pub(super) fn child_env(port: u16, secret: &LocalSecret, bundle: &Path) -> ChildEnv {
    let secret = secret.expose();
    let bundle = bundle.display().to_string();
    ChildEnv::new(vec![
        ("PORTCULLIS_PVE_URL", format!("https://127.0.0.1:{port}")),
        (
            "PROXMOX_VE_ENDPOINT",
            format!("https://{HTTPS_HOST}:{port}/"),
        ),
        (
            "PROXMOX_VE_API_TOKEN",
            format!("{LOCAL_TOKEN_USER}!{LOCAL_TOKEN_NAME}={secret}"),
        ),
        ("PROXMOX_HOST", HTTPS_HOST.to_owned()),
        ("PROXMOX_PORT", port.to_string()),
        ("PROXMOX_USER", LOCAL_TOKEN_USER.to_owned()),
        ("PROXMOX_TOKEN_ID", LOCAL_TOKEN_NAME.to_owned()),
        ("PROXMOX_TOKEN_SECRET", secret.to_owned()),
        // community.proxmox does not check certificates unless told to.
        ("PROXMOX_VALIDATE_CERTS", "true".to_owned()),
        ("SSL_CERT_FILE", bundle.clone()),
        ("REQUESTS_CA_BUNDLE", bundle.clone()),
        ("CURL_CA_BUNDLE", bundle),
    ])
}

/// What serving a Proxmox API session locally needs beyond the listener.
#[derive(Debug)]
pub(super) struct Served {
    pub(super) session: ProxmoxSession,
    /// For a TCP listener: its TLS and what its clients need.
    pub(super) https: Option<Https>,
}

/// The HTTPS side of a TCP listener.
pub(super) struct Https {
    pub(super) acceptor: TlsAcceptor,
    pub(super) port: u16,
    pub(super) ca_file: PathBuf,
    pub(super) env: ChildEnv,
    /// Where `--listen-port` writes [`Self::env`] for the user to source.
    pub(super) env_file: Option<EnvFile>,
    _bundle: CaBundle,
}

impl fmt::Debug for Https {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Https")
            .field("port", &self.port)
            .field("ca_file", &self.ca_file)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// How the session is listened for, as far as serving a Proxmox API needs to know.
#[derive(Debug, Clone, Copy)]
pub(super) struct Listening<'a> {
    /// The TCP port, for `--listen-port` or `--exec`.
    pub(super) port: Option<u16>,
    /// `--listen-port` alone: the secret goes to an environment file for the user.
    pub(super) env_file: bool,
    pub(super) secret: Option<&'a LocalSecret>,
}

impl Served {
    /// For an authorised session that carries `session`: HTTPS on the TCP port, if any, until
    /// `expires_at` (unix seconds).
    pub(super) fn prepare(
        session: &ProxmoxSession,
        target: &str,
        listening: Listening<'_>,
        expires_at: u64,
    ) -> anyhow::Result<Self> {
        let https = match listening.port {
            None => None,
            Some(port) => {
                let secret = listening
                    .secret
                    .context("internal: no local secret for a TCP listener")?;
                let config = config_dir()
                    .context("no config directory for the local CA: set HOME or XDG_CONFIG_HOME")?;
                let runtime = match listening.env_file {
                    true => Some(runtime_dir_from_env()?),
                    false => None,
                };
                let env_file = runtime.as_deref().map(|dir| EnvFileFor { dir, target });
                let lifetime = super::listen::until_unix(expires_at);
                Some(Https::prepare(&config, port, secret, lifetime, env_file)?)
            }
        };
        Ok(Self {
            session: session.clone(),
            https,
        })
    }
}

impl Https {
    /// Sets up HTTPS on `port` for a session that lasts `lifetime`: the local CA (made on
    /// first use in `config`, the CLI's config directory), a leaf, a CA bundle, the client's
    /// environment, and with `env_file` a 0600 file of that environment.
    pub(super) fn prepare(
        config: &Path,
        port: u16,
        secret: &LocalSecret,
        lifetime: Duration,
        env_file: Option<EnvFileFor<'_>>,
    ) -> anyhow::Result<Self> {
        let ca = LocalCa::load_or_create(config)?;
        let acceptor = ca.acceptor(lifetime)?;
        let bundle = CaBundle::write(&ca)?;
        let env = child_env(port, secret, bundle.path());
        let env_file = match env_file {
            Some(place) => Some(EnvFile::write(place, port, &env)?),
            None => None,
        };
        Ok(Self {
            acceptor,
            port,
            ca_file: ca.cert_path().to_path_buf(),
            env,
            env_file,
            _bundle: bundle,
        })
    }
}

/// Where `--listen-port` writes its environment file: the private runtime directory, named
/// for the target.
#[derive(Debug, Clone, Copy)]
pub(super) struct EnvFileFor<'a> {
    pub(super) dir: &'a Path,
    pub(super) target: &'a str,
}

/// `--listen-port`'s environment file: `export NAME='VALUE'` lines, 0600 in the private
/// runtime directory; removed when dropped.
pub(super) struct EnvFile {
    path: PathBuf,
}

impl EnvFile {
    fn write(place: EnvFileFor<'_>, port: u16, env: &ChildEnv) -> anyhow::Result<Self> {
        let stem = socket_name(place.target);
        let stem = stem.trim_end_matches(".sock");
        let path = place.dir.join(format!("{stem}-{port}.env"));
        let _ = std::fs::remove_file(&path); // A port is ours alone while we listen on it.
        let text = Zeroizing::new(env.shell_exports());
        local_tls::write_new(&path, text.as_bytes(), 0o600)?;
        Ok(Self { path })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

mod announce;
#[cfg(test)]
mod tests;

pub(super) use announce::{announce, Endpoint};
