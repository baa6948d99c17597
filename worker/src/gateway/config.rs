//! The gateway's SSH settings, hardened in one place: the algorithms it offers on both legs
//! (user-facing server, target-facing client), its caps, and its timeouts.
//!
//! Only what OpenSSH 8.x and later speak and what holds up today is offered: Ed25519 and
//! ECDSA keys (RSA is not built in: a target needs an Ed25519 or ECDSA host key), key exchange
//! with curve25519 (and the ML-KEM hybrid), AEAD ciphers (AES-GCM, ChaCha20-Poly1305), MACs of
//! SHA-2 in encrypt-then-MAC form (unused with AEAD ciphers, never SHA-1), no compression, and
//! always OpenSSH's strict key exchange (`kex-strict-*-v00@openssh.com`, against Terrapin).
//! Nothing of SHA-1, CBC or finite-field Diffie-Hellman is in any list.
//!
//! Throughput: russh spends more CPU per byte than OpenSSH, so the gateway does what it can
//! around it: large channel windows (the sender never stalls on a LAN round trip),
//! 64 KiB packets, `TCP_NODELAY` on both sockets (set where they are made), and AES-256-GCM
//! first on the upstream leg (hardware AES; on the user's leg the client's order decides).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, Certificate, EcdsaCurve, PrivateKey};
use russh::{cipher, compression, kex, mac, MethodKind, MethodSet, Preferred, SshId};

/// Channels one user connection may have open at once.
pub(super) const MAX_CHANNELS: usize = 10;
/// Authentication attempts (keys signed with) per connection.
pub(super) const MAX_AUTH_ATTEMPTS: usize = 3;
/// How long a refused authentication is held back (russh makes every refusal take this long).
const AUTH_REJECTION_TIME: Duration = Duration::from_millis(200);
/// How long a client has from its connection to a successful login.
pub(super) const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// The flow-control window each side grants a channel: large enough that a sender never
/// waits a round trip on a fast link (russh tops it up as data arrives).
const WINDOW_SIZE: u32 = 8 << 20;
/// The largest channel packet accepted (OpenSSH sends 32 KiB; russh logs a warning above
/// 65535).
const MAX_PACKET_SIZE: u32 = 65_535;
/// Messages a channel queues before its connection stops reading (back-pressure): with
/// 32 KiB packets, at most 2 MiB per channel in the gateway's memory.
const CHANNEL_BUFFER: usize = 64;
/// A peer silent this long is asked whether it is still there; after three unanswered asks
/// its connection closes.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// What the gateway offers on both legs; see the module doc.
pub(super) fn preferred(host_certificates: bool) -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            // Markers, not algorithms: extension negotiation and strict key exchange.
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Borrowed(&[
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
        ]),
        host_key_certificates: if host_certificates {
            Cow::Borrowed(&[
                Algorithm::Ed25519,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP384,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP521,
                },
            ])
        } else {
            Cow::Borrowed(&[])
        },
        cipher: Cow::Borrowed(&[
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_128_GCM,
        ]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
        compression: Cow::Borrowed(&[compression::NONE]),
    }
}

/// The user-facing server: the in-memory host key and its certificate, public-key logins
/// only, and the caps above.
pub(super) fn server(key: PrivateKey, certificate: Certificate) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-portcullis-gateway")),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: AUTH_REJECTION_TIME,
        // OpenSSH always asks with `none` first to learn the methods: no delay for that.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        certificates: vec![certificate],
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET_SIZE,
        channel_buffer_size: CHANNEL_BUFFER,
        preferred: preferred(false),
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        // An idle interactive session is the user's business (it ends with the session);
        // a dead peer is found by keepalives.
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    })
}

/// The target-facing client; it asks for host certificates only when the target has host
/// CAs to check them against.
pub(super) fn client(host_certificates: bool) -> Arc<russh::client::Config> {
    Arc::new(russh::client::Config {
        client_id: SshId::Standard(Cow::Borrowed("SSH-2.0-portcullis-gateway")),
        window_size: WINDOW_SIZE,
        maximum_packet_size: MAX_PACKET_SIZE,
        channel_buffer_size: CHANNEL_BUFFER,
        preferred: preferred(host_certificates),
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Preferred) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        all.extend(p.kex.iter().map(|k| k.as_ref().to_owned()));
        all.extend(p.key.iter().map(|k| k.to_string()));
        all.extend(p.host_key_certificates.iter().map(|k| k.to_string()));
        all.extend(p.cipher.iter().map(|c| c.as_ref().to_owned()));
        all.extend(p.mac.iter().map(|m| m.as_ref().to_owned()));
        all.extend(p.compression.iter().map(|c| c.as_ref().to_owned()));
        all
    }

    #[test]
    fn no_sha1_no_cbc_no_finite_field_dh_and_strict_kex_always() {
        for p in [preferred(false), preferred(true)] {
            let all = names(&p);
            for name in &all {
                let n = name.to_ascii_lowercase();
                assert!(!n.contains("sha1"), "{name}");
                assert!(!n.contains("cbc"), "{name}");
                assert!(!n.contains("diffie-hellman"), "{name}");
                assert!(!n.contains("zlib"), "{name}");
                assert!(!n.contains("rsa") && !n.contains("dss"), "{name}");
                assert!(!n.contains("-ctr"), "{name}");
            }
            assert!(all.iter().any(|n| n == "kex-strict-s-v00@openssh.com"));
            assert!(all.iter().any(|n| n == "kex-strict-c-v00@openssh.com"));
            assert_eq!(p.cipher.first(), Some(&cipher::AES_256_GCM));
            assert!(p
                .cipher
                .iter()
                .all(|c| c.as_ref().contains("gcm") || c.as_ref().contains("chacha20-poly1305")));
            assert_eq!(&p.compression[..], &[compression::NONE]);
        }
        assert!(preferred(false).host_key_certificates.is_empty());
        assert!(!preferred(true).host_key_certificates.is_empty());
    }

    #[test]
    fn the_server_takes_public_keys_only_and_caps_what_a_client_may_use() {
        use crate::gateway::testing::{certificate, key};
        use russh::keys::ssh_key::certificate::CertType;

        let host = key(70);
        let cert = certificate(
            &key(71),
            &host,
            CertType::Host,
            &["portcullis-gateway"],
            0,
            10,
        );
        let server = server(host, cert);
        assert_eq!(&server.methods[..], &[MethodKind::PublicKey]);
        assert_eq!(server.max_auth_attempts, MAX_AUTH_ATTEMPTS);
        assert_eq!(server.certificates.len(), 1);
        assert!(server.maximum_packet_size <= 65_535);
        assert!(server.window_size >= 2 << 20);
        assert!(server.nodelay);
        let client = client(false);
        assert_eq!(client.window_size, WINDOW_SIZE);
        assert!(client.nodelay);
        assert!(client.preferred.host_key_certificates.is_empty());
    }
}
