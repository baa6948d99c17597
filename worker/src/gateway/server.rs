//! The user-facing SSH server's handler: who may log in ([`super::auth`]), and every channel
//! and request decided by the session's rights ([`portcullis_policy::ssh::decide_channel`])
//! before anything reaches the target. Allowed ones are passed to the target's connection;
//! refused ones are refused to the user and recorded as `channel_refused` events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use portcullis_policy::ssh::{decide_channel, ChannelRequest, ChannelVerdict};
use portcullis_policy::SshRights;
use portcullis_proto::gateway::rule_for_right;
use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, Pty, Sig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::auth::Allowed;
use super::channel::{relay_to_target, UpChannel};
use super::config::MAX_CHANNELS;
use super::upstream::{self, Login, Upstream, UpstreamError};
use super::{forward, Context};

/// The target's connection, from the greeting started when the user's connection came in
/// to the login the user chose.
enum UpstreamState {
    Greeting(JoinHandle<Result<(Upstream, Arc<Login>), UpstreamError>>),
    Ready(Arc<Upstream>),
    Failed(String),
}

/// One user connection's handler.
pub(super) struct UserSide {
    ctx: Arc<Context>,
    allowed: Allowed,
    rights: SshRights,
    upstream: UpstreamState,
    /// The SSH user name the user logged in as.
    login: String,
    /// The target's end of each session channel, for the requests passed on.
    channels: HashMap<ChannelId, Arc<UpChannel>>,
    authenticated: Option<oneshot::Sender<()>>,
}

impl Drop for UserSide {
    fn drop(&mut self) {
        if let UpstreamState::Greeting(task) = &self.upstream {
            task.abort();
        }
    }
}

/// A channel's place among the connection's [`MAX_CHANNELS`]; given back on drop.
pub(super) struct ChannelSlot(Arc<AtomicUsize>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UserSide {
    pub(super) fn new(
        ctx: Arc<Context>,
        allowed: Allowed,
        rights: SshRights,
        greeting: JoinHandle<Result<(Upstream, Arc<Login>), UpstreamError>>,
        authenticated: oneshot::Sender<()>,
    ) -> UserSide {
        UserSide {
            ctx,
            allowed,
            rights,
            upstream: UpstreamState::Greeting(greeting),
            login: String::new(),
            channels: HashMap::new(),
            authenticated: Some(authenticated),
        }
    }

    /// Logs into the target as `user` once the greeting is done.
    async fn log_in_upstream(&mut self, user: &str) {
        let state = std::mem::replace(&mut self.upstream, UpstreamState::Failed(String::new()));
        self.upstream = match state {
            UpstreamState::Greeting(task) => match task.await {
                Ok(Ok((mut handle, login))) => {
                    match upstream::authenticate(&mut handle, &login, user).await {
                        Ok(()) => {
                            let handle = Arc::new(handle);
                            let _ = self.ctx.upstream.set(handle.clone());
                            tracing::info!(login = user, target = %login.target, "logged into the target");
                            UpstreamState::Ready(handle)
                        }
                        Err(e) => UpstreamState::Failed(e.to_string()),
                    }
                }
                Ok(Err(e)) => UpstreamState::Failed(e.to_string()),
                Err(e) => UpstreamState::Failed(format!("the target's login failed: {e}")),
            },
            other => other,
        };
        if let UpstreamState::Failed(why) = &self.upstream {
            tracing::warn!(reason = %why, "cannot log into the target");
        }
    }

    fn upstream(&self) -> Option<Arc<Upstream>> {
        match &self.upstream {
            UpstreamState::Ready(handle) => Some(handle.clone()),
            _ => None,
        }
    }

    /// A place for a new channel, or `None` when the connection has [`MAX_CHANNELS`] open.
    fn slot(&self) -> Option<ChannelSlot> {
        let open = self.ctx.open_channels.fetch_add(1, Ordering::Relaxed);
        let slot = ChannelSlot(self.ctx.open_channels.clone());
        (open < MAX_CHANNELS).then_some(slot)
    }

    /// Refuses a request on a channel (the user sees a failure) and records why.
    async fn refuse_request(
        &self,
        channel: ChannelId,
        kind: &str,
        destination: Option<String>,
        rule: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        self.ctx.refused(kind, destination, &self.login, rule).await;
        session.channel_failure(channel)
    }

    /// Decides a request on a session channel: the target's end of the channel when it is
    /// allowed (the caller passes it on), `None` when it was refused (answered here).
    async fn allow(
        &self,
        channel: ChannelId,
        request: &ChannelRequest<'_>,
        session: &mut Session,
    ) -> Result<Option<Arc<UpChannel>>, russh::Error> {
        let destination = match request {
            ChannelRequest::Subsystem(name) => Some((*name).to_owned()),
            _ => None,
        };
        match decide_channel(&self.rights, request) {
            ChannelVerdict::Allow => match self.channels.get(&channel) {
                Some(up) => Ok(Some(up.clone())),
                None => {
                    // A session request on a forward's channel: nothing to pass it to.
                    session.channel_failure(channel)?;
                    Ok(None)
                }
            },
            ChannelVerdict::Deny { right } => {
                self.refuse_request(
                    channel,
                    request.kind(),
                    destination,
                    rule_for_right(right),
                    session,
                )
                .await?;
                Ok(None)
            }
            ChannelVerdict::AllowOnTargetLoopback | ChannelVerdict::Vet => {
                session.channel_failure(channel)?;
                Ok(None)
            }
        }
    }

    /// Answers a request passed on to the target: the user learns a refusal by the target
    /// from its stderr ([`super::channel`]); a request that could not be sent fails here.
    fn answer(
        &self,
        channel: ChannelId,
        sent: Result<(), russh::Error>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        match sent {
            Ok(()) => session.channel_success(channel),
            Err(_) => session.channel_failure(channel),
        }
    }

    /// Refuses a channel the rights allow but the gateway does not carry yet.
    fn not_carried(what: &str) -> String {
        format!(
            "{what} is not carried by the SSH gateway yet (refused even where the role allows it)"
        )
    }

    /// The rule for a refused channel or request.
    fn rule(&self, request: &ChannelRequest<'_>, carried_if_allowed: bool) -> Option<String> {
        match decide_channel(&self.rights, request) {
            ChannelVerdict::Deny { right } => Some(rule_for_right(right)),
            _ if carried_if_allowed => None,
            _ => Some(Self::not_carried(request.kind())),
        }
    }

    async fn refuse_open(
        &self,
        reply: ChannelOpenHandle,
        kind: &str,
        destination: Option<String>,
        rule: String,
    ) {
        self.ctx.refused(kind, destination, &self.login, rule).await;
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }
}

impl russh::server::Handler for UserSide {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // A probe: refusing a key here spares the client a signature.
        Ok(match self.allowed.check(user, offer.public_key) {
            Ok(()) => Auth::Accept,
            Err(refusal) => {
                tracing::info!(login = user, %refusal, "gateway login refused");
                Auth::reject()
            }
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if let Err(refusal) = self.allowed.check(user, key.public_key) {
            tracing::info!(login = user, %refusal, "gateway login refused");
            return Ok(Auth::reject());
        }
        tracing::info!(
            login = user,
            key = %key.public_key.fingerprint(HashAlg::Sha256),
            "gateway login accepted"
        );
        self.login = user.to_owned();
        self.log_in_upstream(user).await;
        Ok(Auth::Accept)
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        tracing::info!(
            login = user,
            key = %certificate.public_key().fingerprint(HashAlg::Sha256),
            "gateway login with a certificate refused (the session's key is expected)"
        );
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        tracing::info!(login = user, "gateway login with a password refused");
        Ok(Auth::reject())
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(tx) = self.authenticated.take() {
            let _ = tx.send(());
        }
        if let UpstreamState::Failed(why) = &self.upstream {
            let message = format!("portcullis gateway: {why}");
            session.disconnect(Disconnect::ByApplication, &message, "en")?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(slot) = self.slot() else {
            let rule = format!("at most {MAX_CHANNELS} channels per connection");
            self.ctx.refused("session", None, &self.login, rule).await;
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let Some(upstream) = self.upstream() else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        let up = match upstream.channel_open_session().await {
            Ok(up) => up,
            Err(e) => {
                tracing::info!(error = %e, "the target refused a session channel");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            }
        };
        let (up_read, up_write) = up.split();
        let up = UpChannel::new(up_write);
        self.channels.insert(channel.id(), up.clone());
        reply.accept().await;
        let (handle, stop) = (session.handle(), self.ctx.stop.child_token());
        tokio::spawn(
            async move {
                let _slot = slot;
                relay_to_target(channel, handle, up_read, up, stop).await;
            }
            .in_current_span(),
        );
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(up) = self.allow(channel, &ChannelRequest::Pty, session).await? else {
            return Ok(());
        };
        up.expect_answer("pty-req");
        let sent = up
            .write
            .request_pty(
                true, term, col_width, row_height, pix_width, pix_height, modes,
            )
            .await;
        self.answer(channel, sent, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(up) = self.allow(channel, &ChannelRequest::Env, session).await? else {
            return Ok(());
        };
        // The target's AcceptEnv decides; OpenSSH asks no answer for it either.
        let sent = up.write.set_env(false, variable_name, variable_value).await;
        self.answer(channel, sent, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(up) = self.allow(channel, &ChannelRequest::Shell, session).await? else {
            return Ok(());
        };
        up.expect_answer("shell");
        let sent = up.write.request_shell(true).await;
        self.answer(channel, sent, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(up) = self.allow(channel, &ChannelRequest::Exec, session).await? else {
            return Ok(());
        };
        up.expect_answer("exec");
        let sent = up.write.exec(true, data).await;
        self.answer(channel, sent, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Subsystem(name);
        let Some(up) = self.allow(channel, &request, session).await? else {
            return Ok(());
        };
        up.expect_answer("subsystem");
        let sent = up.write.request_subsystem(true, name).await;
        self.answer(channel, sent, session)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(up) = self.channels.get(&channel) {
            let _ = up
                .write
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(up) = self.channels.get(&channel) {
            let _ = up.write.signal(signal).await;
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let rule = self
            .rule(&ChannelRequest::X11, false)
            .unwrap_or_else(|| Self::not_carried("x11-req"));
        self.refuse_request(channel, "x11-req", None, rule, session)
            .await
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let rule = self
            .rule(&ChannelRequest::Agent, false)
            .unwrap_or_else(|| Self::not_carried("agent forwarding"));
        let kind = ChannelRequest::Agent.kind().to_owned();
        self.ctx.refused(&kind, None, &self.login, rule).await;
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let rule = self
            .rule(&ChannelRequest::TcpipForward, false)
            .unwrap_or_else(|| Self::not_carried("tcpip-forward"));
        let destination = Some(format!("{address}:{port}"));
        self.ctx
            .refused("tcpip-forward", destination, &self.login, rule)
            .await;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let rule = self
            .rule(&ChannelRequest::StreamLocal, false)
            .unwrap_or_else(|| Self::not_carried("streamlocal"));
        let destination = Some(socket_path.to_owned());
        self.ctx
            .refused(
                "streamlocal-forward@openssh.com",
                destination,
                &self.login,
                rule,
            )
            .await;
        Ok(false)
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let rule = self
            .rule(&ChannelRequest::StreamLocal, false)
            .unwrap_or_else(|| Self::not_carried("streamlocal"));
        let destination = Some(socket_path.to_owned());
        self.refuse_open(reply, "direct-streamlocal@openssh.com", destination, rule)
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let rule = self
            .rule(&ChannelRequest::X11, false)
            .unwrap_or_else(|| Self::not_carried("x11"));
        self.refuse_open(reply, "x11", None, rule).await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only a server opens these; a client that does is refused.
        let destination = Some(format!("{host_to_connect}:{port_to_connect}"));
        let rule = "forwarded-tcpip is opened by servers, never by a client".to_owned();
        self.refuse_open(reply, "forwarded-tcpip", destination, rule)
            .await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::DirectTcpip {
            host: host_to_connect,
            port: port_to_connect,
        };
        let destination = format!("{host_to_connect}:{port_to_connect}");
        let verdict = decide_channel(&self.rights, &request);
        let slot = match verdict {
            ChannelVerdict::Deny { right } => {
                self.refuse_open(
                    reply,
                    "direct-tcpip",
                    Some(destination),
                    rule_for_right(right),
                )
                .await;
                return Ok(());
            }
            _ => match self.slot() {
                Some(slot) => slot,
                None => {
                    let rule = format!("at most {MAX_CHANNELS} channels per connection");
                    self.refuse_open(reply, "direct-tcpip", Some(destination), rule)
                        .await;
                    return Ok(());
                }
            },
        };
        match verdict {
            ChannelVerdict::AllowOnTargetLoopback => {
                let Some(upstream) = self.upstream() else {
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return Ok(());
                };
                let opened = upstream
                    .channel_open_direct_tcpip(
                        host_to_connect,
                        port_to_connect,
                        originator_address,
                        originator_port,
                    )
                    .await;
                let up = match opened {
                    Ok(up) => up,
                    Err(e) => {
                        tracing::info!(error = %e, %destination, "the target refused a forward to its loopback");
                        reply.reject(ChannelOpenFailure::ConnectFailed).await;
                        return Ok(());
                    }
                };
                tracing::info!(%destination, "forward to the target's loopback opened");
                let (up_read, up_write) = up.split();
                reply.accept().await;
                let (handle, stop) = (session.handle(), self.ctx.stop.child_token());
                tokio::spawn(
                    async move {
                        let _slot = slot;
                        relay_to_target(channel, handle, up_read, UpChannel::new(up_write), stop)
                            .await;
                    }
                    .in_current_span(),
                );
            }
            ChannelVerdict::Vet => {
                let forward = forward::Forward {
                    ctx: self.ctx.clone(),
                    login: self.login.clone(),
                    host: host_to_connect.to_owned(),
                    port: port_to_connect,
                };
                tokio::spawn(
                    async move {
                        let _slot = slot;
                        forward.run(channel, reply).await;
                    }
                    .in_current_span(),
                );
            }
            ChannelVerdict::Allow | ChannelVerdict::Deny { .. } => {
                // decide_channel never allows a direct-tcpip plainly: refused, fail closed.
                self.refuse_open(
                    reply,
                    "direct-tcpip",
                    Some(destination),
                    "unexpected verdict".into(),
                )
                .await;
            }
        }
        Ok(())
    }
}
