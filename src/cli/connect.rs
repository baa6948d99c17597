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
//! `listen`, `stdio`, `exec`, `tunnel` and `spare` carry the connections; `pve` serves a
//! Proxmox API session (a socket by default, loopback HTTPS with a per-session secret on a
//! port, and the environment of `--exec`); `listen_addr` binds `--listen-addr` behind its
//! `--allow` list (never for a session that injects credentials); `web` is `connect http`.

mod announce;
mod args;
mod exec;
mod listen;
mod listen_addr;
mod mode;
mod postgres;
mod pve;
mod rdp;
mod run_listen;
pub(crate) mod run_session;
mod run_socket;
mod serve;
mod session;
pub(crate) mod session_file;
pub(crate) mod signals;
mod source;
mod spare;
pub(crate) mod ssh;
mod ssh_login;
mod stdio;
mod template;
pub(crate) mod tls;
mod tunnel;
mod watch;
mod web;

use std::sync::Arc;

use anyhow::Context as _;
use portcullis_proto::api::{CancelReason, SessionAuthorization};
use tracing::Instrument as _;

use super::http::ApiClient;
use listen_addr::ListenOn;
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
    let run_socket = crate::cli::run::protocol::socket_from_env();
    if run_socket.is_some() {
        run_socket::check(&args)?;
    }
    if let Some(ConnectKind::Ssh(ssh_args)) = args.kind {
        return ssh::run(ssh_args).await;
    }
    if let Some(ConnectKind::Http(http_args)) = args.kind {
        return web::run(http_args).await;
    }
    if let Some(ConnectKind::Rdp(rdp_args)) = args.kind {
        return rdp::run(rdp_args).await;
    }
    if let Some(ConnectKind::Postgres(pg_args)) = args.kind {
        return Box::pin(run(postgres::connect_args(pg_args)?)).await;
    }
    let target = args
        .target_name()
        .map(str::to_owned)
        .context("name a target: portcullis connect TARGET ... (or --target NAME)")?;
    let mut signals = Signals::install()?;
    if let Some(socket) = &run_socket {
        if args.stdio {
            return run_socket::stdio(socket, &args, &target, &mut signals).await;
        }
        return run_listen::listen(socket, &args, &target, &mut signals).await;
    }
    let listen_on = ListenOn::from_flags(args.listen_addr, &args.allow)?;
    if listen_on.is_exposed() {
        // Before any session: a target whose record shows injected credentials is refused.
        let api = ApiClient::from_args(&args.client)?;
        listen_addr::check_target(&api, &target, &listen_on).await?;
    }
    if mode::wants_proxmox_socket(&args) {
        // Before any session: only a Proxmox API target is served on a socket by default.
        let api = ApiClient::from_args(&args.client)?;
        pve::check_target(&api, &target, args.socket.is_some()).await?;
    }
    let mode = Mode::prepare(&args, &target).await?;
    if let Mode::JoinStdio(path) = &mode {
        return mode::join_stdio(&target, path, &mut signals).await;
    }

    let user_key = args.ssh_key.as_deref().map(UserKey::read).transpose()?;
    let api = ApiClient::from_args(&args.client)?;
    let identity = ClientIdentity::generate()?;
    let ssh_public_key = user_key.as_ref().map(|key| key.public.clone());
    // A TCP listener is reachable by every local user: a Proxmox API session served on one
    // requires this secret on every request (other targets ignore its hash).
    let secret = match mode.tcp_port() {
        Some(_) => Some(pve::LocalSecret::generate()?),
        None => None,
    };
    let secret_hash = secret.as_ref().map(pve::LocalSecret::sha256_hex);
    let authorization = tokio::select! {
        result = authorize(&api, &target, &identity, ssh_public_key, secret_hash) => result?,
        caught = signals.recv() => {
            eprintln!("{caught}: stopped before the session was open");
            return Ok(caught.exit_code());
        }
    };
    if listen_on.is_exposed() {
        if let Some(why) = listen_addr::session_injects(&authorization) {
            let err = anyhow::anyhow!(listen_addr::refusal(&target, &listen_on, why));
            return Err(abandon(&api, &authorization, &target, &identity, err).await);
        }
        if let Some(warning) = listen_on.warning() {
            eprintln!("{warning}");
        }
    }
    let ssh_login = match &user_key {
        Some(key) => match SshLogin::prepare(key, &authorization) {
            Ok(login) => Some(login),
            Err(err) => return Err(abandon(&api, &authorization, &target, &identity, err).await),
        },
        None => None,
    };
    let served = match serve_pve(&args, &target, &authorization, &mode, secret.as_ref()) {
        Ok(served) => served,
        Err(err) => return Err(abandon(&api, &authorization, &target, &identity, err).await),
    };
    drop(secret); // Only the child's environment (or the 0600 file) holds it now.
    let child_env = match child_env(&api, &args, &target, &authorization, &mode).await {
        Ok(env) => env,
        Err(err) => return Err(abandon(&api, &authorization, &target, &identity, err).await),
    };
    let mode = match served.as_ref().and_then(|s| s.https.as_ref()) {
        Some(https) => mode.with_tls(https.acceptor.clone())?,
        None => mode,
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
            pve: served.as_ref(),
            env: &child_env,
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
    drop(served); // Removes the CA bundle and the environment file.
    match result {
        Ok(ending) if !cancelled && ending.code == 0 && !ending.from_command => {
            Ok(i32::from(super::exit::FAILURE))
        }
        other => other.map(|ending| ending.code),
    }
}

/// Cancels a session authorised a moment ago that cannot be used after all, and returns
/// why.
async fn abandon(
    api: &ApiClient,
    authorization: &SessionAuthorization,
    target: &str,
    identity: &ClientIdentity,
    err: anyhow::Error,
) -> anyhow::Error {
    match SessionTicket::new(ticket_parts(authorization, target), identity) {
        Ok(ticket) => {
            cancel_session(
                api,
                &ticket,
                CancelReason::Canceled,
                authorization.token_expires_at,
            )
            .await;
            err
        }
        Err(ticket_err) => err.context(format!(
            "and session {} could not be cancelled: {ticket_err:#}",
            authorization.session_id
        )),
    }
}

/// How a Proxmox API session is served (None for any other target). `--socket`, or no way
/// of connecting named, asked for one: anything else is an error then.
fn serve_pve(
    args: &ConnectArgs,
    target: &str,
    authorization: &SessionAuthorization,
    mode: &Mode,
    secret: Option<&pve::LocalSecret>,
) -> anyhow::Result<Option<pve::Served>> {
    let Some(session) = &authorization.proxmox else {
        if mode::wants_proxmox_socket(args) {
            anyhow::bail!(pve::not_injecting(target, args.socket.is_some()));
        }
        return Ok(None);
    };
    let listening = pve::Listening {
        port: mode.tcp_port(),
        env_file: matches!(mode, Mode::Listen(_)),
        secret,
    };
    pve::Served::prepare(session, target, listening, authorization.expires_at).map(Some)
}

/// The `--env NAME=TEMPLATE` variables of the `--exec` command, expanded. The session's
/// leased secrets are fetched (`GET /v1/sessions/{id}/secrets`, audited) only when a
/// template names one, and held in memory only.
async fn child_env(
    api: &ApiClient,
    args: &ConnectArgs,
    target: &str,
    authorization: &SessionAuthorization,
    mode: &Mode,
) -> anyhow::Result<exec::ChildEnv> {
    let mut env = exec::ChildEnv::default();
    let Some(port) = mode.tcp_port() else {
        return Ok(env);
    };
    let secrets = match args.env.iter().find(|e| e.value.uses_secrets()) {
        None => template::SecretValues::default(),
        Some(first) if authorization.secrets.is_empty() => anyhow::bail!(
            "target {target} gave session {} no leased secrets, but --env {} needs one: the \
             target must name Vault secrets (vault_secrets, e.g. database/creds/readonly; \
             docs/secrets.md)",
            authorization.session_id,
            first.name
        ),
        Some(_) => template::SecretValues::from_wire(
            super::sessions::secrets::fetch(api, &authorization.session_id).await?,
        ),
    };
    let at = template::Context {
        host: exec::EXEC_HOST,
        port,
        secrets: &secrets,
    };
    for var in &args.env {
        let value = var
            .value
            .expand(&at)
            .with_context(|| format!("cannot set {} for the command (--env)", var.name))?;
        env.set(&var.name, value);
    }
    Ok(env)
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
