//! The service-account signer: reads the account's Ed25519 private key and makes the signed,
//! short-lived assertion ([`portcullis_proto::assertion`]) that `portcullis login
//! --service-account NAME --key FILE` exchanges for an API token.
//!
//! The key file is an unencrypted OpenSSH private key (`ssh-keygen -t ed25519 -N ''`) or a
//! PKCS#8 PEM (`openssl genpkey -algorithm ed25519`). Like ssh, the signer refuses a key file
//! that group or others may access: a CI runner's secret file must be 0600 (or 0400).
//! An encrypted key is refused with a message saying how to store it instead: a pipeline has
//! nobody to type a passphrase.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use portcullis_crypto::ed25519::SigningKey;
use portcullis_proto::api::{ServiceTokenRequest, ServiceTokenResponse};
use portcullis_proto::assertion::{self, AssertionClaims};
use portcullis_proto::keys::ed25519_fingerprint;
use zeroize::Zeroizing;

/// How long an assertion the CLI makes is valid: enough for one request and some clock skew,
/// far below the controller's limit.
pub(crate) const ASSERTION_LIFETIME_SECS: u64 = 60;
const _: () = assert!(ASSERTION_LIFETIME_SECS <= assertion::MAX_LIFETIME_SECS);

/// The largest key file read: an Ed25519 key in either format is well under 1 KiB.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// A service account's signing key and its fingerprint.
#[derive(Debug)]
pub(crate) struct ServiceKey {
    /// Its `Debug` prints `<secret>`.
    key: SigningKey,
    fingerprint: String,
}

impl ServiceKey {
    /// Reads the key at `path`, refusing a file that is not a regular file or that group or
    /// others may access.
    pub(crate) fn read(path: &Path) -> anyhow::Result<ServiceKey> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open the service account key {}", path.display()))?;
        // Checked on the open file, so the checked file is the file read.
        let meta = file
            .metadata()
            .with_context(|| format!("cannot inspect {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "the service account key {} is not a regular file",
                path.display()
            );
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "refusing the service account key {}: other users may access it (mode {mode:03o}); \
                 a private key must be readable by its owner only: `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {} as text", path.display()))?;
        ServiceKey::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses an unencrypted OpenSSH or PKCS#8 PEM Ed25519 private key.
    pub(crate) fn parse(text: &str) -> anyhow::Result<ServiceKey> {
        let text = text.trim();
        let key = if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            from_openssh(text)?
        } else if text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            bail!(
                "the key is encrypted, and a service account signs without anybody to type a \
                 passphrase: store it unencrypted (`openssl pkey -in KEY -out NEW`) in the CI \
                 system's secret store, readable by the job only"
            );
        } else if text.starts_with("-----BEGIN PRIVATE KEY-----") {
            from_pkcs8_pem(text)?
        } else {
            bail!(
                "not an Ed25519 private key: expected an OpenSSH private key \
                 (`ssh-keygen -t ed25519 -N ''`) or a PKCS#8 PEM (`openssl genpkey -algorithm ed25519`)"
            );
        };
        let public: [u8; 32] = key
            .public_key()
            .try_into()
            .map_err(|_| anyhow!("not an Ed25519 key"))?;
        Ok(ServiceKey {
            key,
            fingerprint: ed25519_fingerprint(&public),
        })
    }

    /// The key's fingerprint, as the controller and `portcullis users` show it.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A fresh assertion for `account` to the controller at `controller_url`, valid from `now`
    /// (unix seconds) for [`ASSERTION_LIFETIME_SECS`].
    pub(crate) fn assertion(
        &self,
        account: &str,
        controller_url: &str,
        now: u64,
    ) -> anyhow::Result<String> {
        let claims = AssertionClaims::new(
            account,
            &assertion::audience_for(controller_url),
            now,
            ASSERTION_LIFETIME_SECS,
        )?;
        Ok(assertion::sign(&claims, &self.key)?)
    }
}

fn from_openssh(text: &str) -> anyhow::Result<SigningKey> {
    let key = ssh_key::PrivateKey::from_openssh(text)
        .map_err(|e| anyhow!("not a readable OpenSSH private key ({e})"))?;
    if key.is_encrypted() {
        bail!(
            "the key is protected by a passphrase, and a service account signs without anybody \
             to type one: remove it (`ssh-keygen -p -N '' -f KEY` on a copy) and keep the file \
             in the CI system's secret store, readable by the job only"
        );
    }
    let Some(pair) = key.key_data().ed25519() else {
        bail!(
            "the key is {}, not Ed25519: service accounts sign with Ed25519 keys only \
             (`ssh-keygen -t ed25519 -N ''`)",
            key.algorithm()
        );
    };
    let seed = Zeroizing::new(pair.private.to_bytes());
    SigningKey::from_seed(&seed).map_err(|e| anyhow!("{e}"))
}

fn from_pkcs8_pem(text: &str) -> anyhow::Result<SigningKey> {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| anyhow!("not a readable PKCS#8 PEM private key ({e})"))?;
    SigningKey::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| {
        anyhow!(
            "the PKCS#8 key is not Ed25519: service accounts sign with Ed25519 keys only \
             (`openssl genpkey -algorithm ed25519`)"
        )
    })
}

#[cfg(test)]
mod tests;

/// What `login --service-account --json` prints: who logged in, until when, with which key,
/// where the token was saved (never the token).
#[derive(Debug, serde::Serialize)]
struct LoggedIn<'a> {
    user: &'a portcullis_proto::api::UserInfo,
    expires_at: u64,
    key_fingerprint: &'a str,
    token_file: &'a Path,
}

/// `portcullis login --service-account NAME --key FILE`: signs an assertion for the
/// controller at the address the client uses, exchanges it for an API token, saves the token
/// like any login and says who logged in and until when. Never prompts.
pub(super) async fn login(
    api: &super::super::http::ApiClient,
    args: &super::LoginArgs,
    token_path: &Path,
) -> anyhow::Result<i32> {
    let (Some(account), Some(key_file)) = (args.service_account.as_deref(), args.key.as_deref())
    else {
        bail!("--service-account NAME needs --key FILE (the account's Ed25519 private key)");
    };
    let key = ServiceKey::read(key_file)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("this machine's clock is before 1970")?
        .as_secs();
    let signed = key.assertion(account, api.addr(), now)?;
    let response: ServiceTokenResponse = api
        .post(
            "/v1/auth/service-token",
            &ServiceTokenRequest { assertion: signed },
        )
        .await
        .with_context(|| {
            format!(
                "the controller refused the service account {account} with key {}",
                key.fingerprint()
            )
        })?;
    super::save_token(token_path, &response.login.token)?;
    let user = &response.login.user;
    if args.json {
        crate::cli::output::print_json(&LoggedIn {
            user,
            expires_at: response.login.expires_at,
            key_fingerprint: &response.key_fingerprint,
            token_file: token_path,
        })?;
    } else {
        eprintln!(
            "Logged in as the service account {} (key {}); groups: {}; token expires {}; saved \
             to {}",
            portcullis_proto::text::escaped(&user.username),
            portcullis_proto::text::escaped(&response.key_fingerprint),
            if user.groups.is_empty() {
                "none".to_owned()
            } else {
                portcullis_proto::text::escaped(&user.groups.join(", ")).to_string()
            },
            crate::cli::output::time(response.login.expires_at),
            token_path.display()
        );
    }
    if args.client.token.is_some() {
        eprintln!("Note: PORTCULLIS_TOKEN (or --token) is set and overrides the saved token.");
    }
    Ok(0)
}
