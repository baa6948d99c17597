//! The gateway's SSH server, hardened as in production, fed arbitrary bytes as the client's
//! side of a connection: the fuzz target `gateway_ssh` (see `fuzz/README.md`). Before the
//! key exchange everything the client sends is plain (version line, `KEXINIT`, the key
//! exchange's first message), which is what a stranger reaches without any key; after it,
//! the input cannot be read (it would have to be encrypted), so the fuzzer explores the
//! transport's parsing and negotiation with the gateway's settings.

use std::time::Duration;

use portcullis_policy::SshRights;
use portcullis_proto::gateway::HOST_ALIAS;
use portcullis_proto::grant::GatewayClaims;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::PrivateKey;
use russh::server::{Auth, PublicKeyOffer, VerifiedPublicKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::auth::Allowed;
use super::config;

/// Logins are decided as the gateway decides them; every channel is refused (russh's
/// default), since a fuzzer never gets that far.
struct Refuser {
    allowed: Allowed,
}

impl russh::server::Handler for Refuser {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.allowed.check(user, offer.public_key) {
            Ok(()) => Auth::Accept,
            Err(_) => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        assert!(
            self.allowed.check(user, key.public_key).is_err(),
            "a fuzzer's input proved possession of the session's key"
        );
        Ok(Auth::reject())
    }
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// Runs one gateway server over an in-memory stream, with `data` as all the client sends;
/// bounded in time. Returns what the server sent.
pub(crate) fn ssh_input(data: &[u8]) -> Vec<u8> {
    let mut said = Vec::new();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return said;
    };
    let (host, ca, session) = (key(1), key(2), key(3));
    let Ok(mut builder) =
        Builder::new([0u8; 16], host.public_key().key_data().clone(), 0, u64::MAX)
    else {
        return said;
    };
    if builder.cert_type(CertType::Host).is_err() || builder.valid_principal(HOST_ALIAS).is_err() {
        return said;
    }
    let Ok(certificate) = builder.sign(&ca) else {
        return said;
    };
    let Ok(public) = session.public_key().to_openssh() else {
        return said;
    };
    let claims = GatewayClaims {
        key: public,
        logins: vec!["alice".into()],
        rights: SshRights::default(),
        rec: None,
    };
    let Ok(allowed) = Allowed::from_claims(&claims) else {
        return said;
    };
    let config = config::server(host, certificate);
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let serve = async {
            if let Ok(session) =
                russh::server::run_stream(config, server, Refuser { allowed }).await
            {
                let _ = session.await;
            }
        };
        let feed = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            // Read what the server says until it closes, so that it never blocks writing.
            let _ = client.read_to_end(&mut said).await;
        };
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { tokio::join!(serve, feed) }).await;
    });
    said
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_harness_reaches_the_key_exchange() {
        let hello = include_bytes!("../../../fuzz/corpus/gateway_ssh/openssh-hello-kexinit");
        let said = super::ssh_input(hello);
        assert!(
            said.starts_with(b"SSH-2.0-portcullis-gateway\r\n"),
            "{said:?}"
        );
        // The server's KEXINIT follows its version line.
        assert!(said.len() > 100, "{}", said.len());
        // Garbage is answered with the version line and nothing else breaks.
        assert!(super::ssh_input(b"GET / HTTP/1.1\r\n\r\n").starts_with(b"SSH-2.0-"));
    }
}
