//! Channels the target opens towards the user: remote forwards (`ssh -R`), the agent
//! (`ssh -A`) and X11 (`ssh -X`). The gateway carries one only where the session's rights
//! grant it and the user asked for it on this connection; every other channel a target opens
//! (sessions, `direct-tcpip`, Unix sockets, or one nobody asked for) is refused and recorded:
//! a target cannot reach the user's machine on its own. A recorded connection records each
//! as a forward (its destination, or the channel's kind, and bytes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use russh::client::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use tracing::Instrument as _;

use super::channel::{relay_to_target, UpChannel};
use super::record::Opened;
use super::server::ChannelSlot;
use super::Context;

/// What the user asked for on this connection, once allowed and passed on.
#[derive(Default)]
pub(super) struct Asked {
    pub(super) remote: AtomicBool,
    pub(super) agent: AtomicBool,
    pub(super) x11: AtomicBool,
}

/// The kinds of channel a target may open towards the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    ForwardedTcpip,
    Agent,
    X11,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ForwardedTcpip => "forwarded-tcpip",
            Kind::Agent => "auth-agent@openssh.com",
            Kind::X11 => "x11",
        }
    }

    /// Whether the session's rights grant it and the user asked for it. Pure.
    pub(super) fn allowed(self, rights: &portcullis_policy::SshRights, asked: &Asked) -> bool {
        match self {
            Kind::ForwardedTcpip => rights.forward_remote && asked.remote.load(Ordering::Relaxed),
            Kind::Agent => rights.agent && asked.agent.load(Ordering::Relaxed),
            Kind::X11 => rights.x11 && asked.x11.load(Ordering::Relaxed),
        }
    }
}

/// Where a remote forward's connection came in on the target, as the target names it (the
/// user's ssh matches it against its `-R` by the first two).
pub(super) struct Forwarded {
    pub(super) connected_address: String,
    pub(super) connected_port: u32,
    pub(super) originator_address: String,
    pub(super) originator_port: u32,
}

/// A channel the target opened: carried to the user if allowed, else refused and recorded.
pub(super) async fn open(
    ctx: &Arc<Context>,
    kind: Kind,
    up: Channel<Msg>,
    reply: ChannelOpenHandle,
    forwarded: Option<Forwarded>,
) {
    let destination = forwarded
        .as_ref()
        .map(|f| format!("{}:{}", f.connected_address, f.connected_port));
    if !kind.allowed(&ctx.rights, &ctx.asked) {
        refuse(ctx, kind.name(), destination, reply).await;
        return;
    }
    if ctx.closed_for_recording() {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        return;
    }
    let Some(user) = ctx.user.get().cloned() else {
        reply.reject(ChannelOpenFailure::ConnectFailed).await;
        return;
    };
    let open = ctx.open_channels.fetch_add(1, Ordering::Relaxed);
    let slot = ChannelSlot::new(ctx.open_channels.clone());
    if open >= super::config::MAX_CHANNELS {
        reply.reject(ChannelOpenFailure::ResourceShortage).await;
        return;
    }
    let opened = match (kind, forwarded) {
        (Kind::ForwardedTcpip, Some(f)) => {
            user.channel_open_forwarded_tcpip(
                f.connected_address,
                f.connected_port,
                f.originator_address,
                f.originator_port,
            )
            .await
        }
        (Kind::ForwardedTcpip, None) => Err(russh::Error::Inconsistent),
        (Kind::Agent, _) => user.channel_open_agent().await,
        (Kind::X11, _) => user.channel_open_x11("127.0.0.1", 0).await,
    };
    let user_channel = match opened {
        Ok(channel) => channel,
        Err(e) => {
            tracing::info!(channel = kind.name(), error = %e, "the user's client refused a channel from the target");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return;
        }
    };
    reply.accept().await;
    tracing::info!(
        channel = kind.name(),
        "a channel from the target carried to the user"
    );
    let (up_read, up_write) = up.split();
    let stop = ctx.stop.child_token();
    let destination = destination.unwrap_or_else(|| kind.name().to_owned());
    let up = UpChannel::new(
        up_write,
        ctx.record_channel(Opened::Forward { destination }),
    );
    ctx.tasks.spawn(
        async move {
            let _slot = slot;
            relay_to_target(user_channel, user, up_read, up, stop).await;
        }
        .in_current_span(),
    );
}

/// Refuses a channel the target opened, recording it under the session's login.
pub(super) async fn refuse(
    ctx: &Context,
    kind: &str,
    destination: Option<String>,
    reply: ChannelOpenHandle,
) {
    let login = ctx.login.get().map(String::as_str).unwrap_or("");
    let rule = format!("a {kind} channel opened by the target that the session did not ask for or its rights do not grant");
    ctx.refused(kind, destination, login, rule).await;
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::SshRights;

    #[test]
    fn a_target_reaches_the_user_only_where_granted_and_asked() {
        let asked = Asked::default();
        let all = SshRights {
            forward_remote: true,
            agent: true,
            x11: true,
            ..SshRights::default()
        };
        for kind in [Kind::ForwardedTcpip, Kind::Agent, Kind::X11] {
            assert!(!kind.allowed(&all, &asked), "not asked: {kind:?}");
            assert!(!kind.allowed(&SshRights::default(), &asked));
        }
        asked.agent.store(true, Ordering::Relaxed);
        assert!(Kind::Agent.allowed(&all, &asked));
        assert!(
            !Kind::Agent.allowed(&SshRights::default(), &asked),
            "asked, not granted"
        );
        assert!(!Kind::X11.allowed(&all, &asked));
    }
}
