//! What ssh is told about the host it reaches and the credential it shows, by the session's
//! SSH mode. Pure: the target and the controller's authorisation in, file contents out.
//!
//! - Certificate mode: ssh logs into the target itself with the session's key and the
//!   certificate the controller issued for it, and checks the target's own host key (pinned
//!   keys, or `@cert-authority` lines for its host CAs) under [`known_hosts`]' alias.
//! - Gateway mode: the worker terminates SSH and logs into the target with a credential that
//!   never leaves it. ssh shows only the session's key (no certificate is issued) and checks
//!   the gateway's host certificate: the known_hosts file holds exactly one line,
//!   `@cert-authority portcullis-gateway CA`, and `HostKeyAlias` is that one name, so the
//!   gateway host CA is trusted for nothing else.

use anyhow::{bail, Context as _};
use portcullis_policy::SshMode;
use portcullis_proto::api::{SessionAuthorization, Target};
use portcullis_proto::gateway::HOST_ALIAS;

/// The host check and credential for one session's ssh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshTrust {
    pub mode: SshMode,
    /// `HostKeyAlias`: the name ssh checks the host key under.
    pub alias: String,
    /// The whole known_hosts file ssh is pointed at.
    pub known_hosts: String,
    /// The certificate for the session's key: certificate mode only.
    pub certificate: Option<String>,
}

/// The trust for a session the controller authorised: by its `ssh_mode`.
pub(crate) fn for_session(
    target: &Target,
    auth: &SessionAuthorization,
) -> anyhow::Result<SshTrust> {
    match auth.ssh_mode {
        SshMode::Certificate => {
            let certificate = auth
                .ssh_certificate
                .clone()
                .context("the controller returned no SSH certificate")?;
            let Some((alias, known_hosts)) = known_hosts(target) else {
                bail!(
                    "target {} has no pinned SSH host key or host CA; an admin adds one with \
                     `portcullis targets update {} --ssh-host-key 'ssh-ed25519 AAAA...'`",
                    target.name,
                    target.name
                );
            };
            Ok(SshTrust {
                mode: SshMode::Certificate,
                alias,
                known_hosts,
                certificate: Some(certificate),
            })
        }
        SshMode::Gateway => {
            let ca = auth.gateway_host_ca.as_deref().context(
                "the controller put the session in SSH gateway mode but sent no gateway host CA; \
                 are the CLI and the controller the same version?",
            )?;
            Ok(SshTrust {
                mode: SshMode::Gateway,
                alias: HOST_ALIAS.to_owned(),
                known_hosts: gateway_known_hosts(ca)?,
                certificate: None,
            })
        }
    }
}

/// The one known_hosts line that trusts the gateway host CA, for [`HOST_ALIAS`] only. The
/// CA is parsed and written back, so nothing but one public key (no comment, no second line)
/// reaches the file.
pub(crate) fn gateway_known_hosts(ca: &str) -> anyhow::Result<String> {
    let mut key = ssh_key::PublicKey::from_openssh(ca.trim())
        .context("the controller's gateway host CA is not an OpenSSH public key")?;
    key.set_comment("");
    let line = key
        .to_openssh()
        .context("cannot encode the gateway host CA")?;
    Ok(format!("@cert-authority {HOST_ALIAS} {}\n", line.trim()))
}

/// The `HostKeyAlias` and the known_hosts file for a target in certificate mode, or None when
/// it has neither a pinned host key nor a host CA. Pinned keys are listed under the alias;
/// host CAs as `@cert-authority` lines. With a host CA the alias is the host of the target's
/// address, because ssh checks a host certificate's principals against it.
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
