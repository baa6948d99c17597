//! Channels the user opens: sessions and `direct-tcpip` forwards.

use super::*;

impl UserSide {
    /// A session channel: opened on the target first, then accepted and carried.
    pub(super) async fn open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self.ctx.closed_for_recording() {
            self.refuse_open(reply, "session", None, Self::unrecordable())
                .await;
            return Ok(());
        }
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
        let up = UpChannel::new(up_write, self.ctx.record_channel(Opened::Session));
        self.channels.insert(channel.id(), up.clone());
        reply.accept().await;
        let (handle, stop) = (session.handle(), self.ctx.stop.child_token());
        self.ctx.tasks.spawn(
            async move {
                let _slot = slot;
                relay_to_target(channel, handle, up_read, up, stop).await;
            }
            .in_current_span(),
        );
        Ok(())
    }

    /// A `direct-tcpip` channel: refused, carried on the target's connection (its
    /// loopback), or vetted by the controller ([`super::super::forward`]).
    pub(super) async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        (originator_address, originator_port): (&str, u32),
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let request = ChannelRequest::DirectTcpip {
            host: host_to_connect,
            port: port_to_connect,
        };
        let destination = format!("{host_to_connect}:{port_to_connect}");
        if self.ctx.closed_for_recording() {
            self.refuse_open(
                reply,
                "direct-tcpip",
                Some(destination),
                Self::unrecordable(),
            )
            .await;
            return Ok(());
        }
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
                let rec = self.ctx.record_channel(Opened::Forward { destination });
                let up = UpChannel::new(up_write, rec);
                self.ctx.tasks.spawn(
                    async move {
                        let _slot = slot;
                        relay_to_target(channel, handle, up_read, up, stop).await;
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
                self.ctx.tasks.spawn(
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
