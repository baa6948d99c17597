//! `portcullis ssh-prepare TARGET`: makes sure a session that can take one more connection,
//! with its key, known_hosts file and options, is on disk for the blocks `portcullis
//! ssh-config` prints. ssh runs it (through `Match exec`) while reading its configuration,
//! before it reads the options file and loads the key.
//!
//! The options file the block includes holds what depends on the session's SSH mode (see
//! `connect/ssh/trust.rs`): `User` (the policy's first login) and `HostKeyAlias` always, and
//! `CertificateFile` in certificate mode only. In gateway mode no certificate is written and
//! the known_hosts file holds the one `@cert-authority portcullis-gateway` line.
//!
//! The cached session is handed out again while [`reuse::decide`] allows it: not near its
//! expiry, still live by the controller's word, and with room under its connection limit.
//! Otherwise the cached files are removed first and a fresh session is authorised, so a
//! failure leaves nothing for the `ProxyCommand` to join: ssh then fails, and never falls
//! through to a direct connection.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{bail, Context as _};
use portcullis_files::write_private_atomic;
use portcullis_policy::SshMode;
use portcullis_proto::api::{Session, Target};
use portcullis_proto::clock::{Clock as _, SystemClock};

use super::reuse::{self, Cached, Controller, HandOffs};
use super::{quote, safe_name, state_root, SshPrepareArgs};
use crate::cli::connect::session_file::{read_session_file, write_session_file, SessionFile};
use crate::cli::connect::ssh::trust::{self, SshTrust};
use crate::cli::connect::tls::ClientIdentity;
use crate::cli::http::ApiError;
use crate::cli::http::{segment, ApiClient};

/// The files of a target's directory.
pub(super) const SESSION: &str = "session.json";
pub(super) const KEY: &str = "id_ed25519";
/// Certificate mode only.
pub(super) const CERT: &str = "id_ed25519-cert.pub";
pub(super) const KNOWN_HOSTS: &str = "known_hosts";
/// The options that depend on the session (see [`options`]), included by the block. Its
/// name is the one older versions gave the file that held only `User`, so the blocks they
/// printed keep working.
pub(super) const OPTIONS: &str = "login.conf";
/// The wildcard block's (ssh-prepare --suffix): [`OPTIONS`] under `Match originalhost HOST`,
/// which the block includes for every host.
pub(super) const HOST_CONF: &str = "host.conf";
const HAND_OFFS: &str = "hand-offs.json";

pub(crate) async fn run(args: SshPrepareArgs) -> anyhow::Result<i32> {
    let (target, dir_name) = args.target_and_dir()?;
    if !safe_name(&target) || !safe_name(&dir_name) {
        bail!("{:?} is not a target name", args.target);
    }
    let dir = state_root()?.join(&dir_name);
    let host = args.suffix.is_some().then_some(dir_name.as_str());
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    // One preparer per target at a time; the others wait and then reuse its session.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(".lock"))?;
    lock.lock()
        .context("cannot lock the target's session directory")?;
    if let Some(socket) = crate::cli::run::protocol::socket_from_env() {
        clear(&dir)?;
        super::under_run::prepare(&socket, &target, &dir).await?;
        write_host_conf(&dir, host)?;
        return Ok(0);
    }
    let api = ApiClient::from_args(&args.client)?;
    let now = SystemClock.unix_secs();
    if let Some(mut cached) = cached(&dir, now) {
        let said = ask(&api, &cached.hand_offs.session_id).await;
        let controller = match &said {
            Ok(session) => Controller::Says {
                state: &session.state,
                connections: u32::try_from(session.connections.len()).unwrap_or(u32::MAX),
            },
            Err(Asked::Refused) => Controller::Says {
                state: "unknown to the controller",
                connections: 0,
            },
            Err(Asked::Unreachable) => Controller::Unreachable,
        };
        match reuse::decide(&cached, controller, now) {
            Ok(()) => {
                cached.hand_offs.record(now);
                write_hand_offs(&dir, &cached.hand_offs)?;
                write_host_conf(&dir, host)?;
                return Ok(0);
            }
            Err(why) => tracing::debug!(%target, "a fresh session: {why}"),
        }
    }
    clear(&dir)?;
    fresh(&api, &target, &dir, now).await?;
    write_host_conf(&dir, host)?;
    Ok(0)
}

/// Removes the cached session's files, so that a failure leaves nothing to join.
fn clear(dir: &Path) -> anyhow::Result<()> {
    for name in [HOST_CONF, SESSION, HAND_OFFS, OPTIONS, CERT] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove the cached {name}")),
        }
    }
    Ok(())
}

/// For the wildcard block (`host` = the host name ssh was given): the options file under
/// `Match originalhost HOST`.
fn write_host_conf(dir: &Path, host: Option<&str>) -> anyhow::Result<()> {
    let Some(host) = host else {
        return Ok(());
    };
    let options =
        std::fs::read_to_string(dir.join(OPTIONS)).context("cannot read the session's options")?;
    write_private_atomic(&dir.join(HOST_CONF), host_conf(host, &options).as_bytes())?;
    Ok(())
}

fn host_conf(host: &str, options: &str) -> String {
    let mut text = format!("Match originalhost {host}\n");
    for line in options.lines() {
        text.push('\t');
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What the controller said about the cached session.
enum Asked {
    /// An answer that is not the session (unknown, or not ours to see any more).
    Refused,
    Unreachable,
}

async fn ask(api: &ApiClient, session_id: &str) -> Result<Session, Asked> {
    let path = format!(
        "/v1/sessions/{}",
        segment(session_id).map_err(|_| Asked::Unreachable)?
    );
    api.get::<Session>(&path).await.map_err(|e| {
        if e.downcast_ref::<ApiError>().is_some() {
            Asked::Refused
        } else {
            Asked::Unreachable
        }
    })
}

/// The cached session, when all its files are there and readable (the certificate only in
/// certificate mode: a gateway session has none).
fn cached(dir: &Path, now: u64) -> Option<Cached> {
    let session = read_session_file(&dir.join(SESSION), now).ok()?;
    let hand_offs: HandOffs =
        serde_json::from_slice(&std::fs::read(dir.join(HAND_OFFS)).ok()?).ok()?;
    if hand_offs.session_id != session.session_id
        || !dir.join(KEY).exists()
        || !dir.join(OPTIONS).exists()
    {
        return None;
    }
    let certificate_valid_before = match hand_offs.ssh_mode {
        SshMode::Certificate => {
            let text = std::fs::read_to_string(dir.join(CERT)).ok()?;
            Some(
                ssh_key::Certificate::from_openssh(text.trim())
                    .ok()?
                    .valid_before(),
            )
        }
        SshMode::Gateway => None,
    };
    Some(Cached {
        session_expires_at: session.expires_at,
        certificate_valid_before,
        hand_offs,
    })
}

fn write_hand_offs(dir: &Path, hand_offs: &HandOffs) -> anyhow::Result<()> {
    let json = serde_json::to_vec(hand_offs).context("cannot encode the hand-offs")?;
    write_private_atomic(&dir.join(HAND_OFFS), &json)?;
    Ok(())
}

/// Authorises a fresh session and writes its files, the session file last.
async fn fresh(api: &ApiClient, target: &str, dir: &Path, now: u64) -> anyhow::Result<()> {
    let target: Target = api
        .get(&format!("/v1/targets/{}", segment(target)?))
        .await?;
    if crate::cli::connect::ssh::known_hosts(&target).is_none() {
        bail!(
            "target {} has no pinned SSH host key or host CA",
            target.name
        );
    }
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)?;
    let public = key.public_key().to_openssh()?;
    let identity = ClientIdentity::generate()?;
    let auth = crate::cli::connect::authorize_for_ssh(api, &target.name, &identity, public).await?;
    let trust = trust::for_session(&target, &auth)?;
    write_private_atomic(&dir.join(KNOWN_HOSTS), trust.known_hosts.as_bytes())?;
    write_private_atomic(
        &dir.join(KEY),
        key.to_openssh(ssh_key::LineEnding::LF)?.as_bytes(),
    )?;
    if let Some(cert) = &trust.certificate {
        write_private_atomic(&dir.join(CERT), format!("{cert}\n").as_bytes())?;
    }
    let login = auth.ssh_principals.first().map(String::as_str);
    write_private_atomic(
        &dir.join(OPTIONS),
        options(&trust, login, &dir.join(CERT))?.as_bytes(),
    )?;
    let mut hand_offs = HandOffs {
        session_id: auth.session_id.clone(),
        connection_limit: auth.connection_limit,
        ssh_mode: trust.mode,
        at: Vec::new(),
    };
    hand_offs.record(now);
    write_hand_offs(dir, &hand_offs)?;
    write_session_file(
        &dir.join(SESSION),
        &SessionFile {
            session_id: auth.session_id.clone(),
            target: Some(target.name.clone()),
            worker_addr: auth.worker_addr,
            worker_key_fingerprint: auth.worker_key_fingerprint,
            grant: auth.grant,
            expires_at: auth.expires_at,
            client_cert_pem: identity.cert_pem(),
            client_key_pem: identity.key_pem(),
        },
    )?;
    Ok(())
}

/// The options file for a session: `User` = the policy's first login (as `connect ssh` picks
/// by default; `-l` or Ansible's `ansible_user` on the command line still win), the
/// `HostKeyAlias` ssh checks the host key under, and in certificate mode the certificate.
pub(super) fn options(
    trust: &SshTrust,
    login: Option<&str>,
    cert: &Path,
) -> anyhow::Result<String> {
    let mut text = match login {
        Some(login) => login_line(login)?,
        None => String::new(),
    };
    if !plain_word(&trust.alias) {
        bail!(
            "the host key alias {:?} cannot be written to an ssh configuration",
            trust.alias
        );
    }
    text.push_str(&format!("HostKeyAlias {}\n", trust.alias));
    if trust.certificate.is_some() {
        text.push_str(&format!(
            "CertificateFile {}\n",
            quote(&cert.display().to_string())
        ));
    }
    Ok(text)
}

/// A word ssh's configuration reads back unchanged without quotes.
fn plain_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

/// `User LOGIN` for ssh's configuration; a login ssh could not read back is refused.
fn login_line(login: &str) -> anyhow::Result<String> {
    if !plain_word(login) || login.contains(':') {
        bail!("the granted login {login:?} cannot be written to an ssh configuration");
    }
    Ok(format!("User {login}\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use portcullis_policy::SshMode;

    use crate::cli::connect::ssh::trust::SshTrust;

    fn trust(mode: SshMode, alias: &str) -> SshTrust {
        SshTrust {
            mode,
            alias: alias.into(),
            known_hosts: String::new(),
            certificate: (mode == SshMode::Certificate).then(|| "cert".into()),
        }
    }

    #[test]
    fn options_by_mode() {
        let cert = Path::new("/run/user/1/portcullis/ssh/web/id_ed25519-cert.pub");
        let text = super::options(
            &trust(SshMode::Certificate, "portcullis.web"),
            Some("deploy"),
            cert,
        );
        assert_eq!(
            text.unwrap(),
            "User deploy\nHostKeyAlias portcullis.web\n\
             CertificateFile \"/run/user/1/portcullis/ssh/web/id_ed25519-cert.pub\"\n"
        );
        // Gateway mode: the gateway's one name, and no certificate at all.
        let text = super::options(
            &trust(SshMode::Gateway, "portcullis-gateway"),
            Some("deploy"),
            cert,
        );
        assert_eq!(
            text.unwrap(),
            "User deploy\nHostKeyAlias portcullis-gateway\n"
        );
        assert!(super::options(&trust(SshMode::Gateway, "a b"), None, cert).is_err());
        assert!(
            super::options(&trust(SshMode::Gateway, "x\nProxyCommand evil"), None, cert).is_err()
        );
    }

    #[test]
    fn host_conf_is_the_options_under_a_match() {
        assert_eq!(
            super::host_conf("web.pc", "User deploy\nHostKeyAlias portcullis.web\n"),
            "Match originalhost web.pc\n\tUser deploy\n\tHostKeyAlias portcullis.web\n"
        );
    }

    #[test]
    fn login_lines() {
        assert_eq!(super::login_line("deploy").unwrap(), "User deploy\n");
        assert!(super::login_line("a b").is_err());
        assert!(super::login_line("x\nProxyCommand evil").is_err());
        assert!(super::login_line("").is_err());
    }
}
