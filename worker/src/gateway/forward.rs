//! A `direct-tcpip` channel (`ssh -L`, `-W`, `-J`) to anywhere but the target's loopback.
//! The worker does not decide it: it asks the controller over the link, which resolves the
//! name once and runs the whole policy for the session's user as a new session, and dials
//! only the `IP:PORT` that comes back, from its egress address. It never resolves a name
//! itself, never dials its own loopback (nor an unspecified address) for a user, and
//! refuses when it has no controller link. The forward's connection is recorded under the
//! vetted session, like any brokered connection; on a recorded connection the forward is
//! recorded too (its destination as the user named it, and its bytes).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::gateway::{VetForward, VettedForward};
use portcullis_proto::link::{ConnectionEvent, EndReason, LinkError, Request, Response};
use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};

use super::channel::{relay_to_tcp, Counted};
use super::record::Opened;
use super::Context;
use crate::table::Admission;

/// How long the controller may take to vet a forward.
const VET_TIMEOUT: Duration = Duration::from_secs(10);

/// A forward the user asked for, to be vetted.
pub(super) struct Forward {
    pub(super) ctx: Arc<Context>,
    pub(super) login: String,
    pub(super) host: String,
    pub(super) port: u32,
}

/// Why a vetted endpoint is not dialled.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadEndpoint {
    #[error("the controller's endpoint {0:?} is not IP:PORT")]
    NotAnAddress(String),
    #[error("the vetted endpoint {0} is a loopback or unspecified address: the gateway never dials its own host for a user")]
    OwnHost(SocketAddr),
}

/// The one address a vetted forward may dial. Pure.
pub(super) fn endpoint(vetted: &VettedForward) -> Result<SocketAddr, BadEndpoint> {
    let addr: SocketAddr = vetted
        .endpoint
        .parse()
        .map_err(|_| BadEndpoint::NotAnAddress(vetted.endpoint.clone()))?;
    let ip = addr.ip().to_canonical();
    if ip.is_loopback() || ip.is_unspecified() || addr.port() == 0 {
        return Err(BadEndpoint::OwnHost(addr));
    }
    Ok(addr)
}

impl Forward {
    fn destination(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn refuse(&self, reply: ChannelOpenHandle, rule: String) {
        let destination = Some(self.destination());
        self.ctx
            .refused("direct-tcpip", destination, &self.login, rule)
            .await;
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }

    /// Vets, dials and relays; every refusal is recorded.
    pub(super) async fn run(self, channel: Channel<Msg>, reply: ChannelOpenHandle) {
        let shared = &self.ctx.shared;
        let Ok(port) = u16::try_from(self.port) else {
            return self.refuse(reply, "no such port".into()).await;
        };
        let ask = Request::VetForward(VetForward {
            session_id: self.ctx.session_id.clone(),
            connection_id: self.ctx.connection_id.clone(),
            host: self.host.clone(),
            port,
        });
        let vetted = match shared.link.request(ask, VET_TIMEOUT).await {
            Ok(Response::ForwardVetted(vetted)) => vetted,
            Ok(Response::Refused { reason })
            | Ok(Response::Error {
                message: reason, ..
            }) => {
                return self.refuse(reply, reason).await;
            }
            Ok(other) => {
                return self
                    .refuse(
                        reply,
                        format!("unexpected answer from the controller: {other:?}"),
                    )
                    .await;
            }
            Err(LinkError::NoLink) => {
                let rule =
                    "no controller link to vet the forward (the gateway never allows one alone)";
                return self.refuse(reply, rule.into()).await;
            }
            Err(e) => {
                return self
                    .refuse(
                        reply,
                        format!("the controller did not vet the forward: {e}"),
                    )
                    .await;
            }
        };
        let addr = match endpoint(&vetted) {
            Ok(addr) => addr,
            Err(e) => return self.refuse(reply, e.to_string()).await,
        };
        // The vetted session lives in the table like any other, so that the controller
        // can end it.
        if let Admission::Ended(reason) =
            shared.table.admit(&vetted.session_id, 0, vetted.expires_at)
        {
            return self
                .refuse(reply, format!("the vetted session has ended ({reason})"))
                .await;
        }
        let connection_id = format!("c_{}", hex::encode(super::rand_bytes()));
        let opened = ConnectionEvent::opened(
            &vetted.session_id,
            &connection_id,
            shared.clock.unix_secs(),
            &self.ctx.peer.ip().to_string(),
            &addr.to_string(),
        );
        let (dialed, ()) = tokio::join!(
            crate::proxy::dial(addr, shared.config.egress_addr),
            shared.spool.record(opened)
        );
        let closed = |up, down, why| {
            ConnectionEvent::closed(
                &vetted.session_id,
                &connection_id,
                shared.clock.unix_secs(),
                up,
                down,
                why,
            )
        };
        let tcp = match dialed {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::info!(destination = %self.destination(), endpoint = %addr, error = %e, "a vetted forward's endpoint is unreachable");
                shared
                    .spool
                    .record(closed(0, 0, EndReason::TargetUnreachable))
                    .await;
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        reply.accept().await;
        tracing::info!(destination = %self.destination(), endpoint = %addr, forward.session = %vetted.session_id, "vetted forward opened");
        let counted = Counted::default();
        let ending = shared.table.ending(&vetted.session_id);
        let stop = self.ctx.stop.child_token();
        let rec = self.ctx.record_channel(Opened::Forward {
            destination: self.destination(),
        });
        let closing = async {
            match &rec {
                Some(rec) => rec.closing().await,
                None => std::future::pending().await,
            }
        };
        let mut relay = std::pin::pin!(relay_to_tcp(channel, tcp, &counted, stop.clone()));
        let why = tokio::select! {
            _ = &mut relay => EndReason::Closed,
            _ = ending.ended() => ending.reason(),
            _ = closing => {
                // The recording cannot be written and the policy requires it.
                stop.cancel();
                relay.await;
                EndReason::Closed
            }
        };
        stop.cancel();
        let (up, down) = (
            counted.up.load(Ordering::Relaxed),
            counted.down.load(Ordering::Relaxed),
        );
        if let Some(rec) = rec {
            rec.forwarded(up, down);
            rec.closed().await;
        }
        tracing::info!(bytes.up = up, bytes.down = down, reason = %why, "vetted forward closed");
        shared.spool.record(closed(up, down, why)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vetted(endpoint: &str) -> VettedForward {
        VettedForward {
            endpoint: endpoint.into(),
            session_id: "s_f".into(),
            expires_at: 0,
        }
    }

    #[test]
    fn only_a_routable_ip_and_port_is_dialled() {
        assert_eq!(
            endpoint(&vetted("10.0.0.7:5432")),
            Ok("10.0.0.7:5432".parse().unwrap())
        );
        assert!(endpoint(&vetted("[2001:db8::1]:443")).is_ok());
        for own in [
            "127.0.0.1:22",
            "127.9.9.9:80",
            "[::1]:22",
            "0.0.0.0:22",
            "[::]:22",
            "[::ffff:127.0.0.1]:22",
            "10.0.0.7:0",
        ] {
            assert!(
                matches!(endpoint(&vetted(own)), Err(BadEndpoint::OwnHost(_))),
                "{own}"
            );
        }
        for name in ["db-01:5432", "localhost:22", "10.0.0.7", ""] {
            assert!(
                matches!(endpoint(&vetted(name)), Err(BadEndpoint::NotAnAddress(_))),
                "{name}"
            );
        }
    }
}
