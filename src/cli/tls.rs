//! Process-wide TLS set-up shared by every subcommand.

/// Installs ring as the process's one rustls crypto provider.
pub fn install_crypto_provider() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))
}
