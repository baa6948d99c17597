use std::path::{Path, PathBuf};

use super::*;

const PROXY: &str = "10.0.0.5:40000";
const DEADLINE: Duration = Duration::from_secs(5);

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn trusted() -> TrustedProxies {
    TrustedProxies::parse(&["10.0.0.0/29", "2001:db8::7"]).unwrap()
}

/// A v2 header: `command` 0 is LOCAL, 1 PROXY; TCP over IPv4 from `src` to 192.0.2.1:443.
fn v2_ipv4(command: u8, src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x20 | command, 0x11, 0, 12]);
    h.extend(src);
    h.extend([192, 0, 2, 1]);
    h.extend(sport.to_be_bytes());
    h.extend(443u16.to_be_bytes());
    h
}

fn v2_ipv6(src: std::net::Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x21, 0x21, 0, 36]);
    h.extend(src.octets());
    h.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    h.extend(sport.to_be_bytes());
    h.extend(443u16.to_be_bytes());
    h
}

/// Reads the source of a connection from `peer` whose bytes are `sent`; returns it and what
/// is left unread.
async fn source_of(peer: &str, sent: &[u8]) -> (Result<Source, HeaderError>, Vec<u8>) {
    let mut stream = sent;
    let source = read_source(&trusted(), &mut stream, addr(peer), DEADLINE).await;
    (source, stream.to_vec())
}

const TLS_HELLO: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 rest of the hello";

#[tokio::test]
async fn a_v2_header_from_a_trusted_proxy_names_the_client_and_leaves_tls_unread() {
    let mut sent = v2_ipv4(1, [203, 0, 113, 9], 51000);
    sent.extend(TLS_HELLO);
    let (source, left) = source_of(PROXY, &sent).await;
    let source = source.unwrap();
    assert_eq!(source.client, addr("203.0.113.9:51000"));
    assert_eq!(source.via, Some(addr(PROXY)));
    assert_eq!(left, TLS_HELLO, "not one byte past the header is read");
}

#[tokio::test]
async fn a_v2_ipv6_header_names_the_client_and_a_mapped_ipv4_client_is_canonical() {
    let v6: std::net::Ipv6Addr = "2001:db8:1::42".parse().unwrap();
    let (source, _) = source_of("[2001:db8::7]:1", &v2_ipv6(v6, 6000)).await;
    assert_eq!(source.unwrap().client, addr("[2001:db8:1::42]:6000"));
    let mapped: std::net::Ipv6Addr = "::ffff:198.51.100.3".parse().unwrap();
    let (source, _) = source_of(PROXY, &v2_ipv6(mapped, 7000)).await;
    assert_eq!(source.unwrap().client, addr("198.51.100.3:7000"));
}

#[tokio::test]
async fn a_v2_local_header_is_a_health_check_and_the_peer_is_the_client() {
    let mut sent = v2_ipv4(0, [0, 0, 0, 0], 0);
    sent.extend(TLS_HELLO);
    let (source, left) = source_of(PROXY, &sent).await;
    let source = source.unwrap();
    assert_eq!(source.client, addr(PROXY));
    assert_eq!(source.via, Some(addr(PROXY)));
    assert_eq!(left, TLS_HELLO);
}

#[tokio::test]
async fn v1_headers_tcp4_tcp6_and_unknown() {
    let cases: [(&[u8], &str); 3] = [
        (
            b"PROXY TCP4 203.0.113.9 192.0.2.1 51000 443\r\n",
            "203.0.113.9:51000",
        ),
        (
            b"PROXY TCP6 2001:db8::9 2001:db8::1 51000 443\r\n",
            "[2001:db8::9]:51000",
        ),
        (b"PROXY UNKNOWN\r\n", PROXY),
    ];
    for (header, client) in cases {
        let mut sent = header.to_vec();
        sent.extend(TLS_HELLO);
        let (source, left) = source_of(PROXY, &sent).await;
        assert_eq!(source.unwrap().client, addr(client), "{header:?}");
        assert_eq!(left, TLS_HELLO, "{header:?}: nothing past the CRLF is read");
    }
}

#[tokio::test]
async fn an_untrusted_peer_is_its_own_source_and_its_header_is_not_read() {
    let mut sent = v2_ipv4(1, [203, 0, 113, 9], 51000);
    sent.extend(TLS_HELLO);
    for peer in ["10.0.0.9:1", "[2001:db8::8]:1", "127.0.0.1:1"] {
        let (source, left) = source_of(peer, &sent).await;
        assert_eq!(source.unwrap(), Source::direct(addr(peer)));
        assert_eq!(left, sent, "nothing is read from an untrusted peer");
    }
    // No trusted proxies at all: nothing is read from anyone.
    let mut stream = &sent[..];
    let source = read_source(
        &TrustedProxies::default(),
        &mut stream,
        addr(PROXY),
        DEADLINE,
    )
    .await;
    assert_eq!(source.unwrap(), Source::direct(addr(PROXY)));
    assert_eq!(stream, &sent[..]);
}

#[tokio::test]
async fn a_trusted_proxy_without_a_header_is_refused() {
    let (source, _) = source_of(PROXY, TLS_HELLO).await;
    assert!(matches!(source, Err(HeaderError::Missing)), "{source:?}");
    let message = source.unwrap_err().to_string();
    assert!(message.contains("trusted_proxies"), "{message}");
    // A mapped IPv4 peer is still the trusted proxy.
    let (source, _) = source_of("[::ffff:10.0.0.5]:1", TLS_HELLO).await;
    assert!(matches!(source, Err(HeaderError::Missing)), "{source:?}");
}

#[tokio::test]
async fn malformed_truncated_and_oversized_headers_are_refused() {
    let (source, _) = source_of(PROXY, b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n").await;
    assert!(
        matches!(source, Err(HeaderError::Malformed(_))),
        "{source:?}"
    );
    let (source, _) = source_of(PROXY, b"PROXY \r\nPROXY TCP4 1.2.3.4").await;
    assert!(
        matches!(source, Err(HeaderError::Malformed(_))),
        "{source:?}"
    );
    let mut huge = v2_ipv4(1, [1, 2, 3, 4], 1);
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let (source, _) = source_of(PROXY, &huge).await;
    assert!(matches!(source, Err(HeaderError::TooLong)), "{source:?}");
    let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
    let (source, _) = source_of(PROXY, &endless).await;
    assert!(matches!(source, Err(HeaderError::TooLong)), "{source:?}");
    let mut version_one_in_v2 = v2_ipv4(1, [1, 2, 3, 4], 1);
    version_one_in_v2[12] = 0x11;
    let (source, _) = source_of(PROXY, &version_one_in_v2).await;
    assert!(
        matches!(source, Err(HeaderError::Malformed(_))),
        "{source:?}"
    );
    let whole = v2_ipv4(1, [1, 2, 3, 4], 1);
    let (source, _) = source_of(PROXY, &whole[..20]).await;
    assert!(matches!(source, Err(HeaderError::Closed)), "{source:?}");
}

#[tokio::test]
async fn a_header_that_does_not_finish_in_time_is_refused() {
    let (mut ours, mut theirs) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut theirs, b"PROXY TCP4 1.2.3.4")
        .await
        .unwrap();
    let deadline = Duration::from_millis(100);
    let source = read_source(&trusted(), &mut ours, addr(PROXY), deadline).await;
    assert!(
        matches!(source, Err(HeaderError::TimedOut(d)) if d == deadline),
        "{source:?}"
    );
    drop(theirs);
}

#[test]
fn trusted_proxies_are_networks_or_addresses_and_a_bad_entry_is_named() {
    let t = TrustedProxies::parse(&["10.0.0.5/32", "192.168.1.7/24", "::1"]).unwrap();
    assert!(t.trusts("10.0.0.5".parse().unwrap()));
    assert!(!t.trusts("10.0.0.6".parse().unwrap()));
    assert!(
        t.trusts("192.168.1.200".parse().unwrap()),
        "host bits are dropped"
    );
    assert!(t.trusts("::ffff:10.0.0.5".parse().unwrap()));
    assert!(t.trusts("::1".parse().unwrap()));
    assert!(!TrustedProxies::default().trusts("10.0.0.5".parse().unwrap()));
    assert!(TrustedProxies::default().is_empty());
    let err = TrustedProxies::parse(&["10.0.0.5/32", "lb.example.net"]).unwrap_err();
    assert!(err.to_string().contains("\"lb.example.net\""), "{err}");
    assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
}

#[test]
fn the_framing_never_asks_past_a_header() {
    let header = v2_ipv4(1, [1, 2, 3, 4], 1);
    assert_eq!(progress(&[]).unwrap(), Progress::Read(15));
    assert_eq!(progress(&header[..15]).unwrap(), Progress::Read(1));
    assert_eq!(progress(&header[..16]).unwrap(), Progress::Read(12));
    assert_eq!(progress(&header).unwrap(), Progress::Complete);
    assert_eq!(progress(b"PROXY UNKNOWN\r\n").unwrap(), Progress::Complete);
    assert_eq!(progress(b"PROXY TCP4 1.2.").unwrap(), Progress::Read(1));
    assert!(matches!(progress(b"\x16"), Err(HeaderError::Missing)));
    assert!(matches!(
        progress(b"GET / HTTP/1.1"),
        Err(HeaderError::Missing)
    ));
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

include!("../../../fuzz/replay.rs");

#[test]
fn proxy_header_corpus_replays() {
    replay_corpus(&fuzz_dir(), "proxy_header", fuzz);
}
