//! How the handler decides and answers: the target's login, the connection's channel
//! places, a request checked against the session's rights, and refusals recorded.

use super::*;

impl UserSide {
    pub(in crate::gateway) fn new(
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
    pub(super) async fn log_in_upstream(&mut self, user: &str) {
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

    pub(super) fn upstream(&self) -> Option<Arc<Upstream>> {
        match &self.upstream {
            UpstreamState::Ready(handle) => Some(handle.clone()),
            _ => None,
        }
    }

    /// A place for a new channel, or `None` when the connection has [`MAX_CHANNELS`] open.
    pub(super) fn slot(&self) -> Option<ChannelSlot> {
        let open = self.ctx.open_channels.fetch_add(1, Ordering::Relaxed);
        let slot = ChannelSlot(self.ctx.open_channels.clone());
        (open < MAX_CHANNELS).then_some(slot)
    }

    /// Refuses a request on a channel (the user sees a failure) and records why.
    pub(super) async fn refuse_request(
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
    pub(super) async fn allow(
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
    pub(super) fn answer(
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

    /// The rule that refuses a channel once the connection's recording cannot be written.
    pub(super) fn unrecordable() -> String {
        "the session's recording cannot be written, and the policy requires it: the connection opens no more channels".to_owned()
    }

    /// Refuses a channel the rights allow but the gateway does not carry yet.
    pub(super) fn not_carried(what: &str) -> String {
        format!(
            "{what} is not carried by the SSH gateway yet (refused even where the role allows it)"
        )
    }

    /// The rule that refuses a request the gateway does not carry: the right the session
    /// lacks, or, where the role grants it, that the gateway does not carry it yet.
    pub(super) fn refusal_rule(&self, request: &ChannelRequest<'_>, what: &str) -> String {
        match decide_channel(&self.rights, request) {
            ChannelVerdict::Deny { right } => rule_for_right(right),
            _ => Self::not_carried(what),
        }
    }

    pub(super) async fn refuse_open(
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
