//! `--listen-addr ADDR` and `--allow CIDR`: a local TCP listener on an address other than
//! 127.0.0.1, e.g. for a browser on another machine of the LAN.
//!
//! Whoever reaches a session's local port acts as the session's user, so:
//! - an address other than loopback needs an allow-list (`--allow`, repeatable; a bare
//!   address is /32 or /128) and prints a warning; a connection from an address outside the
//!   list is closed at once, before anything is brokered, and counted on stderr;
//! - a session that injects credentials (the worker's SSH gateway, a Proxmox API token, leased
//!   secrets) is never served on an address other than 127.0.0.1 or ::1: refused before the
//!   session when the target shows it ([`target_injects`]), else right after authorising
//!   ([`session_injects`]), and the session is cancelled. For those the loopback-only rule
//!   of [`crate::cli::local_tls::bind`] stands.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context as _};
use ipnet::IpNet;
use portcullis_policy::SshMode;
use portcullis_proto::api::{SessionAuthorization, Target};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::http::{segment, ApiClient};
use crate::cli::local_tls;

/// `--allow`'s value: a CIDR, or a single address (as /32 or /128).
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    let host = |ip: IpAddr| IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).ok();
    match text.parse::<IpAddr>().ok().and_then(host) {
        Some(net) => Ok(net),
        None => Err(format!(
            "{text:?} is not an address or CIDR (e.g. 192.168.1.0/24 or 192.168.1.5)"
        )),
    }
}

/// Where a local TCP listener binds, and whom it lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenOn {
    pub(crate) ip: IpAddr,
    /// `None`: everyone who reaches the address (only for loopback addresses).
    pub(crate) allow: Option<Vec<IpNet>>,
}

impl ListenOn {
    /// 127.0.0.1, everyone: the default.
    pub(crate) fn loopback() -> Self {
        Self {
            ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            allow: None,
        }
    }

    /// From `--listen-addr` and `--allow`: an address other than loopback needs an
    /// allow-list.
    pub(crate) fn from_flags(addr: Option<IpAddr>, allow: &[IpNet]) -> anyhow::Result<Self> {
        let ip = addr.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        if !allow.is_empty() {
            return Ok(Self {
                ip,
                allow: Some(allow.to_vec()),
            });
        }
        if !ip.is_loopback() {
            bail!(
                "--listen-addr {ip} lets other machines reach the session's local end: name \
                 who may connect with --allow CIDR (repeatable, e.g. --allow 192.168.1.0/24 or \
                 --allow 192.168.1.5)"
            );
        }
        Ok(Self { ip, allow: None })
    }

    /// Whether this is anything but the default 127.0.0.1 or ::1 (where a session that
    /// injects credentials may not listen).
    pub(crate) fn is_exposed(&self) -> bool {
        !local_tls::LOCAL_IPS.contains(&self.ip)
    }

    /// The warning for an address other than loopback.
    pub(crate) fn warning(&self) -> Option<String> {
        if self.ip.is_loopback() {
            return None;
        }
        let allowed: Vec<String> = self
            .allow
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect();
        Some(format!(
            "warning: listening on {} (not loopback): anyone from {} who reaches it acts as \
             you in this session",
            self.ip,
            allowed.join(", ")
        ))
    }

    /// Whether a client at `peer` may connect.
    pub(crate) fn admits(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical(); // An IPv4 client of a `::` listener.
        match &self.allow {
            None => true,
            Some(nets) => nets.iter().any(|net| net.contains(&peer)),
        }
    }
}

/// A bound TCP listener that closes connections from addresses outside its allow-list
/// before returning anything.
#[derive(Debug)]
pub(crate) struct GuardedListener {
    listener: TcpListener,
    on: ListenOn,
    refused: AtomicU64,
}

impl GuardedListener {
    /// Binds `on.ip:port` (0 picks a free port): loopback through
    /// [`local_tls::bind`], another address only with an allow-list.
    pub(crate) async fn bind(on: ListenOn, port: u16) -> anyhow::Result<Self> {
        let listener = if on.ip.is_loopback() {
            local_tls::bind(on.ip, port).await?
        } else {
            if on.allow.is_none() {
                bail!("internal: listening on {} without --allow", on.ip);
            }
            TcpListener::bind((on.ip, port)).await.with_context(|| {
                format!("cannot listen on {}:{port}; pick another port or 0", on.ip)
            })?
        };
        Ok(Self {
            listener,
            on,
            refused: AtomicU64::new(0),
        })
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection from an allowed address; others are closed and counted.
    pub(crate) async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        loop {
            let (stream, peer) = self.listener.accept().await?;
            if self.on.admits(peer.ip()) {
                return Ok((stream, peer));
            }
            drop(stream);
            let count = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!("connection from {peer} closed: not in --allow ({count} refused so far)");
            tracing::debug!(client.addr = %peer, refused = count, "a client outside --allow was refused");
        }
    }
}

/// Why a target's sessions inject credentials, if its record shows it.
pub(crate) fn target_injects(target: &Target) -> Option<&'static str> {
    if !target.vault_secrets.is_empty() {
        return Some("its sessions carry leased secrets");
    }
    if super::pve::looks_injecting(target) {
        return Some("its sessions carry a Proxmox API token");
    }
    None
}

/// Why an authorised session injects credentials, if it does.
pub(crate) fn session_injects(authorization: &SessionAuthorization) -> Option<&'static str> {
    if authorization.ssh_mode == SshMode::Gateway {
        return Some("its SSH runs through the worker's gateway, which logs in for you");
    }
    if authorization.proxmox.is_some() {
        return Some("its sessions carry a Proxmox API token");
    }
    if !authorization.secrets.is_empty() {
        return Some("its sessions carry leased secrets");
    }
    None
}

/// The error for `--listen-addr` on a session that injects credentials.
pub(crate) fn refusal(target: &str, on: &ListenOn, why: &str) -> String {
    format!(
        "refusing to listen on {} for {target}: {why}, so its local end is a credential and \
         stays on 127.0.0.1 (or ::1); leave out --listen-addr, and reach it from another \
         machine over SSH port forwarding to this one instead",
        on.ip
    )
}

/// Before any session: refuses an exposed listener for a target whose record shows that
/// its sessions inject credentials.
pub(crate) async fn check_target(
    api: &ApiClient,
    target: &str,
    on: &ListenOn,
) -> anyhow::Result<()> {
    if !on.is_exposed() {
        return Ok(());
    }
    let found: Target = api
        .get(&format!("/v1/targets/{}", segment(target)?))
        .await
        .with_context(|| format!("cannot look up target {target}"))?;
    match target_injects(&found) {
        Some(why) => bail!(refusal(target, on, why)),
        None => Ok(()),
    }
}
