//! The gateway in one process: a russh client as the user, the gateway's `serve` over an
//! in-memory stream, a russh server as the target, and a fake controller link that certifies
//! the gateway, mints the session's login and vets forwards.

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::SshRights;
use portcullis_proto::gateway::{Credential, VettedForward, HOST_ALIAS};
use portcullis_proto::grant::GatewayClaims;
use portcullis_proto::link::{ConnectionEventKind, EndReason, Request, Response};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::net::TcpListener;

use super::testing::key;
use super::*;
use crate::Shared;

const SID: &str = "s_gw_test";

/// The fake target: accepts any certificate login, runs `exec` as "ran: CMD" with exit
/// status 0; a shell opens an agent channel towards the user (nobody asked for it); a
/// remote forward is granted on port 7777 and at once used once ("from-target").
struct Target {
    logins: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    /// Whether the target's own channels towards the user were accepted.
    opened: tokio::sync::mpsc::UnboundedSender<bool>,
}

impl russh::server::Handler for Target {
    type Error = russh::Error;

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        let _ = self
            .logins
            .send((user.to_owned(), certificate.key_id().to_owned()));
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let out = format!("ran: {}", String::from_utf8_lossy(data));
        session.data(channel, out.into_bytes())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let (handle, opened) = (session.handle(), self.opened.clone());
        tokio::spawn(async move {
            let _ = opened.send(handle.channel_open_agent().await.is_ok());
        });
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        *port = 7777;
        let (handle, opened, address) = (session.handle(), self.opened.clone(), address.to_owned());
        tokio::spawn(async move {
            match handle
                .channel_open_forwarded_tcpip(address, 7777, "10.1.1.1", 5555)
                .await
            {
                Ok(channel) => {
                    let _ = opened.send(true);
                    let _ = channel.data_bytes(&b"from-target"[..]).await;
                    let _ = channel.eof().await;
                }
                Err(_) => {
                    let _ = opened.send(false);
                }
            }
        });
        Ok(true)
    }
}

/// The user's client: trusts the gateway's host certificate; hands over the channels of its
/// remote forwards.
struct User {
    forwarded: tokio::sync::mpsc::UnboundedSender<(String, u32, Channel<russh::client::Msg>)>,
}

impl russh::client::Handler for User {
    type Error = russh::Error;

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<russh::client::Msg>,
        connected_address: &str,
        connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::client::ChannelOpenHandle,
        _session: &mut russh::client::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let _ = self
            .forwarded
            .send((connected_address.to_owned(), connected_port, channel));
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::Certificate(c) if c.valid_principals().iter().any(|p| p == HOST_ALIAS)),
        )
    }
}

struct Setup {
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
    user_key: PrivateKey,
    /// (login, certificate key id) of every login the target saw.
    target_logins: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    target: TcpListener,
    target_key: PrivateKey,
    /// Whether each channel the target opened towards the user was accepted.
    target_opened: tokio::sync::mpsc::UnboundedReceiver<bool>,
    /// The channels of the user's remote forwards.
    forwarded: tokio::sync::mpsc::UnboundedReceiver<(String, u32, Channel<russh::client::Msg>)>,
    forwarded_tx: tokio::sync::mpsc::UnboundedSender<(String, u32, Channel<russh::client::Msg>)>,
    /// Where the fake controller vets every forward to (the canary unless a test says).
    canary: TcpListener,
    vet_to: Arc<std::sync::Mutex<String>>,
    /// What the grant says about recording.
    rec: Option<portcullis_policy::Recording>,
}

async fn setup() -> Setup {
    setup_with("").await
}

/// A setup whose worker config has `extra` after its `[worker]` section.
async fn setup_with(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let shared = Shared::for_tests_with(dir.path(), extra);
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let canary = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_key = key(90);
    let (_, target_logins) = tokio::sync::mpsc::unbounded_channel();
    let (_, target_opened) = tokio::sync::mpsc::unbounded_channel();
    let (forwarded_tx, forwarded) = tokio::sync::mpsc::unbounded_channel();
    let vet_to = Arc::new(std::sync::Mutex::new(
        canary.local_addr().unwrap().to_string(),
    ));
    Setup {
        vet_to,
        target_opened,
        forwarded,
        forwarded_tx,
        shared,
        _dir: dir,
        user_key: key(91),
        target_logins,
        target,
        target_key,
        canary,
        rec: None,
    }
    .with_link()
}

impl Setup {
    fn with_link(self) -> Setup {
        let host_ca = key(92);
        let user_ca = key(93);
        let pinned = self.target_key.public_key().to_openssh().unwrap();
        let vet_to = self.vet_to.clone();
        let registration = self.shared.link.fake_link(move |request| match request {
            Request::GatewayHostCertificate { public_key } => {
                let subject = russh::keys::PublicKey::from_openssh(&public_key).unwrap();
                let cert = sign(&host_ca, &subject, CertType::Host, HOST_ALIAS);
                Response::SshCertificate {
                    certificate: cert.to_openssh().unwrap(),
                    valid_before: u64::MAX,
                }
            }
            Request::GatewayCredential(request) => {
                let subject = russh::keys::PublicKey::from_openssh(&request.public_key).unwrap();
                let cert = sign(&user_ca, &subject, CertType::User, "alice");
                Response::GatewayCredential(Credential {
                    certificate: cert.to_openssh().unwrap(),
                    valid_before: u64::MAX,
                    host_keys: vec![pinned.clone()],
                    host_cas: vec![],
                    target_name: "web-01".into(),
                })
            }
            Request::VetForward(_) => Response::ForwardVetted(VettedForward {
                // By default a controller gone wrong: the worker's own loopback.
                endpoint: vet_to.lock().unwrap().clone(),
                session_id: "s_forward".into(),
                expires_at: u64::MAX,
            }),
            _ => Response::error("unexpected"),
        });
        // The link lives as long as the test's runtime.
        std::mem::forget(registration);
        self
    }

    fn claims(&self, rights: SshRights) -> GatewayClaims {
        GatewayClaims {
            key: self.user_key.public_key().to_openssh().unwrap(),
            logins: vec!["alice".into()],
            rights,
            rec: self.rec,
        }
    }

    /// Starts the target's side and one gateway connection; returns the user's end of it and
    /// the gateway's task.
    async fn connect(
        &mut self,
        rights: SshRights,
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Served>) {
        let (logins, rx) = tokio::sync::mpsc::unbounded_channel();
        self.target_logins = rx;
        let (opened, rx) = tokio::sync::mpsc::unbounded_channel();
        self.target_opened = rx;
        let config = Arc::new(russh::server::Config {
            keys: vec![self.target_key.clone()],
            ..Default::default()
        });
        let target_addr = self.target.local_addr().unwrap();
        let tcp = TcpStream::connect(target_addr).await.unwrap();
        let (accepted, _) = self.target.accept().await.unwrap();
        tokio::spawn(async move {
            if let Ok(session) =
                russh::server::run_stream(config, accepted, Target { logins, opened }).await
            {
                let _ = session.await;
            }
        });
        self.shared.table.admit(SID, 0, u64::MAX);
        let gw = self.claims(rights);
        let ready = prepare(&self.shared, &gw).await.unwrap();
        let (user, gateway) = tokio::io::duplex(1 << 16);
        let conn = Connection {
            session_id: SID.into(),
            connection_id: "c_gw_test".into(),
            grant: "grant".into(),
            gw,
            peer: "127.0.0.1:5555".parse().unwrap(),
            target: target_addr,
        };
        let shared = self.shared.clone();
        let task = tokio::spawn(async move { serve(&shared, gateway, tcp, ready, conn).await });
        (user, task)
    }

    fn refusals(&self) -> Vec<portcullis_proto::gateway::ChannelRefusal> {
        self.shared
            .spool
            .pending(100)
            .into_iter()
            .filter_map(|e| match e.kind {
                ConnectionEventKind::ChannelRefused(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

fn sign(
    ca: &PrivateKey,
    subject: &russh::keys::PublicKey,
    kind: CertType,
    principal: &str,
) -> russh::keys::Certificate {
    let mut builder = russh::keys::ssh_key::certificate::Builder::new(
        [3u8; 16],
        subject.key_data().clone(),
        0,
        u64::MAX,
    )
    .unwrap();
    builder.cert_type(kind).unwrap();
    builder.valid_principal(principal).unwrap();
    builder.key_id(SID).unwrap();
    builder.sign(ca).unwrap()
}

async fn log_in(
    s: &Setup,
    user: tokio::io::DuplexStream,
    key: &PrivateKey,
    login: &str,
) -> (russh::client::Handle<User>, bool) {
    let handler = User {
        forwarded: s.forwarded_tx.clone(),
    };
    // As OpenSSH with the `@cert-authority` line: it asks for the host certificate.
    let config = Arc::new(russh::client::Config {
        preferred: config::preferred(true),
        ..Default::default()
    });
    let mut handle = russh::client::connect_stream(config, user, handler)
        .await
        .unwrap();
    let auth = handle
        .authenticate_publickey(
            login,
            PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None),
        )
        .await
        .unwrap();
    (handle, auth.success())
}

/// Runs `command` on a new session channel: (stdout, exit status) or None if refused.
async fn exec(
    handle: &russh::client::Handle<User>,
    command: &str,
) -> Option<(String, Option<u32>)> {
    let mut channel = handle.channel_open_session().await.ok()?;
    channel.exec(true, command).await.ok()?;
    let (mut out, mut status) = (String::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Failure => return None,
            ChannelMsg::Data { data } => out.push_str(&String::from_utf8_lossy(&data)),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Some((out, status))
}

#[tokio::test]
async fn a_command_runs_on_the_target_as_the_chosen_login_with_the_sessions_certificate() {
    let mut s = setup().await;
    let (user, task) = s.connect(SshRights::default()).await;
    let (handle, ok) = log_in(&s, user, &s.user_key, "alice").await;
    assert!(ok, "the session's key as one of its logins logs in");
    let (login, key_id) = s.target_logins.recv().await.unwrap();
    assert_eq!((login.as_str(), key_id.as_str()), ("alice", SID));
    let (out, status) = exec(&handle, "id -un").await.unwrap();
    assert_eq!((out.as_str(), status), ("ran: id -un", Some(0)));
    assert_eq!(s.shared.gateway.sessions_with_login(), 1);
    handle
        .disconnect(russh::Disconnect::ByApplication, "bye", "en")
        .await
        .unwrap();
    let served = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served.why, EndReason::Closed);
    assert!(
        served.up > 1000 && served.down > 1000,
        "{} {}",
        served.up,
        served.down
    );
}

#[tokio::test]
async fn another_key_or_another_login_is_refused() {
    let mut s = setup().await;
    let (user, _task) = s.connect(SshRights::default()).await;
    let (_, ok) = log_in(&s, user, &key(99), "alice").await;
    assert!(!ok, "another user's key");
    let (user, _task) = s.connect(SshRights::default()).await;
    let (_, ok) = log_in(&s, user, &s.user_key.clone(), "root").await;
    assert!(!ok, "a login the session was not granted");
    assert!(
        s.target_logins.try_recv().is_err(),
        "the target saw no login"
    );
}

#[tokio::test]
async fn a_request_the_rights_refuse_is_refused_and_recorded() {
    let mut s = setup().await;
    let rights = SshRights {
        exec: false,
        ..SshRights::default()
    };
    let (user, _task) = s.connect(rights).await;
    let (handle, ok) = log_in(&s, user, &s.user_key, "alice").await;
    assert!(ok);
    assert_eq!(exec(&handle, "id").await, None);
    // -L without forward_local.
    assert!(handle
        .channel_open_direct_tcpip("db-01", 5432, "127.0.0.1", 40000)
        .await
        .is_err());
    let refusals = s.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert_eq!(refusals[0].channel, "exec");
    assert_eq!(refusals[0].login, "alice");
    assert!(
        refusals[0].rule.contains("ssh.exec"),
        "{}",
        refusals[0].rule
    );
    assert_eq!(refusals[1].channel, "direct-tcpip");
    assert_eq!(refusals[1].destination.as_deref(), Some("db-01:5432"));
    assert!(
        refusals[1].rule.contains("ssh.forward_local"),
        "{}",
        refusals[1].rule
    );
}

#[tokio::test]
async fn a_vetted_endpoint_on_the_workers_own_loopback_is_never_dialled() {
    let mut s = setup().await;
    let rights = SshRights {
        forward_local: true,
        ..SshRights::default()
    };
    let (user, _task) = s.connect(rights).await;
    let (handle, ok) = log_in(&s, user, &s.user_key, "alice").await;
    assert!(ok);
    assert!(handle
        .channel_open_direct_tcpip("db-01", 5432, "127.0.0.1", 40000)
        .await
        .is_err());
    let refusals = s.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].rule.contains("never dials its own host"),
        "{}",
        refusals[0].rule
    );
    // The canary on the worker's loopback was never reached.
    let reached = tokio::time::timeout(Duration::from_millis(300), s.canary.accept()).await;
    assert!(reached.is_err(), "the canary was reached");
}

#[tokio::test]
async fn the_end_of_the_session_closes_the_users_connection() {
    let mut s = setup().await;
    let (user, task) = s.connect(SshRights::default()).await;
    let (handle, ok) = log_in(&s, user, &s.user_key, "alice").await;
    assert!(ok);
    let mut channel = handle.channel_open_session().await.unwrap();
    s.shared.table.end(SID, EndReason::Canceled);
    let served = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served.why, EndReason::Canceled);
    // The user's channel ends with the connection.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while channel.wait().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok());
    assert!(
        handle.is_closed()
            || tokio::time::timeout(Duration::from_secs(5), async {
                while !handle.is_closed() {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_remote_forward_is_carried_where_granted_and_a_target_cannot_open_what_nobody_asked_for()
{
    let mut s = setup().await;
    let rights = SshRights {
        forward_remote: true,
        ..SshRights::default()
    };
    let (user, _task) = s.connect(rights).await;
    let (handle, ok) = log_in(&s, user, &s.user_key.clone(), "alice").await;
    assert!(ok);
    // ssh -R 0:...: the target's port comes back.
    assert_eq!(handle.tcpip_forward("localhost", 0).await.unwrap(), 7777);
    assert_eq!(s.target_opened.recv().await, Some(true));
    let (address, port, mut channel) = s.forwarded.recv().await.unwrap();
    assert_eq!((address.as_str(), port), ("localhost", 7777));
    let mut got = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => got.extend_from_slice(&data),
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    assert_eq!(got, b"from-target");
    // A shell: the target opens an agent channel nobody asked for.
    let channel = handle.channel_open_session().await.unwrap();
    channel.request_shell(true).await.unwrap();
    assert_eq!(s.target_opened.recv().await, Some(false));
    let refusals = s.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].channel, "auth-agent@openssh.com");
}

#[tokio::test]
async fn a_remote_forward_is_refused_without_the_right() {
    let mut s = setup().await;
    let (user, _task) = s.connect(SshRights::default()).await;
    let (handle, ok) = log_in(&s, user, &s.user_key.clone(), "alice").await;
    assert!(ok);
    assert!(handle.tcpip_forward("localhost", 0).await.is_err());
    let refusals = s.refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].channel, "tcpip-forward");
    assert!(
        refusals[0].rule.contains("ssh.forward_remote"),
        "{}",
        refusals[0].rule
    );
}

/// This host's address on its default route (no packet is sent), if it has one.
fn routable_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn a_vetted_forward_dials_only_the_vetted_address_and_is_recorded_under_its_session() {
    let Some(ip) = routable_address() else {
        panic!("this test needs an address on a default route (any non-loopback interface)");
    };
    let mut s = setup().await;
    let destination = TcpListener::bind((ip, 0)).await.unwrap();
    let endpoint = destination.local_addr().unwrap();
    *s.vet_to.lock().unwrap() = endpoint.to_string();
    let rights = SshRights {
        forward_local: true,
        ..SshRights::default()
    };
    let (user, _task) = s.connect(rights).await;
    let (handle, ok) = log_in(&s, user, &s.user_key.clone(), "alice").await;
    assert!(ok);
    let mut channel = handle
        .channel_open_direct_tcpip("db-01", 5432, "127.0.0.1", 40000)
        .await
        .unwrap();
    let (mut tcp, _) = destination.accept().await.unwrap();
    channel.data_bytes(&b"ping"[..]).await.unwrap();
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"ping");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"pong")
        .await
        .unwrap();
    drop(tcp);
    let mut got = Vec::new();
    // Until the destination's EOF, then the user closes (russh's client does not pass on
    // the answering close).
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => got.extend_from_slice(&data),
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    channel.close().await.unwrap();
    assert_eq!(got, b"pong");
    // Its connection, under the forward's session: opened with the vetted endpoint, closed
    // with the bytes it carried.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events: Vec<_> = s
            .shared
            .spool
            .pending(100)
            .into_iter()
            .filter(|e| e.session_id == "s_forward")
            .collect();
        if events.len() >= 2 || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        matches!(&events[0].kind, ConnectionEventKind::Opened { endpoint: e, .. } if *e == endpoint.to_string()),
        "{events:?}"
    );
    assert!(
        matches!(
            &events[1].kind,
            ConnectionEventKind::Closed {
                bytes_up: 4,
                bytes_down: 4,
                ..
            }
        ),
        "{events:?}"
    );
    assert!(s.refusals().is_empty());
}

/// The chunks the connection's recording spooled, decoded, in seq order, and whether the
/// chain is complete.
fn recorded(s: &Setup) -> (Vec<portcullis_proto::recording::Chunk>, bool) {
    use portcullis_proto::recording::{verify, Chunk, Verdict};
    let mut data: Vec<_> = s.shared.chunks.batch();
    data.sort_by_key(|c| c.seq);
    let complete = matches!(
        verify(data.iter().map(|c| &c.data)),
        Verdict::Complete { .. }
    );
    let chunks = data
        .iter()
        .map(|c| Chunk::decode(&c.data).unwrap())
        .collect();
    (chunks, complete)
}

#[tokio::test]
async fn a_recorded_connection_records_its_pty_and_its_commands_and_ends_complete() {
    let mut s = setup().await;
    s.rec = Some(portcullis_policy::Recording {
        required: true,
        input: false,
        fallback: portcullis_policy::Fallback::CloseChannel,
    });
    let (user, task) = s.connect(SshRights::default()).await;
    let (handle, ok) = log_in(&s, user, &s.user_key, "alice").await;
    assert!(ok);
    assert_eq!(
        exec(&handle, "id -un").await,
        Some(("ran: id -un".into(), Some(0)))
    );
    // A command on a pty: recorded as a terminal.
    let mut channel = handle.channel_open_session().await.unwrap();
    channel
        .request_pty(true, "xterm", 90, 20, 0, 0, &[])
        .await
        .unwrap();
    channel.exec(true, "uptime").await.unwrap();
    while let Some(msg) = channel.wait().await {
        if matches!(msg, ChannelMsg::Close) {
            break;
        }
    }
    handle
        .disconnect(russh::Disconnect::ByApplication, "bye", "en")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let (chunks, complete) = recorded(&s);
    assert!(
        complete,
        "the final chunk is written at the connection's end"
    );
    assert!(chunks
        .iter()
        .all(|c| c.header.recording_id.as_str() == "c_gw_test"));
    let body = |channel: u32| -> String {
        chunks
            .iter()
            .filter(|c| c.header.channel == channel)
            .map(|c| c.body.as_str())
            .collect()
    };
    let exec_body = body(0);
    let lines: Vec<serde_json::Value> = exec_body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{exec_body}");
    assert_eq!(
        (&lines[0]["event"], &lines[0]["command"]),
        (&"exec".into(), &"id -un".into())
    );
    assert_eq!(
        (&lines[1]["event"], &lines[1]["status"]),
        (&"exited".into(), &0.into())
    );
    assert!(
        !exec_body.contains("ran:"),
        "no output without a pty: {exec_body}"
    );
    let cast = portcullis_proto::recording::cast(chunks.iter(), 1).unwrap();
    assert!(cast.contains(r#""width":90,"height":20"#), "{cast}");
    assert!(cast.contains(r#""command":"uptime""#), "{cast}");
    assert!(cast.contains(r#""o","ran: uptime"]"#), "{cast}");
}

#[tokio::test]
async fn a_required_recording_that_cannot_be_written_closes_the_channel_with_a_line_on_stderr() {
    let mut s = setup_with("[recording]\nmax_bytes = 4096\n").await;
    s.rec = Some(portcullis_policy::Recording {
        required: true,
        input: false,
        fallback: portcullis_policy::Fallback::CloseChannel,
    });
    let (user, _task) = s.connect(SshRights::default()).await;
    let (handle, ok) = log_in(&s, user, &s.user_key, "alice").await;
    assert!(ok);
    // A command line longer than the cap: it cannot be recorded.
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.exec(true, "x".repeat(8000)).await.unwrap();
    let (mut stderr, mut status) = (String::new(), None);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::ExtendedData { data, .. } => {
                    stderr.push_str(&String::from_utf8_lossy(&data))
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the channel was closed");
    assert!(
        stderr.contains("recording cannot be written (size cap reached)"),
        "{stderr}"
    );
    assert_eq!(status, Some(255));
    // No new channel opens on the connection.
    assert!(handle.channel_open_session().await.is_err());
    let failed: Vec<_> = s
        .shared
        .spool
        .pending(100)
        .into_iter()
        .filter_map(|e| match e.kind {
            ConnectionEventKind::RecordingFailed(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].cause, "size_cap");
}
