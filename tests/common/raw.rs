//! A hand-built proxy client, to present crafted grants and keys to a real worker: what the
//! CLI would never send.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;

use portcullis_crypto::tls::{self, verify::PinnedKey, ClientAuth};
use portcullis_proto::proxy::{self, ClientHello, WorkerReply};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::SignatureScheme;

/// A client key pair with its self-signed certificate.
pub(crate) struct ClientKey {
    pub key: rcgen::KeyPair,
    pub cert: CertificateDer<'static>,
}

impl ClientKey {
    pub(crate) fn generate() -> ClientKey {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["portcullis-client".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        ClientKey {
            cert: cert.der().clone(),
            key,
        }
    }

    pub(crate) fn spki(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    pub(crate) fn fingerprint(&self) -> String {
        portcullis_proto::keys::spki_fingerprint(&self.spki())
    }

    fn private(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// Offers one certified key, whatever it is.
#[derive(Debug)]
struct Always(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Always {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// How the client authenticates in the TLS handshake.
pub(crate) enum Auth<'a> {
    /// No client certificate at all.
    None,
    /// This key and its certificate.
    Key(&'a ClientKey),
    /// A certificate whose key the client does not hold (signs with `signer` instead).
    Forged {
        cert_of: &'a ClientKey,
        signer: &'a ClientKey,
    },
}

/// Connects, presents `grant`, and returns the worker's reply, or the TLS/handshake error.
pub(crate) fn present(
    worker_addr: &str,
    worker_fingerprint: &str,
    auth: Auth<'_>,
    grant: &str,
) -> Result<
    (
        WorkerReply,
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    ),
    String,
> {
    let hello = serde_json::to_value(ClientHello {
        protocol_version: portcullis_proto::PROTOCOL_VERSION,
        grant: grant.to_owned(),
    })
    .unwrap();
    let (reply, tls) = present_hello(worker_addr, worker_fingerprint, auth, &hello)?;
    let reply = serde_json::from_value(reply).map_err(|e| e.to_string())?;
    Ok((reply, tls))
}

/// Connects, sends `hello` as it is (any JSON), and returns the worker's reply as JSON.
pub(crate) fn present_hello(
    worker_addr: &str,
    worker_fingerprint: &str,
    auth: Auth<'_>,
    hello: &serde_json::Value,
) -> Result<
    (
        serde_json::Value,
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    ),
    String,
> {
    let mut tls = connect(worker_addr, worker_fingerprint, auth)?;
    let hello = proxy::encode_frame(hello).unwrap();
    tls.write_all(&hello).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut body).map_err(|e| e.to_string())?;
    let reply = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok((reply, tls))
}

/// A TLS connection to a worker's proxy port, before the hello.
pub(crate) fn connect(
    worker_addr: &str,
    worker_fingerprint: &str,
    auth: Auth<'_>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    // The worker's key pinned and its handshake signature verified, as the CLI does.
    let worker = Arc::new(PinnedKey::new(worker_fingerprint).map_err(|e| e.to_string())?);
    let auth = match auth {
        Auth::None => ClientAuth::None,
        Auth::Key(k) => ClientAuth::Cert {
            chain: vec![k.cert.clone()],
            key: k.private(),
        },
        Auth::Forged { cert_of, signer } => {
            let signing = tls::signing_key(&signer.private()).unwrap();
            let certified = rustls::sign::CertifiedKey::new(vec![cert_of.cert.clone()], signing);
            ClientAuth::Resolver(Arc::new(Always(Arc::new(certified))))
        }
    };
    let config = tls::client_config(worker, auth, proxy::ALPN).unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("portcullis-worker").unwrap(),
    )
    .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(worker_addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

/// A fresh Ed25519 public key as DER SubjectPublicKeyInfo, base64url: what `connect` sends
/// as authorize-session's `client_public_key`.
pub(crate) fn client_public_key() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))
}
