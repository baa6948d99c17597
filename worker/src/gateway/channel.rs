//! One channel of a gateway connection carried to where it goes: a user's channel paired
//! with a channel on the target's SSH connection (sessions, forwards to the target's
//! loopback), or with a TCP connection the worker dialled (vetted forwards). Data flows both
//! ways with back-pressure: a write waits for the receiver's window, and a channel's unread
//! messages are capped (`config::CHANNEL_BUFFER`), so nothing is buffered without bound. EOF,
//! exit status and signal, and close pass through. On a recorded connection the relay tells
//! the channel's [`ChannelRec`] what passes before passing it on, and closes the channel
//! when the recording cannot be written and the policy says so.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use russh::{client, server, Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::record::ChannelRec;

/// How long a forward whose destination sent its EOF waits for the user's side to finish
/// sending and close.
const HALF_CLOSED_GRACE: Duration = Duration::from_secs(60);

/// The target's end of a user's channel, as the handler passes requests to it.
pub(super) struct UpChannel {
    pub(super) write: ChannelWriteHalf<client::Msg>,
    /// The requests sent to the target with a reply asked for, oldest first: the target
    /// answers them in order.
    awaiting: Mutex<VecDeque<&'static str>>,
    /// The channel's part of the connection's recording, if it is recorded.
    pub(super) rec: Option<Arc<ChannelRec>>,
}

impl UpChannel {
    pub(super) fn new(
        write: ChannelWriteHalf<client::Msg>,
        rec: Option<Arc<ChannelRec>>,
    ) -> Arc<UpChannel> {
        Arc::new(UpChannel {
            write,
            awaiting: Mutex::new(VecDeque::new()),
            rec,
        })
    }

    /// Notes a request whose answer the target will send.
    pub(super) fn expect_answer(&self, kind: &'static str) {
        if let Ok(mut q) = self.awaiting.lock() {
            q.push_back(kind);
        }
    }

    fn answered(&self) -> Option<&'static str> {
        self.awaiting.lock().ok().and_then(|mut q| q.pop_front())
    }
}

/// Carries a user's channel and its target channel until either closes or `stop`.
pub(super) async fn relay_to_target(
    user: Channel<server::Msg>,
    user_handle: server::Handle,
    up_read: ChannelReadHalf,
    up: Arc<UpChannel>,
    stop: CancellationToken,
) {
    let id = user.id();
    let (user_read, user_write) = user.split();
    let rec = up.rec.as_deref();
    let mut to_target = std::pin::pin!(to_target(user_read, &up.write, rec));
    let mut to_user = std::pin::pin!(to_user(up_read, &user_write, &user_handle, id, &up));
    let closing = async {
        match rec {
            Some(rec) => rec.closing().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        line = closing => {
            // The recording cannot be written and the policy requires it: the user learns
            // why, and both ends close.
            if rec.is_some_and(|r| !r.is_forward()) {
                let _ = user_write.extended_data_bytes(1, line.into_bytes()).await;
                let _ = user_write.exit_status(255).await;
            }
            let _ = user_write.eof().await;
            let _ = user_write.close().await;
            let _ = up.write.close().await;
        }
        _ = &mut to_user => {
            // The target closed the channel: so does the user's.
            let _ = user_write.close().await;
        }
        _ = &mut to_target => {
            // The user closed it: so does the target's. Its answering close is not waited
            // for (russh does not pass on the answer to a close it sent), and nothing more
            // can reach the user.
            let _ = up.write.close().await;
        }
    }
    if let Some(rec) = rec {
        rec.closed().await;
    }
}

/// The user's side to the target: data, extended data and EOF; until the user closes.
/// Requests are not read here: the handler decides and passes them on.
async fn to_target(
    mut user: ChannelReadHalf,
    up: &ChannelWriteHalf<client::Msg>,
    rec: Option<&ChannelRec>,
) {
    while let Some(msg) = user.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                if let Some(rec) = rec {
                    rec.user_sent(&data).await;
                }
                up.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => up.extended_data_bytes(ext, data).await,
            ChannelMsg::Eof => up.eof().await,
            ChannelMsg::Close => break,
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
}

/// The target's side to the user: data, extended data, EOF, exit status and signal; the
/// target's answers to requests (a refused shell, command or subsystem closes the channel
/// with a line on the user's stderr); until the target closes.
async fn to_user(
    mut up: ChannelReadHalf,
    user: &ChannelWriteHalf<server::Msg>,
    handle: &server::Handle,
    id: ChannelId,
    channel: &UpChannel,
) {
    let rec = channel.rec.as_deref();
    while let Some(msg) = up.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                if let Some(rec) = rec {
                    rec.target_sent(&data, false).await;
                }
                user.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if let Some(rec) = rec {
                    rec.target_sent(&data, true).await;
                }
                user.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => user.eof().await,
            ChannelMsg::ExitStatus { exit_status } => {
                if let Some(rec) = rec {
                    rec.exited(exit_status).await;
                }
                user.exit_status(exit_status).await
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => handle
                .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                .await
                .map_err(|()| russh::Error::SendError),
            ChannelMsg::XonXoff { client_can_do } => handle
                .xon_xoff_request(id, client_can_do)
                .await
                .map_err(|()| russh::Error::SendError),
            ChannelMsg::Success => {
                channel.answered();
                Ok(())
            }
            ChannelMsg::Failure => match channel.answered() {
                Some(kind @ ("shell" | "exec" | "subsystem")) => {
                    let line =
                        format!("portcullis gateway: the target refused the {kind} request\r\n");
                    let _ = user.extended_data_bytes(1, line.into_bytes()).await;
                    let _ = user.exit_status(255).await;
                    break;
                }
                Some(kind) => {
                    let line =
                        format!("portcullis gateway: the target refused the {kind} request\r\n");
                    user.extended_data_bytes(1, line.into_bytes()).await
                }
                None => Ok(()),
            },
            ChannelMsg::Close => break,
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
}

/// Bytes a vetted forward carried, for its connection's closed event.
#[derive(Default)]
pub(super) struct Counted {
    pub(super) up: AtomicU64,
    pub(super) down: AtomicU64,
}

/// Carries a user's channel and a TCP connection the worker dialled, until either is done
/// or `stop`.
pub(super) async fn relay_to_tcp(
    user: Channel<server::Msg>,
    tcp: TcpStream,
    counted: &Counted,
    stop: CancellationToken,
) {
    let (user_read, user_write) = user.split();
    let (tcp_read, tcp_write) = tcp.into_split();
    let mut to_tcp = std::pin::pin!(channel_to_tcp(user_read, tcp_write, &counted.up));
    let mut from_tcp = std::pin::pin!(tcp_to_channel(tcp_read, &user_write, &counted.down));
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = &mut to_tcp => {
            // The user closed the channel.
        }
        _ = &mut from_tcp => {
            // The destination sent its EOF: the user's side may still send until it closes.
            let _ = tokio::time::timeout(HALF_CLOSED_GRACE, async {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = to_tcp => {}
                }
            })
            .await;
        }
    }
    let _ = user_write.close().await;
}

async fn channel_to_tcp(
    mut user: ChannelReadHalf,
    mut tcp: tokio::net::tcp::OwnedWriteHalf,
    counter: &AtomicU64,
) {
    while let Some(msg) = user.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if tcp.write_all(&data).await.is_err() {
                    break;
                }
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            ChannelMsg::Eof => {
                let _ = tcp.shutdown().await;
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
}

async fn tcp_to_channel(
    mut tcp: tokio::net::tcp::OwnedReadHalf,
    user: &ChannelWriteHalf<server::Msg>,
    counter: &AtomicU64,
) {
    const BUF: usize = 32 * 1024;
    let mut buf = BytesMut::with_capacity(BUF);
    loop {
        match tcp.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if user.data_bytes(buf.split().freeze()).await.is_err() {
                    return;
                }
                buf.reserve(BUF);
            }
        }
    }
    let _ = user.eof().await;
}
