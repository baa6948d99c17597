//! `portcullis connect http TARGET`: a web target (the Proxmox VE UI on 8006, Grafana, Wazuh
//! dashboards) served on https://localhost:PORT/.
//!
//! The CLI terminates the browser's TLS with a leaf of the user's local CA (the one the
//! Proxmox API's `--listen-port` uses: [`crate::cli::local_tls`]), speaks HTTP/1.1 to the
//! browser, and forwards each request over a brokered connection of the session with the
//! `Host` the target expects ([`rewrite`]); [`upstream`] adds TLS to an https target,
//! [`proxy`] carries the requests (and WebSocket upgrades), [`open`] starts the browser.
//!
//! `--listen-addr` other than 127.0.0.1 or ::1 is served as plain http (the local CA is
//! name-constrained to those, so it cannot certify another address), with the warning and
//! allow-list of [`super::listen_addr`]. A Proxmox API target whose sessions get a token is
//! refused: `portcullis connect TARGET` serves it, with its token kept from the browser.

mod args;
mod open;
mod proxy;
mod rewrite;
mod upstream;

use std::sync::Arc;

use anyhow::{bail, Context as _};
use portcullis_proto::api::Target;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use super::listen::{until_unix, Stop};
use super::listen_addr::{self, GuardedListener, ListenOn};
use super::mode::report_stop;
use super::session::{authorize, cancel_session};
use super::signals::Signals;
use super::tls::ClientIdentity;
use super::tunnel::SessionTicket;
use crate::cli::http::{config_dir, segment, ApiClient};
use crate::cli::local_tls::{LocalCa, LOCAL_DNS_NAME};
use crate::cli::{exit, output};
use args::Scheme;
use rewrite::Origins;
use upstream::{Trust, Upstream};

pub(crate) use args::HttpArgs;

/// How long a browser may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `portcullis connect http`.
pub(super) async fn run(args: HttpArgs) -> anyhow::Result<i32> {
    let target = args
        .target_name()
        .map(str::to_owned)
        .context("name a target: portcullis connect http TARGET (or --target NAME)")?;
    let mut signals = Signals::install()?;
    let api = ApiClient::from_args(&args.client)?;
    let on = ListenOn::from_flags(args.listen_addr, &args.allow)?;
    // Before any session: what the target expects, and whether it may be served here.
    let found: Target = api
        .get(&format!("/v1/targets/{}", segment(&target)?))
        .await
        .with_context(|| format!("cannot look up target {target}"))?;
    if super::pve::looks_injecting(&found) {
        bail!(proxmox_api(&target));
    }
    if on.is_exposed() {
        if let Some(why) = listen_addr::target_injects(&found) {
            bail!(listen_addr::refusal(&target, &on, why));
        }
    }
    let scheme = rewrite::scheme_for(&found.address, args.scheme);
    let trust = Trust::from_args(&args)?;
    if scheme == Scheme::Http && trust != Trust::Roots {
        bail!("--target-ca, --target-fingerprint and --insecure-target are for an https target; add --scheme https");
    }
    let host = args
        .host_header
        .clone()
        .unwrap_or_else(|| found.address.clone());
    let listener = GuardedListener::bind(on.clone(), args.listen_port).await?;
    let port = listener
        .local_addr()
        .context("the local listener has no address")?
        .port();
    let local_https = !on.is_exposed();
    let local = match (local_https, on.ip) {
        (true, std::net::IpAddr::V4(_)) => format!("https://{LOCAL_DNS_NAME}:{port}"),
        (true, ip) => format!("https://[{ip}]:{port}"),
        (false, std::net::IpAddr::V6(ip)) => format!("http://[{ip}]:{port}"),
        (false, ip) => format!("http://{ip}:{port}"),
    };
    let origins = Origins::new(&local, scheme, &host)?;
    let upstream = match scheme {
        Scheme::Https => Upstream::https(&trust, origins.server_name())?,
        Scheme::Http => Upstream::plain(),
    };
    if trust == Trust::Insecure {
        eprintln!(
            "warning: --insecure-target: the target's certificate is not checked, so anyone \
             on the way from the worker to it can read and change this session; prefer \
             --target-fingerprint"
        );
    }

    let identity = ClientIdentity::generate()?;
    let authorization = tokio::select! {
        result = authorize(&api, &target, &identity, None, None) => result?,
        caught = signals.recv() => {
            eprintln!("{caught}: stopped before the session was open");
            return Ok(caught.exit_code());
        }
    };
    let refused = if authorization.proxmox.is_some() {
        Some(proxmox_api(&target))
    } else if on.is_exposed() {
        listen_addr::session_injects(&authorization)
            .map(|why| listen_addr::refusal(&target, &on, why))
    } else {
        None
    };
    if let Some(why) = refused {
        let err = anyhow::anyhow!(why);
        return Err(super::abandon(&api, &authorization, &target, &identity, err).await);
    }
    let tls = match local_https {
        true => Some(local_acceptor(until_unix(authorization.expires_at))),
        false => None,
    };
    let tls = match tls.transpose() {
        Ok(tls) => tls,
        Err(err) => {
            return Err(super::abandon(&api, &authorization, &target, &identity, err).await)
        }
    };
    let ticket = Arc::new(SessionTicket::new(
        super::ticket_parts(&authorization, &target),
        &identity,
    )?);
    if let Some(warning) = on.warning() {
        eprintln!("{warning}");
    }
    if !local_https {
        eprintln!(
            "warning: {local}/ is plain http: the local CA certifies only localhost,              127.0.0.1 and ::1"
        );
    }
    let shown = Shown {
        url: format!("{local}/"),
        address: on.ip.to_string(),
        port,
        host: origins.host.clone(),
        upstream: scheme,
        ca_file: tls.as_ref().map(|(_, ca)| ca.clone()),
    };
    announce(&ticket, &shown, args.json)?;
    if args.open {
        open::open_browser(&shown.url);
    }
    eprintln!("Press Ctrl-C to end the session.");

    let span = tracing::info_span!("session", session.id = %ticket.session_id);
    let (ended_tx, ended_rx) = mpsc::channel(1);
    let proxy = Arc::new(proxy::Proxy {
        ticket: ticket.clone(),
        upstream,
        origins,
        ended: ended_tx,
    });
    let serving = Serving {
        listener,
        tls: tls.map(|(acceptor, _)| acceptor),
        proxy,
        ended: ended_rx,
    };
    let watched =
        super::watch::until_ended(&api, &ticket.session_id, authorization.token_expires_at);
    let stopped = async {
        tokio::select! {
            stopped = serving.run(&ticket, &mut signals) => stopped,
            why = watched => Stop::SessionEnded(why),
        }
    }
    .instrument(span)
    .await;
    let ending = report_stop(&ticket, &stopped);
    let cancelled = match ending.cancel {
        Some(reason) => cancel_session(&api, &ticket, reason, authorization.token_expires_at).await,
        None => true,
    };
    if !cancelled && ending.code == 0 {
        return Ok(i32::from(exit::FAILURE));
    }
    Ok(ending.code)
}

/// The error for a Proxmox API target, whose token the browser must not hold.
fn proxmox_api(target: &str) -> String {
    format!(
        "{target} is a Proxmox API target whose sessions carry an API token, which a browser \
         must not be handed: use `portcullis connect {target}` (the token proxy, see \
         docs/proxmox.md); for the Proxmox web UI, add a target without --proxmox-cluster \
         for the node's port 8006 and use `portcullis connect http` on that"
    )
}

/// The local CA's TLS for the browser, and the CA file to trust.
fn local_acceptor(
    lifetime: std::time::Duration,
) -> anyhow::Result<(TlsAcceptor, std::path::PathBuf)> {
    let config = config_dir()
        .context("no config directory for the local CA: set HOME or XDG_CONFIG_HOME")?;
    let ca = LocalCa::load_or_create(&config)?;
    Ok((ca.acceptor(lifetime)?, ca.cert_path().to_path_buf()))
}

/// What the URL line shows.
struct Shown {
    url: String,
    address: String,
    port: u16,
    host: String,
    upstream: Scheme,
    ca_file: Option<std::path::PathBuf>,
}

fn announce(ticket: &SessionTicket, shown: &Shown, json: bool) -> anyhow::Result<()> {
    if json {
        let mut line = serde_json::json!({
            "session_id": ticket.session_id,
            "target": ticket.target,
            "address": shown.address,
            "port": shown.port,
            "url": shown.url,
            "host": shown.host,
            "upstream": shown.upstream.as_str(),
            "expires_at": ticket.expires_at,
        });
        if let Some(ca) = &shown.ca_file {
            line["ca_file"] = ca.display().to_string().into();
        }
        return output::print_json_line(&line);
    }
    let mut text = format!(
        "Open {} for session {} to {} (Host: {}, over {}), expires at {}.\n",
        shown.url,
        ticket.session_id,
        ticket.target,
        shown.host,
        shown.upstream.as_str(),
        output::time(ticket.expires_at)
    );
    if let Some(ca) = &shown.ca_file {
        text.push_str(&format!(
            "The browser must trust your local CA (valid for localhost only): {}\n",
            ca.display()
        ));
    }
    output::write_stdout(&text)
}

/// The accept loop and what it needs.
struct Serving {
    listener: GuardedListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<proxy::Proxy>,
    ended: mpsc::Receiver<String>,
}

impl Serving {
    /// Serves browsers until Ctrl-C, the session's expiry, or a refusal that ends it.
    async fn run(mut self, ticket: &SessionTicket, signals: &mut Signals) -> Stop {
        let expiry = tokio::time::sleep(until_unix(ticket.expires_at));
        tokio::pin!(expiry);
        let mut accepting = portcullis_net::accept::Acceptor::new("local");
        loop {
            let (stream, peer) = tokio::select! {
                caught = signals.recv() => return Stop::Requested(caught.to_string()),
                () = &mut expiry => return Stop::Expired,
                Some(why) = self.ended.recv() => return Stop::SessionEnded(why),
                accepted = accepting.next(|| self.listener.accept()) => accepted,
            };
            let _ = stream.set_nodelay(true);
            let (tls, proxy) = (self.tls.clone(), self.proxy.clone());
            let span = tracing::info_span!("connection", client.addr = %peer);
            tokio::spawn(
                async move {
                    let stream: Box<dyn upstream::Io> = match tls {
                        None => Box::new(stream),
                        Some(acceptor) => {
                            let handshake =
                                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                            match handshake.await {
                                Ok(Ok(tls)) => Box::new(tls),
                                Ok(Err(err)) => {
                                    eprintln!("connection from {peer}: the local TLS handshake failed: {err}");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    proxy.serve(stream, peer.to_string()).await;
                }
                .instrument(span),
            );
        }
    }
}
