//! Process-wide TLS set-up shared by every subcommand.

/// Installs the one rustls crypto provider (portcullis-crypto's) as the process's default.
pub(crate) fn install_crypto_provider() -> anyhow::Result<()> {
    Ok(portcullis_crypto::tls::install_process_default()?)
}

#[cfg(test)]
mod tests {
    /// The dependency tree offers more than one rustls provider unless features are pinned;
    /// with ours installed explicitly, building configs must not panic.
    #[test]
    fn one_provider_is_installed_and_configs_build() {
        let _ = super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        let server = rustls::ServerConfig::builder().with_no_client_auth();
        drop(server);
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert!(!client.alpn_protocols.iter().any(|p| p.is_empty()));
        // A second install is refused: exactly one provider.
        assert!(super::install_crypto_provider().is_err());
    }
}
