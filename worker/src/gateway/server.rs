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
use super::record::{Opened, Start};
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

mod decide;
mod open;

impl Drop for UserSide {
    fn drop(&mut self) {
        if let UpstreamState::Greeting(task) = &self.upstream {
            task.abort();
        }
    }
}

/// A channel's place among the connection's [`MAX_CHANNELS`]; given back on drop.
pub(super) struct ChannelSlot(Arc<AtomicUsize>);

impl ChannelSlot {
    /// The place of a channel already counted in `open`.
    pub(super) fn new(open: Arc<AtomicUsize>) -> ChannelSlot {
        ChannelSlot(open)
    }
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
        let _ = self.ctx.login.set(user.to_owned());
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
        self.open_session(channel, reply, session).await
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
        if let Some(rec) = &up.rec {
            rec.pty_requested(col_width, row_height, term);
        }
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
        if let Some(rec) = &up.rec {
            if !rec.started(Start::Shell).await {
                // The recording cannot be written: nothing starts, the channel closes.
                return session.channel_failure(channel);
            }
        }
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
        if let Some(rec) = &up.rec {
            if !rec.started(Start::Exec(data)).await {
                // The recording cannot be written: nothing starts, the channel closes.
                return session.channel_failure(channel);
            }
        }
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
        if let Some(rec) = &up.rec {
            if !rec.started(Start::Subsystem(name)).await {
                // The recording cannot be written: nothing starts, the channel closes.
                return session.channel_failure(channel);
            }
        }
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
            if let Some(rec) = &up.rec {
                rec.resized(col_width, row_height).await;
            }
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
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(up) = self.allow(channel, &ChannelRequest::X11, session).await? else {
            return Ok(());
        };
        up.expect_answer("x11-req");
        let sent = up
            .write
            .request_x11(
                true,
                single_connection,
                x11_auth_protocol,
                x11_auth_cookie,
                x11_screen_number,
            )
            .await;
        if sent.is_ok() {
            self.ctx.asked.x11.store(true, Ordering::Relaxed);
        }
        self.answer(channel, sent, session)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = ChannelRequest::Agent;
        if let ChannelVerdict::Deny { right } = decide_channel(&self.rights, &request) {
            let kind = request.kind().to_owned();
            self.ctx
                .refused(&kind, None, &self.login, rule_for_right(right))
                .await;
            return Ok(false);
        }
        let Some(up) = self.channels.get(&channel) else {
            return Ok(false);
        };
        up.expect_answer("auth-agent-req@openssh.com");
        let sent = up.write.agent_forward(true).await.is_ok();
        if sent {
            self.ctx.asked.agent.store(true, Ordering::Relaxed);
        }
        Ok(sent)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = ChannelRequest::TcpipForward;
        let destination = format!("{address}:{port}");
        if let ChannelVerdict::Deny { right } = decide_channel(&self.rights, &request) {
            self.ctx
                .refused(
                    "tcpip-forward",
                    Some(destination),
                    &self.login,
                    rule_for_right(right),
                )
                .await;
            return Ok(false);
        }
        let Some(upstream) = self.upstream() else {
            return Ok(false);
        };
        // The target listens, as sshd would for the user: its GatewayPorts decides where.
        match upstream.tcpip_forward(address, *port).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                self.ctx.asked.remote.store(true, Ordering::Relaxed);
                tracing::info!(%destination, port = *port, "remote forward opened on the target");
                Ok(true)
            }
            Err(e) => {
                tracing::info!(%destination, error = %e, "the target refused a remote forward");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if !self.ctx.asked.remote.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(upstream) = self.upstream() else {
            return Ok(false);
        };
        Ok(upstream.cancel_tcpip_forward(address, port).await.is_ok())
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let rule = self.refusal_rule(&ChannelRequest::StreamLocal, "streamlocal");
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
        let rule = self.refusal_rule(&ChannelRequest::StreamLocal, "streamlocal");
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
        let rule = "x11 channels are opened by servers, never by a client".to_owned();
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

    #[allow(clippy::too_many_arguments)]
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
        let originator = (originator_address, originator_port);
        self.open_direct_tcpip(
            channel,
            host_to_connect,
            port_to_connect,
            originator,
            reply,
            session,
        )
        .await
    }
}
