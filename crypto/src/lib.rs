//! Portcullis's one home for cryptography. Every other crate of the workspace reaches ring
//! through this one, and only for what it needs:
//!
//! - [`tls`] the rustls crypto provider (ring), the TLS configurations (1.3 only for the
//!   cluster link and the proxy; the provider's defaults for HTTPS), and the certificate
//!   verifiers of every role: a pinned key, any key whose holder proves it, and a pinned CA;
//! - [`digest`] SHA-256;
//! - [`hmac`] HMAC-SHA-1, for one-time passwords (HOTP/TOTP) only;
//! - [`random`] bytes from the operating system's generator;
//! - [`ed25519`] Ed25519 keys, signatures and their verification;
//! - [`aead`] AES-256-GCM sealing under a key held in memory.
//!
//! Invariants:
//! - This is the only crate that names `ring` or `rustls::crypto::ring`; `clippy.toml`
//!   forbids their entry points elsewhere, and `tests/crypto_home.rs` fails on a source file
//!   outside this crate that names them.
//! - Exactly one provider: [`tls::provider`] is the provider every configuration here is
//!   built with, and the one `main` installs as the process default.
//! - "Chains to the CA" is decided in one place ([`tls::verify`]), with the provider's
//!   signature algorithms, for every side and role.
//! - No I/O but the system's random generator; no clock (verifiers take rustls's `now`).

#![forbid(unsafe_code)]
// This crate is where the methods clippy.toml forbids elsewhere are meant to be called.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod aead;
pub mod digest;
pub mod ed25519;
pub mod hmac;
pub mod random;
pub mod tls;
