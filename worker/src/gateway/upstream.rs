//! The target-facing leg: the login the gateway makes for a session (a key pair made in the
//! worker's memory, one per session, reused by its connections, dropped when the session
//! ends; never written anywhere) with the certificate the controller mints for it, and the
//! SSH client that logs into the target over the connection the proxy dialled, checking
//! the target's host key against the pins of the same answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_proto::gateway::{Credential, CredentialRequest};
use portcullis_proto::link::{Request, Response};
use russh::keys::{Certificate, PrivateKey, PublicKeyOrCertificate};
use tokio::net::TcpStream;

use russh::{client, Channel};

use super::config;
use super::host_key::generate;
use super::reverse::{self, Kind};
use super::verify::{HostKeyMismatch, Pins};
use super::Context;
use crate::Shared;

/// How long the controller may take to mint a session's certificate (Vault signs it).
const MINT_TIMEOUT: Duration = Duration::from_secs(10);
/// A certificate this close to its end is replaced before a new connection uses it.
const RENEW_MARGIN_SECS: u64 = 30;
/// How long the target may take to greet, exchange keys and answer the login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the gateway logs into a session's target with.
pub(crate) struct Login {
    pub(super) key: Arc<PrivateKey>,
    pub(super) certificate: Certificate,
    pub(super) valid_before: u64,
    pub(super) pins: Pins,
    pub(super) target: String,
}

/// Why the gateway cannot log into the target; each message is for the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("the controller gave the gateway no credential for this target: {0}")]
    NoCredential(String),
    #[error("the credential for this target is unusable: {0}")]
    BadCredential(String),
    #[error("{0}")]
    HostKey(#[from] HostKeyMismatch),
    #[error("the target {target} did not speak SSH to the gateway: {error}")]
    Ssh { target: String, error: String },
    #[error("the target {target} refused the gateway's login as {login}: check that it trusts the SSH user CA and allows the principal")]
    LoginRefused { target: String, login: String },
    #[error("the target {target} did not answer in time")]
    TimedOut { target: String },
}

/// A session's login, once made; locked while it is made or renewed.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Login>>>>;

/// The logins of live sessions: one per session, made on its first connection.
#[derive(Default)]
pub(crate) struct Logins {
    sessions: Mutex<HashMap<String, Slot>>,
}

impl Logins {
    fn slot(&self, session_id: &str) -> (Slot, bool) {
        let mut sessions = match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match sessions.get(session_id) {
            Some(slot) => (slot.clone(), false),
            None => {
                let slot = Arc::new(tokio::sync::Mutex::new(None));
                sessions.insert(session_id.to_owned(), slot.clone());
                (slot, true)
            }
        }
    }

    fn forget(&self, session_id: &str) {
        let mut sessions = match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        sessions.remove(session_id);
    }

    /// How many sessions hold a login now.
    pub(crate) fn len(&self) -> usize {
        match self.sessions.lock() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }
}

/// The session's login, made (key pair and certificate) on its first use and renewed when
/// its certificate nears its end. A session's login is forgotten when the session ends.
pub(super) async fn login(
    shared: &Arc<Shared>,
    session_id: &str,
    grant: &str,
    address: &str,
) -> Result<Arc<Login>, UpstreamError> {
    let logins = &shared.gateway.logins;
    let (slot, new) = logins.slot(session_id);
    if new {
        let (shared, session_id) = (shared.clone(), session_id.to_owned());
        let ending = shared.table.ending(&session_id);
        tokio::spawn(async move {
            ending.ended().await;
            shared.gateway.logins.forget(&session_id);
        });
    }
    let mut slot = slot.lock().await;
    let now = shared.clock.unix_secs();
    if let Some(login) = slot.as_ref() {
        if now + RENEW_MARGIN_SECS < login.valid_before {
            return Ok(login.clone());
        }
    }
    let key = match slot.as_ref() {
        Some(login) => login.key.clone(),
        None => Arc::new(generate().map_err(|e| UpstreamError::BadCredential(e.to_string()))?),
    };
    let credential = mint(shared, grant, &key).await?;
    let certificate = Certificate::from_openssh(credential.certificate.trim())
        .map_err(|e| UpstreamError::BadCredential(format!("its certificate: {e}")))?;
    if certificate.public_key() != key.public_key().key_data() {
        return Err(UpstreamError::BadCredential(
            "its certificate is for another key".into(),
        ));
    }
    let pins = Pins::from_credential(&credential, address)
        .map_err(|e| UpstreamError::BadCredential(e.to_string()))?;
    let login = Arc::new(Login {
        key,
        certificate,
        valid_before: credential.valid_before,
        pins,
        target: credential.target_name,
    });
    *slot = Some(login.clone());
    Ok(login)
}

async fn mint(shared: &Shared, grant: &str, key: &PrivateKey) -> Result<Credential, UpstreamError> {
    let public_key = key
        .public_key()
        .to_openssh()
        .map_err(|e| UpstreamError::BadCredential(e.to_string()))?;
    let request = Request::GatewayCredential(CredentialRequest {
        grant: grant.to_owned(),
        public_key,
    });
    match shared.link.request(request, MINT_TIMEOUT).await {
        Ok(Response::GatewayCredential(credential)) => Ok(credential),
        Ok(Response::Error { message, .. }) | Ok(Response::Refused { reason: message }) => {
            Err(UpstreamError::NoCredential(message))
        }
        Ok(other) => Err(UpstreamError::NoCredential(format!(
            "unexpected answer {other:?}"
        ))),
        Err(e) => Err(UpstreamError::NoCredential(e.to_string())),
    }
}

/// The target's SSH connection, logged in.
pub(crate) type Upstream = russh::client::Handle<Target>;

/// The client side's handler: checks the target's host key, and passes the channels the
/// target opens towards the user to [`reverse`] (which refuses all but those asked for and
/// granted).
pub(crate) struct Target {
    pins: Pins,
    now: u64,
    mismatch: Arc<Mutex<Option<HostKeyMismatch>>>,
    ctx: Arc<Context>,
}

impl russh::client::Handler for Target {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.pins.check(offered, self.now) {
            Ok(()) => Ok(true),
            Err(mismatch) => {
                tracing::warn!(%mismatch, "the target's host key is refused");
                if let Ok(mut slot) = self.mismatch.lock() {
                    *slot = Some(mismatch);
                }
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let forwarded = reverse::Forwarded {
            connected_address: connected_address.to_owned(),
            connected_port,
            originator_address: originator_address.to_owned(),
            originator_port,
        };
        reverse::open(
            &self.ctx,
            Kind::ForwardedTcpip,
            channel,
            reply,
            Some(forwarded),
        )
        .await;
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reverse::open(&self.ctx, Kind::Agent, channel, reply, None).await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<client::Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reverse::open(&self.ctx, Kind::X11, channel, reply, None).await;
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reverse::refuse(&self.ctx, "session", None, reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<client::Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let destination = Some(format!("{host_to_connect}:{port_to_connect}"));
        reverse::refuse(&self.ctx, "direct-tcpip", destination, reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let destination = Some(socket_path.to_owned());
        reverse::refuse(
            &self.ctx,
            "direct-streamlocal@openssh.com",
            destination,
            reply,
        )
        .await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let destination = Some(socket_path.to_owned());
        reverse::refuse(
            &self.ctx,
            "forwarded-streamlocal@openssh.com",
            destination,
            reply,
        )
        .await;
        Ok(())
    }
}

/// Speaks SSH to the target over `tcp`: key exchange and the host key check, done while the
/// user's client is still logging into the gateway.
pub(super) async fn greet(
    tcp: TcpStream,
    login: &Login,
    now: u64,
    ctx: Arc<Context>,
) -> Result<Upstream, UpstreamError> {
    let mismatch = Arc::new(Mutex::new(None));
    let handler = Target {
        pins: login.pins.clone(),
        now,
        mismatch: mismatch.clone(),
        ctx,
    };
    let config = config::client(login.pins.has_cas());
    let greeting = russh::client::connect_stream(config, tcp, handler);
    match tokio::time::timeout(LOGIN_TIMEOUT, greeting).await {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(error)) => {
            let mismatch = mismatch.lock().ok().and_then(|mut m| m.take());
            Err(match mismatch {
                Some(m) => UpstreamError::HostKey(m),
                None => UpstreamError::Ssh {
                    target: login.target.clone(),
                    error: error.to_string(),
                },
            })
        }
        Err(_) => Err(UpstreamError::TimedOut {
            target: login.target.clone(),
        }),
    }
}

/// Logs into the target as `user`, the login the user chose, with the session's certificate.
pub(super) async fn authenticate(
    handle: &mut Upstream,
    login: &Login,
    user: &str,
) -> Result<(), UpstreamError> {
    let auth = handle.authenticate_openssh_cert(user, login.key.clone(), login.certificate.clone());
    let auth = tokio::time::timeout(LOGIN_TIMEOUT, auth)
        .await
        .map_err(|_| UpstreamError::TimedOut {
            target: login.target.clone(),
        })?
        .map_err(|e| UpstreamError::Ssh {
            target: login.target.clone(),
            error: e.to_string(),
        })?;
    if auth.success() {
        Ok(())
    } else {
        Err(UpstreamError::LoginRefused {
            target: login.target.clone(),
            login: user.to_owned(),
        })
    }
}
