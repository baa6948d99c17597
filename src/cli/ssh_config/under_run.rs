//! `ssh-prepare` inside a `portcullis run` (`PORTCULLIS_RUN_SOCKET` set): the run opens the
//! session (its TLS key stays in the run process) and certifies a fresh SSH key made here;
//! the target's directory gets ssh's files as usual (the SSH key, 0600, which ssh must read;
//! the certificate; known_hosts; the options) and a session file that only names the run's
//! session, for the ProxyCommand to join through the socket. A run's session is never
//! reused by a later ssh-prepare (each asks the run afresh), and one outside the run never
//! joins it.

use std::path::Path;

use anyhow::{bail, Context as _};
use portcullis_files::write_private_atomic;

use super::prepare::{options, CERT, KEY, KNOWN_HOSTS, OPTIONS, SESSION};
use crate::cli::connect::session_file::{write_run_session_file, RunSessionRef};
use crate::cli::connect::ssh::trust::SshTrust;
use crate::cli::run::protocol::{self, Answer, Ask};

/// Asks the run at `socket` for a session to `target` and writes its files into `dir` (the
/// session file last).
pub(super) async fn prepare(socket: &Path, target: &str, dir: &Path) -> anyhow::Result<()> {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)?;
    let ask = Ask::PrepareSsh {
        target: target.to_owned(),
        ssh_public_key: key.public_key().to_openssh()?,
    };
    let (answer, _) = protocol::ask(socket, &ask)
        .await
        .with_context(|| format!("cannot open a session to {target} through the run"))?;
    let Answer::Prepared(prepared) = answer else {
        bail!("the `portcullis run` process answered ssh-prepare with something else");
    };
    let trust = SshTrust {
        mode: prepared.ssh_mode,
        alias: prepared.alias,
        known_hosts: prepared.known_hosts,
        certificate: prepared.certificate,
    };
    write_private_atomic(&dir.join(KNOWN_HOSTS), trust.known_hosts.as_bytes())?;
    write_private_atomic(
        &dir.join(KEY),
        key.to_openssh(ssh_key::LineEnding::LF)?.as_bytes(),
    )?;
    if let Some(cert) = &trust.certificate {
        write_private_atomic(&dir.join(CERT), format!("{cert}\n").as_bytes())?;
    }
    write_private_atomic(
        &dir.join(OPTIONS),
        options(&trust, prepared.login.as_deref(), &dir.join(CERT))?.as_bytes(),
    )?;
    write_run_session_file(
        &dir.join(SESSION),
        &RunSessionRef {
            session_id: prepared.session_id,
            request_id: prepared.request_id,
            target: prepared.target,
            expires_at: prepared.expires_at,
        },
    )
}
