//! Whether the target's host key is the one the controller vouches for: a pinned key, or a
//! host certificate of a pinned host CA, valid now, for the target. Pure: the clock is
//! passed in. Anything else fails closed, with a message that names the target and the
//! offered key's fingerprint.

use portcullis_proto::gateway::Credential;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::Fingerprint;
use russh::keys::{Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};

/// What the target's host key is checked against.
#[derive(Debug, Clone)]
pub(super) struct Pins {
    keys: Vec<KeyData>,
    cas: Vec<Fingerprint>,
    /// The names a host certificate may be issued for: the target's name and the address the
    /// worker dials.
    names: Vec<String>,
    target: String,
}

/// The target's host key is not vouched for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostKeyMismatch {
    #[error("host key mismatch for {target}: the target offered {fingerprint} which is not pinned; fix the target's ssh_host_keys")]
    NotPinned { target: String, fingerprint: String },
    #[error("host key mismatch for {target}: the target offered a host certificate of {fingerprint} that no pinned host CA signed for it now ({why}); fix the target's ssh_host_keys or host CA")]
    BadCertificate {
        target: String,
        fingerprint: String,
        why: &'static str,
    },
    #[error("no host key or host CA is pinned for {target}: the gateway does not log into an unknown host; set the target's ssh_host_keys")]
    NothingPinned { target: String },
}

/// A pinned key or CA that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("a pinned host key or host CA of {target} does not parse ({line}): {error}")]
pub(crate) struct BadPin {
    target: String,
    line: String,
    error: String,
}

impl Pins {
    /// The pins of a credential; `address` is the IP the worker dials the target at.
    pub(super) fn from_credential(credential: &Credential, address: &str) -> Result<Pins, BadPin> {
        let parse = |line: &String| {
            PublicKey::from_openssh(line.trim()).map_err(|e| BadPin {
                target: credential.target_name.clone(),
                line: short(line),
                error: e.to_string(),
            })
        };
        let keys = credential
            .host_keys
            .iter()
            .map(|l| parse(l).map(|k| k.key_data().clone()))
            .collect::<Result<_, _>>()?;
        let cas = credential
            .host_cas
            .iter()
            .map(|l| parse(l).map(|k| k.fingerprint(HashAlg::Sha256)))
            .collect::<Result<_, _>>()?;
        Ok(Pins {
            keys,
            cas,
            names: vec![credential.target_name.clone(), address.to_owned()],
            target: credential.target_name.clone(),
        })
    }

    /// Whether host certificates are worth asking the target for.
    pub(super) fn has_cas(&self) -> bool {
        !self.cas.is_empty()
    }

    /// Checks what the target offered, at `now` (unix seconds).
    pub(super) fn check(
        &self,
        offered: &PublicKeyOrCertificate,
        now: u64,
    ) -> Result<(), HostKeyMismatch> {
        if self.keys.is_empty() && self.cas.is_empty() {
            return Err(HostKeyMismatch::NothingPinned {
                target: self.target.clone(),
            });
        }
        match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                if self.keys.contains(key.key_data()) {
                    Ok(())
                } else {
                    Err(HostKeyMismatch::NotPinned {
                        target: self.target.clone(),
                        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                    })
                }
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                // A pinned key is trusted whatever certificate it comes in.
                if self.keys.contains(cert.public_key()) {
                    return Ok(());
                }
                self.check_certificate(cert, now)
            }
        }
    }

    fn check_certificate(&self, cert: &Certificate, now: u64) -> Result<(), HostKeyMismatch> {
        let refuse = |why| HostKeyMismatch::BadCertificate {
            target: self.target.clone(),
            fingerprint: cert.public_key().fingerprint(HashAlg::Sha256).to_string(),
            why,
        };
        if self.cas.is_empty() {
            return Err(HostKeyMismatch::NotPinned {
                target: self.target.clone(),
                fingerprint: cert.public_key().fingerprint(HashAlg::Sha256).to_string(),
            });
        }
        if cert.cert_type() != CertType::Host {
            return Err(refuse("not a host certificate"));
        }
        if cert.validate_at(now, &self.cas).is_err() {
            return Err(refuse("unknown CA, bad signature or not valid now"));
        }
        // As OpenSSH: an empty principal list is valid for any host.
        let principals = cert.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| self.names.contains(p)) {
            return Err(refuse("issued for other names"));
        }
        if !cert.critical_options().is_empty() {
            return Err(refuse("it carries critical options"));
        }
        Ok(())
    }
}

fn short(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests;
