//! TLS: the one rustls crypto provider, the configurations built with it, and (in [`verify`])
//! the certificate verifiers of every role.
//!
//! Two kinds of configuration:
//! - the cluster link and the proxy: TLS 1.3 only, one ALPN, a verifier of this crate, the
//!   suites in the order this CPU runs fastest ([`client_config`], [`server_config`],
//!   [`tls13_suites`]);
//! - HTTPS (the API, the OpenID provider, a SIEM over syslog): the provider's default
//!   versions, root certificates checked the web's way ([`https_client_config`],
//!   [`https_server_config`]).

pub mod verify;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ResolvesServerCert;
use rustls::sign::SigningKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("a rustls crypto provider was already installed in this process")]
    ProviderInstalled,
    #[error("the key fingerprint {0:?} is not 64 hex characters (the SHA-256 of a public key)")]
    BadFingerprint(String),
    #[error("cannot parse the certificate: {0}")]
    BadCertificate(String),
    #[error("unusable private key: {0}")]
    BadKey(String),
}

/// The crypto provider (ring) every configuration is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider of the cluster link and the proxy (TLS 1.3 only): ring with its TLS 1.3
/// suites in the order this CPU runs fastest ([`tls13_suites`]).
fn tls13_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = tls13_suites(aes_in_hardware());
    Arc::new(provider)
}

/// The TLS 1.3 suites, fastest first: with AES and carry-less multiplication in hardware,
/// AES-128-GCM (ten AES rounds to AES-256's fourteen, the same GHASH: the bulk of a
/// brokered connection's cipher time), then AES-256-GCM, then ChaCha20-Poly1305; without
/// them, ChaCha20-Poly1305 first (software AES is slower and not constant-time). A client
/// offers them in this order and rustls' server follows the client's order, so the CLI's
/// CPU decides a proxy connection's suite.
pub fn tls13_suites(aes_in_hardware: bool) -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    if aes_in_hardware {
        vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
        ]
    }
}

/// Whether this CPU has AES and carry-less multiplication instructions (what AES-GCM needs
/// to be fast).
pub fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Installs [`provider`] as the process's default, once, at the top of `main`: what
/// libraries that build their own rustls configuration (sqlx, reqwest inside vaultrs) use.
pub fn install_process_default() -> Result<(), TlsError> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| TlsError::ProviderInstalled)
}

/// A TLS signing key for a PKCS#8 private key (Ed25519, ECDSA or RSA).
pub fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, TlsError> {
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadKey(e.to_string()))
}

/// The SubjectPublicKeyInfo (DER) of a certificate's key.
pub fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

/// How a TLS client authenticates itself.
pub enum ClientAuth {
    /// It presents no certificate.
    None,
    /// This chain and key.
    Cert {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
    /// Whatever the resolver offers.
    Resolver(Arc<dyn ResolvesClientCert>),
}

/// The certificate a TLS server presents.
pub enum ServerCert {
    /// This chain and key, for the life of the configuration.
    Single {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    },
    /// Whatever the resolver holds at each handshake (a certificate renewed in place).
    Resolver(Arc<dyn ResolvesServerCert>),
}

/// A TLS 1.3 client configuration: `server` decides whom to trust, `alpn` is the one
/// protocol offered.
pub fn client_config(
    server: Arc<dyn ServerCertVerifier>,
    auth: ClientAuth,
    alpn: &[u8],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(tls13_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(server);
    let mut config = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Cert { chain, key } => builder.with_client_auth_cert(chain, key)?,
        ClientAuth::Resolver(resolver) => builder.with_client_cert_resolver(resolver),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A TLS 1.3 server configuration: `clients` decides which client certificates it takes,
/// `alpn` is the one protocol spoken.
pub fn server_config(
    clients: Arc<dyn ClientCertVerifier>,
    cert: ServerCert,
    alpn: &[u8],
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(tls13_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(clients);
    let mut config = match cert {
        ServerCert::Single { chain, key } => builder.with_single_cert(chain, key)?,
        ServerCert::Resolver(resolver) => builder.with_cert_resolver(resolver),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// An HTTPS client configuration: the provider's default versions, servers verified against
/// `roots` (a CA file, or the web's roots).
pub fn https_client_config(
    roots: RootCertStore,
    auth: ClientAuth,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Cert { chain, key } => builder.with_client_auth_cert(chain, key)?,
        ClientAuth::Resolver(resolver) => builder.with_client_cert_resolver(resolver),
    })
}

/// An HTTPS client configuration whose server certificates `server` decides on (e.g.
/// [`verify::PinnedCertificate`]): the provider's default versions (TLS 1.2 and 1.3), no
/// client certificate.
pub fn https_client_config_verified_by(
    server: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(server)
        .with_no_client_auth())
}

/// An HTTPS server configuration: the provider's default versions, no client certificates.
pub fn https_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Like [`https_server_config`], presenting whatever `resolver` holds at each handshake (a
/// certificate the admin renews in place).
pub fn https_server_config_resolved(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[u8],
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}
