//! Fuzz entry points for the wire surfaces of this crate. Each takes the raw bytes a peer
//! controls and does with them what the receiving side does; none may panic, whatever the
//! input. `fuzz/fuzz_targets/` drives them under libFuzzer (`cargo fuzz`, see
//! `fuzz/README.md`); the unit tests below replay the seed corpus and every input that once
//! crashed, on stable, so CI needs no nightly.

use portcullis_crypto::ed25519::SigningKey;

use crate::grant::{self, GrantClaims, GrantKey, GRANT_ISSUER};
use crate::keys::b64;
use crate::link::{self, Frame};
use crate::proxy::{self, ClientHello, WorkerReply};

/// The worker the fuzzed grants are checked for.
pub const WORKER_ID: &str = "w_fuzz";
/// The clock the fuzzed grants are checked at.
pub const NOW: u64 = 1_700_000_000;
/// The key id of [`signing_key`].
pub const KID: &str = "k_fuzz";

/// A fixed Ed25519 key, so that seeds signed with it stay valid across runs.
fn signing_key() -> Option<SigningKey> {
    SigningKey::from_seed(&[7u8; 32]).ok()
}

/// The keys a fuzzed worker accepts: the fixed key, and one whose encoding is not base64.
pub fn grant_keys() -> Vec<GrantKey> {
    let mut keys = vec![GrantKey {
        kid: "k_broken".into(),
        public_key: "*not base64*".into(),
    }];
    if let Some(pair) = signing_key() {
        keys.push(GrantKey {
            kid: KID.into(),
            public_key: b64(pair.public_key()),
        });
    }
    keys
}

/// A compact JWS over `header` and `payload` (raw JSON bytes) signed with the fixed key:
/// how a seed grant is made, and how the fuzzer reaches the claims behind the signature.
pub fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = signing_key()
        .map(|pair| b64(&pair.sign(input.as_bytes())))
        .unwrap_or_default();
    format!("{input}.{signature}")
}

/// The worker's side of the proxy handshake (`worker/src/proxy.rs`): a 4-byte big-endian
/// length, checked before any buffer is allocated, the [`ClientHello`], then the grant in it.
/// The same body is also decoded as the client decodes the worker's [`WorkerReply`].
pub fn proxy_hello(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Ok(len) = proxy::check_len(u32::from_be_bytes(*len)) else {
        return;
    };
    let Some(body) = rest.get(..len) else {
        return;
    };
    if let Ok(hello) = proxy::decode_frame::<ClientHello>(body) {
        check_grant(&hello.grant);
        if let Ok(frame) = proxy::encode_frame(&hello) {
            let again = proxy::decode_frame::<ClientHello>(&frame[4..]);
            assert!(
                again.is_ok_and(
                    |h| h.grant == hello.grant && h.protocol_version == hello.protocol_version
                ),
                "a re-encoded hello does not decode to itself"
            );
        }
    }
    if let Ok(reply) = proxy::decode_frame::<WorkerReply>(body) {
        if let Ok(frame) = proxy::encode_frame(&reply) {
            let again = proxy::decode_frame::<WorkerReply>(&frame[4..]);
            assert!(
                again.is_ok_and(|r| r == reply),
                "a re-encoded reply does not decode to itself"
            );
        }
    }
}

/// Grant verification: the first byte chooses what the input is. `0`: a whole token. `1`: the
/// claims of a grant correctly signed with an accepted key (a hostile or buggy controller).
/// `2`: the JOSE header of such a grant, over valid claims.
pub fn grant_verify(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check_grant(token);
            }
        }
        1 => check_grant(&sign_raw(br#"{"alg":"EdDSA","kid":"k_fuzz"}"#, rest)),
        _ => {
            let claims = valid_claims();
            let payload = serde_json::to_vec(&claims).unwrap_or_default();
            check_grant(&sign_raw(rest, &payload));
        }
    }
}

/// Claims the fixed worker accepts at [`NOW`].
pub fn valid_claims() -> GrantClaims {
    GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GrantClaims::audience_for(WORKER_ID),
        sub: "u_fuzz".into(),
        sid: "s_fuzz".into(),
        tid: "t_fuzz".into(),
        ckh: "00".repeat(32),
        src: "127.0.0.1".into(),
        dst: "127.0.0.1:22".into(),
        lim: 0,
        iat: NOW - 10,
        exp: NOW + 60,
        gw: None,
        pve: None,
    }
}

/// Verifies a token and checks that an accepted grant really meets every condition.
fn check_grant(token: &str) {
    let keys = grant_keys();
    if let Ok(claims) = grant::verify(token, &keys, WORKER_ID, NOW) {
        assert_eq!(
            claims.iss, GRANT_ISSUER,
            "accepted a grant of another issuer"
        );
        assert_eq!(
            claims.aud,
            GrantClaims::audience_for(WORKER_ID),
            "accepted a grant for another worker"
        );
        assert!(NOW < claims.exp, "accepted an expired grant");
        assert!(
            grant::verify(token, &keys, "w_other", NOW).is_err(),
            "a grant verified for two workers"
        );
        assert!(
            grant::verify(token, &keys[..1], WORKER_ID, NOW).is_err(),
            "a grant verified without its key"
        );
    }
}

/// The cluster link as either side reads it (`controller/src/link`, `worker/src/link`): the
/// length-delimited codec cuts frames from the byte stream and each is decoded, and received
/// by a worker peer and a controller peer with requests in flight. The whole input is also
/// decoded as one frame; a frame that decodes must re-encode to itself.
pub fn link_frames(data: &[u8]) {
    use tokio_util::codec::Decoder as _;

    let now = std::time::Instant::now();
    let silence = std::time::Duration::from_secs(10);
    let mut peers = [
        link::Peer::new(link::Role::Worker, silence, now),
        link::Peer::new(link::Role::Controller, silence, now),
    ];
    for peer in &mut peers {
        for timeout in [None, Some(std::time::Duration::ZERO)] {
            let _ = peer.request(link::Request::Ping, (), timeout, now);
        }
        let _ = peer.poll_timers(now);
    }
    check_link_frame(data, &mut peers, now);
    let mut codec = link::codec();
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        check_link_frame(&frame, &mut peers, now);
    }
}

fn check_link_frame(bytes: &[u8], peers: &mut [link::Peer<()>], now: std::time::Instant) {
    for peer in peers.iter_mut() {
        let _ = peer.receive(bytes, now);
    }
    check_frame_round_trip(bytes);
}

fn check_frame_round_trip(bytes: &[u8]) {
    let Ok(frame) = link::decode(bytes) else {
        return;
    };
    let encoded = link::encode(&frame);
    let encoded = match encoded {
        Ok(e) => e,
        Err(e) => panic!("a decoded frame does not encode: {e}"),
    };
    let again: Frame = match link::decode(&encoded) {
        Ok(f) => f,
        Err(e) => panic!("an encoded frame does not decode: {e}"),
    };
    assert_eq!(
        link::encode(&again).ok().as_deref(),
        Some(&encoded[..]),
        "a frame changes when encoded twice"
    );
}

/// A stored recording as `recordings verify` reads it (`recording`): the input is chunks,
/// each behind a 4-byte big-endian length. Every chunk that decodes must re-encode to its
/// bytes; the chain is verified, and a complete verdict must cover every chunk; every pty
/// channel of the decoded chunks is turned into a `.cast` file. The whole input is also
/// decoded as one chunk.
pub fn recording_chunks(data: &[u8]) {
    use crate::recording::{cast, verify, Chunk, Verdict};

    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(piece) = tail.get(..len) else {
            break;
        };
        pieces.push(piece);
        rest = &tail[len..];
    }
    let mut chunks = Vec::new();
    for piece in pieces.iter().copied().chain([data]) {
        if let Ok(chunk) = Chunk::decode(piece) {
            let encoded = chunk.encode();
            assert!(
                encoded.as_deref() == Ok(piece),
                "a decoded chunk does not re-encode to its bytes"
            );
            chunks.push(chunk);
        }
    }
    if let Verdict::Complete { chunks: n, .. } = verify(pieces.iter()) {
        assert_eq!(n, pieces.len() as u64, "a complete verdict skipped chunks");
    }
    let mut channels: Vec<u32> = chunks.iter().map(|c| c.header.channel).collect();
    channels.dedup();
    for channel in channels {
        let _ = cast(&chunks, channel);
    }
}

#[cfg(test)]
mod tests;
