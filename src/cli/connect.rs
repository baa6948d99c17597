//! `portcullis connect TARGET`: authorise a session and carry connections through its worker.
//!
//! Per session the CLI makes an ephemeral Ed25519 key and self-signed certificate, sends the
//! public key with authorize-session, and receives the worker's address, the worker key to
//! pin, and a grant bound to our key. Each connection is then TLS 1.3 to the worker with
//! that key as client certificate, one handshake frame with the grant, and raw bytes.
//!
//! Sessions this process authorised are cancelled when it ends (Ctrl-C, SIGTERM, the
//! `--exec` command exiting, the `--stdio` connection closing); a session joined through
//! `--session-file` belongs to the process that wrote the file and is left alone.
//!
//! `args` holds the flags, `session` authorises and cancels the session at the controller,
//! `mode` drives what this invocation does with it and `announce` prints where to connect
//! (with `--ssh-key`, `ssh_login` binds the user's own SSH key and says how to log in);
//! `listen`, `stdio`, `exec`, `tunnel` and `spare` carry the connections.

mod announce;
mod args;
mod exec;
mod listen;
mod mode;
mod session;
pub(crate) mod session_file;
mod signals;
mod spare;
pub(crate) mod ssh;
mod ssh_login;
mod stdio;
pub(crate) mod tls;
mod tunnel;
mod watch;

use std::sync::Arc;

use anyhow::Context as _;
use portcullis_proto::api::{CancelReason, SessionAuthorization};
use tracing::Instrument as _;

use super::http::ApiClient;
use mode::Mode;
use session::{authorize, cancel_session};
use session_file::{HandoffFile, SessionFile};
use signals::Signals;
use ssh_login::{SshLogin, UserKey};
use tls::ClientIdentity;
use tunnel::{SessionTicket, TicketParts};

pub(crate) use args::{ConnectArgs, ConnectKind};
pub(crate) use session::authorize_for_ssh;
pub(crate) use tunnel::Refused;

/// Runs `portcullis connect`: authorises a session (unless one is joined), drives the mode,
/// ends the session it opened (as `closed` when the program it served finished, `canceled`
/// otherwise); a clean end whose cancel failed exits with a failure, except that a command
/// `--exec` ran keeps its own status.
pub(crate) async fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    if let Some(ConnectKind::Ssh(ssh_args)) = args.kind {
        return ssh::run(ssh_args).await;
    }
    let target = args
        .target
        .clone()
        .context("name a target: portcullis connect TARGET ...")?;
    let mut signals = Signals::install()?;
    let mode = Mode::prepare(&args).await?;
    if let Mode::JoinStdio(path) = &mode {
        return mode::join_stdio(&target, path, &mut signals).await;
    }

    let user_key = args.ssh_key.as_deref().map(UserKey::read).transpose()?;
    let api = ApiClient::from_args(&args.client)?;
    let identity = ClientIdentity::generate()?;
    let ssh_public_key = user_key.as_ref().map(|key| key.public.clone());
    let authorization = tokio::select! {
        result = authorize(&api, &target, &identity, ssh_public_key) => result?,
        caught = signals.recv() => {
            eprintln!("{caught}: stopped before the session was open");
            return Ok(caught.exit_code());
        }
    };
    let ssh_login = match &user_key {
        Some(key) => match SshLogin::prepare(key, &authorization) {
            Ok(login) => Some(login),
            Err(err) => {
                let ticket = SessionTicket::new(ticket_parts(&authorization, &target), &identity)?;
                cancel_session(
                    &api,
                    &ticket,
                    CancelReason::Canceled,
                    authorization.token_expires_at,
                )
                .await;
                return Err(err);
            }
        },
        None => None,
    };
    let handoff = match &args.write_session_file {
        Some(path) => Some(HandoffFile::write(
            path,
            &SessionFile {
                session_id: authorization.session_id.clone(),
                target: Some(target.clone()),
                worker_addr: authorization.worker_addr.clone(),
                worker_key_fingerprint: authorization.worker_key_fingerprint.clone(),
                grant: authorization.grant.clone(),
                expires_at: authorization.expires_at,
                client_cert_pem: identity.cert_pem(),
                client_key_pem: identity.key_pem(),
            },
        )?),
        None => None,
    };
    let ticket = Arc::new(SessionTicket::new(
        ticket_parts(&authorization, &target),
        &identity,
    )?);

    let span = tracing::info_span!("session", session.id = %ticket.session_id);
    let watched = mode::Watched {
        api: &api,
        token_expires_at: authorization.token_expires_at,
    };
    let result = mode::drive(
        mode,
        ticket.clone(),
        mode::Shown {
            handoff: handoff.as_ref(),
            ssh: ssh_login.as_ref(),
            json: args.json,
        },
        &mut signals,
        watched,
    )
    .instrument(span)
    .await;
    let cancel = match &result {
        Ok(ending) => ending.cancel,
        Err(_) => Some(CancelReason::Canceled),
    };
    let cancelled = match cancel {
        Some(reason) => cancel_session(&api, &ticket, reason, authorization.token_expires_at).await,
        None => true,
    };
    drop(handoff);
    drop(ssh_login);
    match result {
        Ok(ending) if !cancelled && ending.code == 0 && !ending.from_command => {
            Ok(i32::from(super::exit::FAILURE))
        }
        other => other.map(|ending| ending.code),
    }
}

/// The parts of a session ticket from the controller's authorisation.
fn ticket_parts(authorization: &SessionAuthorization, target: &str) -> TicketParts {
    TicketParts {
        session_id: authorization.session_id.clone(),
        target: target.to_owned(),
        worker_addr: authorization.worker_addr.clone(),
        worker_key_fingerprint: authorization.worker_key_fingerprint.clone(),
        grant: authorization.grant.clone(),
        expires_at: authorization.expires_at,
    }
}
