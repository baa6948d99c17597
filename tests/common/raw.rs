//! A hand-built proxy client, to present crafted grants and keys to a real worker: what the
//! CLI would never send.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;

use portcullis_proto::proxy::{self, ClientHello, WorkerReply};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

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

/// Pins the worker's key by fingerprint and verifies its handshake signature.
#[derive(Debug)]
struct Pinned(String);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let spki = webpki::EndEntityCert::try_from(ee)
            .map_err(|_| rustls::Error::General("bad cert".into()))?
            .subject_public_key_info();
        if portcullis_proto::keys::spki_fingerprint(spki.as_ref()) == self.0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "worker key does not match the pin".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls12".into()))
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(worker_fingerprint.to_owned())));
    let mut config = match auth {
        Auth::None => builder.with_no_client_auth(),
        Auth::Key(k) => builder
            .with_client_auth_cert(vec![k.cert.clone()], k.private())
            .unwrap(),
        Auth::Forged { cert_of, signer } => {
            let signing =
                rustls::crypto::ring::sign::any_supported_type(&signer.private()).unwrap();
            let certified = rustls::sign::CertifiedKey::new(vec![cert_of.cert.clone()], signing);
            builder.with_client_cert_resolver(Arc::new(Always(Arc::new(certified))))
        }
    };
    config.alpn_protocols = vec![proxy::ALPN.to_vec()];
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
