//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front of a listener
//! opens each connection with a header naming the client it relays, so that source zones,
//! the login back-off and the audit's `source` see the client, not the balancer.
//!
//! A header is believed only from a configured trusted proxy ([`TrustedProxies`]):
//! - a connection FROM a trusted address must start with a header (v1 or v2), or it is
//!   refused: the balancer is configured to always send one, so a connection without it is
//!   a misconfiguration, not a client;
//! - a connection from any other address is served as if no balancer existed and nothing is
//!   read: a header it sends is taken for the start of its TLS handshake, which fails. Direct
//!   clients keep working; what no one can do is name a source address of their choosing.
//!
//! With no trusted proxies (the default) no header is ever read.
//!
//! The header is read a few bytes at a time, never past its end, so the bytes after it (the
//! client's TLS handshake) stay in the socket for the TLS acceptor. Its length is bounded
//! ([`MAX_HEADER_BYTES`]) and so is the time it may take (the caller's deadline). The
//! framing ([`progress`]) and the parsing ([`parse`]) are pure; [`read_source`] is the thin
//! driver doing the reads. Parsing is `ppp`'s.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt as _};

#[cfg(test)]
mod tests;

/// The longest header accepted, in bytes. A v1 header is at most 107 bytes (the protocol's
/// own bound); a v2 header with IPv6 addresses is 52, with Unix addresses 232, and what
/// balancers add as TLVs (a unique id, an ALPN, the SNI) fits in the rest.
pub(crate) const MAX_HEADER_BYTES: usize = 1024;

/// The longest v1 header: `PROXY TCP6 <39> <39> <5> <5>\r\n`.
const MAX_V1_BYTES: usize = 107;

/// The shortest header of either version (`PROXY UNKNOWN\r\n` is 15 bytes, v2's fixed part 16):
/// this much is read at once without risking reading past a header.
const MIN_HEADER_BYTES: usize = 15;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED_BYTES: usize = 16;

/// The load balancers whose PROXY headers are believed: networks (`10.0.0.5/32`,
/// `2001:db8::/64`) or single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `trusted_proxies` that is neither a network nor an address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP network (10.0.0.5/32, 2001:db8::/64) nor an IP address")]
pub struct BadNetwork(pub String);

impl TrustedProxies {
    /// Reads the config's entries; the first malformed one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, BadNetwork> {
        let networks = entries
            .iter()
            .map(|entry| {
                let text = entry.as_ref().trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| BadNetwork(text.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies(networks))
    }

    /// True when no proxy is trusted: no header is ever read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a connection from `peer` must start with a PROXY header. An IPv4 peer on a
    /// dual-stack socket (`::ffff:a.b.c.d`) is matched as its IPv4 address.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }
}

/// Where a connection comes from, as everything after the listener sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The client: the header's source, or the TCP peer when there was no header or it
    /// named no address (v2 `LOCAL`, a balancer's health check; v1 `UNKNOWN`).
    pub client: SocketAddr,
    /// The trusted proxy the connection came through, when it came through one.
    pub via: Option<SocketAddr>,
}

impl Source {
    /// A connection served as it came: its TCP peer is the client.
    pub(crate) fn direct(peer: SocketAddr) -> Source {
        Source {
            client: peer,
            via: None,
        }
    }
}

/// Why a connection from a trusted proxy was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("a connection from a trusted proxy did not start with a PROXY protocol header (v1 or v2); configure the load balancer to send one (HAProxy: send-proxy-v2), or remove its address from trusted_proxies")]
    Missing,
    #[error("the PROXY protocol header is longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    #[error("the PROXY protocol header is malformed: {0}")]
    Malformed(String),
    #[error("no complete PROXY protocol header within {0:?}")]
    TimedOut(Duration),
    #[error("the connection closed before its PROXY protocol header was complete")]
    Closed,
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the framing needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Read exactly this many more bytes (never past the header's end).
    Read(usize),
    /// `buf` holds one whole header: [`parse`] it.
    Complete,
}

/// How much more of a header to read, given its first bytes `buf`.
pub(crate) fn progress(buf: &[u8]) -> Result<Progress, HeaderError> {
    let could_be = |prefix: &[u8]| {
        let n = buf.len().min(prefix.len());
        buf[..n] == prefix[..n]
    };
    if !could_be(V2_SIGNATURE) && !could_be(V1_PREFIX) {
        return Err(HeaderError::Missing);
    }
    if buf.len() < MIN_HEADER_BYTES {
        return Ok(Progress::Read(MIN_HEADER_BYTES - buf.len()));
    }
    if could_be(V2_SIGNATURE) {
        if buf.len() < V2_FIXED_BYTES {
            return Ok(Progress::Read(V2_FIXED_BYTES - buf.len()));
        }
        let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        let total = V2_FIXED_BYTES + length;
        if total > MAX_HEADER_BYTES {
            return Err(HeaderError::TooLong);
        }
        return Ok(match total - buf.len() {
            0 => Progress::Complete,
            more => Progress::Read(more),
        });
    }
    // v1: it ends at the first CRLF, read one byte at a time so as not to read past it (a
    // CRLF within the first bytes ends a header too short to be valid: `parse` says so).
    if buf.windows(2).any(|pair| pair == b"\r\n") {
        return Ok(Progress::Complete);
    }
    if buf.len() >= MAX_V1_BYTES {
        return Err(HeaderError::TooLong);
    }
    Ok(Progress::Read(1))
}

/// The client a whole header names: `None` when it names none (v2 `LOCAL`, v1 `UNKNOWN`,
/// an unspecified or Unix address family), and the TCP peer stands for the client.
pub(crate) fn parse(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let malformed = |e: &dyn std::fmt::Display| HeaderError::Malformed(e.to_string());
    if header.starts_with(V2_SIGNATURE) {
        let parsed = ppp::v2::Header::try_from(header).map_err(|e| malformed(&e))?;
        if parsed.len() != header.len() {
            return Err(HeaderError::Malformed(
                "its length does not match its address block".into(),
            ));
        }
        return Ok(match (parsed.command, parsed.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (ppp::v2::Command::Proxy, _) => None,
        });
    }
    let parsed = ppp::v1::Header::try_from(header).map_err(|e| malformed(&e))?;
    Ok(match parsed.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    })
}

/// Where the connection from `peer` comes from: for a trusted proxy, what its header says
/// (read from `stream` within `deadline`); for anyone else, `peer` itself, nothing read.
pub async fn read_source<S: AsyncRead + Unpin>(
    trusted: &TrustedProxies,
    stream: &mut S,
    peer: SocketAddr,
    deadline: Duration,
) -> Result<Source, HeaderError> {
    if !trusted.trusts(peer.ip()) {
        return Ok(Source::direct(peer));
    }
    let header = tokio::time::timeout(deadline, read_header(stream))
        .await
        .map_err(|_| HeaderError::TimedOut(deadline))??;
    let client = parse(&header)?.unwrap_or(peer);
    // An IPv4 client named in IPv6 form counts as its IPv4 address, as a direct one does.
    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
    Ok(Source {
        client,
        via: Some(peer),
    })
}

/// The bytes of one whole header, and not one byte more.
async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HeaderError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        let more = match progress(&buf)? {
            Progress::Complete => return Ok(buf),
            Progress::Read(more) => more,
        };
        let start = buf.len();
        buf.resize(start + more, 0);
        let mut filled = start;
        while filled < buf.len() {
            match stream.read(&mut buf[filled..]).await? {
                0 => return Err(HeaderError::Closed),
                n => filled += n,
            }
            // A prefix that is already wrong need not be read in full.
            progress(&buf[..filled])?;
        }
    }
}

/// The fuzz entry point: frames and parses whatever a trusted peer might send, as
/// [`read_source`] does; must never panic.
#[cfg(any(test, fuzzing))]
pub fn fuzz(data: &[u8]) {
    let mut end = 0;
    while let Ok(Progress::Read(more)) = progress(&data[..end]) {
        if end + more > data.len() {
            return;
        }
        end += more;
    }
    if let Ok(Progress::Complete) = progress(&data[..end]) {
        let _ = parse(&data[..end]);
    }
    let _ = parse(data);
}
