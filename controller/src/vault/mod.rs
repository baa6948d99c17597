//! Vault (or OpenBao: the same API) as the source of per-session credentials, through the
//! `vaultrs` crate on rustls (the process installs the ring provider).
//!
//! The controller logs in with its own token (from a file or the environment) or AppRole and
//! keeps that token renewed. For each session it creates a child token through a token role
//! (orphan, `explicit_max_ttl` = the session's maximum, metadata naming the session), and uses
//! that token, not its own, to sign the SSH certificate and to read the target's leased
//! secrets, so that revoking the session's token by its accessor revokes every lease made for
//! the session. Tokens, secret ids and certificates never reach a log or an audit event: only
//! accessors, lease ids and serials do.

pub(crate) mod config;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rustify::endpoint::Endpoint as _;
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use vaultrs::api::EndpointResult;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::secret::{ExposeSecret as _, SecretString};
use config::{VaultAuth, VaultConfig};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("Vault at {address} is unreachable ({what}): {message}; the controller retries")]
    Unreachable {
        address: String,
        what: String,
        message: String,
    },
    #[error("Vault at {address} presented a TLS certificate this controller does not trust ({what}): {message}; set vault.ca_file to the CA that issued it")]
    Untrusted {
        address: String,
        what: String,
        message: String,
    },
    #[error("Vault refused {what} (HTTP {code}): {errors}")]
    Refused {
        what: String,
        code: u16,
        errors: String,
    },
    #[error("Vault login failed: {0}")]
    Login(String),
    #[error("Vault answered {what} unexpectedly: {message}")]
    Unexpected { what: String, message: String },
}

impl VaultError {
    /// True when Vault answered (so retrying the same request will not help).
    pub fn is_refusal(&self) -> bool {
        matches!(self, VaultError::Refused { .. })
    }
}

/// Whether `path` is a plausible Vault mount, role or secret path (no `..`, no leading or
/// trailing slash, a conservative alphabet), so that no request is steered elsewhere.
pub(crate) fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && !path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("..")
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// How long an SSH CA public key read from Vault is reused.
pub(crate) const CA_CACHE: Duration = Duration::from_secs(300);

/// A session's token: the secret itself stays in memory only while minting.
pub(crate) struct SessionToken {
    pub token: SecretString,
    pub accessor: String,
}

/// An SSH certificate signed by Vault.
pub(crate) struct SignedCertificate {
    pub certificate: String,
    pub serial: u64,
}

/// A leased secret read with a session's token.
pub(crate) struct Leased {
    pub lease_id: String,
    pub lease_duration: u64,
    pub data: serde_json::Value,
}

/// What one SSH certificate is for.
pub(crate) struct SignRequest<'a> {
    pub mount: &'a str,
    pub role: &'a str,
    pub public_key: &'a str,
    pub key_id: &'a str,
    pub principals: &'a [String],
    pub source_addresses: &'a [String],
    pub ttl_secs: u64,
}

/// A handle on Vault with the controller's own token; cheap to clone.
#[derive(Clone)]
pub(crate) struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    config: VaultConfig,
    client: RwLock<Arc<VaultClient>>,
    /// Public keys of the SSH CAs per mount (for the KRL and `GET /v1/ssh/ca`), with when
    /// they were read: re-read after [`CA_CACHE`] so that a CA rotated in Vault is picked up.
    ca_keys: RwLock<HashMap<String, (String, std::time::Instant)>>,
}

/// A generic request: any path, any JSON body, the whole response envelope back.
struct Raw {
    path: String,
    method: rustify::enums::RequestMethod,
    body: Option<serde_json::Value>,
}

impl rustify::endpoint::Endpoint for Raw {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        self.path.clone()
    }

    fn method(&self) -> rustify::enums::RequestMethod {
        self.method.clone()
    }

    fn body(&self) -> Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        self.body
            .as_ref()
            .map(|b| {
                serde_json::to_vec(b)
                    .map_err(|e| rustify::errors::ClientError::DataParseError { source: e.into() })
            })
            .transpose()
    }
}

impl Vault {
    /// Logs in (token or AppRole) and checks that the token works; also returns the token's
    /// TTL for [`Vault::keep_token_alive`].
    pub(crate) async fn connect(config: VaultConfig) -> Result<(Vault, Duration), VaultError> {
        let vault = Vault {
            inner: Arc::new(Inner {
                client: RwLock::new(Arc::new(build_client(&config, "")?)),
                config,
                ca_keys: RwLock::default(),
            }),
        };
        let ttl = vault.login().await?;
        Ok((vault, ttl))
    }

    pub(crate) fn config(&self) -> &VaultConfig {
        &self.inner.config
    }

    fn address(&self) -> &str {
        &self.inner.config.address
    }

    fn map_err(&self, what: &str, err: ClientError) -> VaultError {
        match err {
            ClientError::APIError { code, errors } => VaultError::Refused {
                what: what.to_owned(),
                code,
                errors: errors
                    .iter()
                    .map(|e| {
                        e.replace("1 error occurred:", "")
                            .replace(['\n', '\t'], " ")
                    })
                    .map(|e| e.trim().trim_start_matches('*').trim().to_owned())
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            ClientError::RestClientError { source } => match source {
                rustify::errors::ClientError::ServerResponseError { code, .. } => {
                    VaultError::Refused {
                        what: what.to_owned(),
                        code,
                        errors: "no error detail".into(),
                    }
                }
                other => {
                    let message = error_chain(&other);
                    if message.contains("invalid peer certificate") {
                        VaultError::Untrusted {
                            address: self.address().to_owned(),
                            what: what.to_owned(),
                            message,
                        }
                    } else {
                        VaultError::Unreachable {
                            address: self.address().to_owned(),
                            what: what.to_owned(),
                            message,
                        }
                    }
                }
            },
            other => VaultError::Unexpected {
                what: what.to_owned(),
                message: other.to_string(),
            },
        }
    }

    /// Logs in anew (at start, and when the token can no longer be renewed). Returns the
    /// token's TTL (zero: it does not expire). When Vault is unreachable the controller still
    /// starts (pending revocations wait in the store): a warning is logged and the login is
    /// tried again within seconds. A refusal (a bad token or secret id) is an error.
    pub(crate) async fn login(&self) -> Result<Duration, VaultError> {
        const RETRY: Duration = Duration::from_secs(5);
        let config = &self.inner.config;
        let (token, ttl) = match &config.auth {
            VaultAuth::TokenFile(path) => {
                warn_if_readable_by_others(path);
                let text = std::fs::read_to_string(path).map_err(|e| {
                    VaultError::Login(format!(
                        "cannot read the Vault token file {}: {e}",
                        path.display()
                    ))
                })?;
                (SecretString::from(text.trim().to_owned()), None)
            }
            VaultAuth::TokenEnv(name) => {
                let token = std::env::var(name).map_err(|_| {
                    VaultError::Login(format!("the environment variable {name} is not set"))
                })?;
                (SecretString::from(token.trim().to_owned()), None)
            }
            VaultAuth::AppRole {
                mount,
                role_id,
                secret_id_file,
            } => {
                warn_if_readable_by_others(secret_id_file);
                let secret_id = std::fs::read_to_string(secret_id_file).map_err(|e| {
                    VaultError::Login(format!(
                        "cannot read the AppRole secret-id file {}: {e}",
                        secret_id_file.display()
                    ))
                })?;
                let anonymous = build_client(config, "")?;
                let auth =
                    vaultrs::auth::approle::login(&anonymous, mount, role_id, secret_id.trim())
                        .await
                        .map_err(|e| self.map_err("the AppRole login", e));
                match auth {
                    Ok(auth) => (
                        SecretString::from(auth.client_token),
                        Some(Duration::from_secs(auth.lease_duration)),
                    ),
                    Err(err @ (VaultError::Unreachable { .. } | VaultError::Untrusted { .. })) => {
                        tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot log in to Vault yet; retrying in 5 s");
                        return Ok(RETRY);
                    }
                    Err(VaultError::Refused { errors, .. }) => {
                        return Err(VaultError::Login(format!(
                            "Vault refused the AppRole login ({errors}); check approle_role_id and the secret-id file"
                        )))
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        let client = Arc::new(build_client(config, token.expose_secret())?);
        *self.inner.client.write().await = client.clone();
        if let Some(ttl) = ttl {
            return Ok(ttl);
        }
        match vaultrs::token::lookup_self(client.as_ref()).await {
            Ok(me) => Ok(Duration::from_secs(me.ttl)),
            Err(err) => match self.map_err("a lookup of the controller's token", err) {
                VaultError::Refused { errors, .. } => Err(VaultError::Login(format!(
                    "Vault does not accept the controller's token ({errors}); check the token file or variable"
                ))),
                err @ (VaultError::Unreachable { .. } | VaultError::Untrusted { .. }) => {
                    tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot check the controller's Vault token yet; retrying in 5 s");
                    Ok(RETRY)
                }
                other => Err(other),
            },
        }
    }

    async fn client(&self) -> Arc<VaultClient> {
        self.inner.client.read().await.clone()
    }

    /// A client that acts with `token` instead of the controller's own.
    async fn as_token(&self, token: &SecretString) -> VaultClient {
        let base = self.client().await;
        let mut client = VaultClient {
            http: rustify::clients::reqwest::Client::new(&base.http.base, base.http.http.clone()),
            middle: base.middle.clone(),
            settings: base.settings.clone(),
        };
        client.set_token(token.expose_secret());
        client
    }

    async fn raw(
        &self,
        client: &VaultClient,
        what: &str,
        method: rustify::enums::RequestMethod,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<EndpointResult<serde_json::Value>, VaultError> {
        let endpoint = Raw {
            path: path.to_owned(),
            method,
            body,
        };
        let response = endpoint
            .with_middleware(client.middle())
            .exec(client.http())
            .await
            .map_err(|e| self.map_err(what, rest_error(e)))?;
        response
            .wrap::<EndpointResult<serde_json::Value>>()
            .map_err(|e| VaultError::Unexpected {
                what: what.to_owned(),
                message: e.to_string(),
            })
    }

    /// Creates a session's token through the configured token role. It starts with a short
    /// TTL (`orphan_window`): if the controller dies before the accessor is stored, the token
    /// expires on its own; [`Vault::extend`] then gives it the session's lifetime.
    pub(crate) async fn create_session_token(
        &self,
        session_id: &str,
        user: &str,
        target: &str,
        orphan_window: Duration,
        max_ttl: Duration,
    ) -> Result<SessionToken, VaultError> {
        let role = &self.inner.config.token_role;
        let body = serde_json::json!({
            "display_name": format!("portcullis-{session_id}"),
            "meta": {"portcullis_session": session_id, "portcullis_user": user, "portcullis_target": target},
            "ttl": format!("{}s", orphan_window.as_secs().max(1)),
            "explicit_max_ttl": format!("{}s", max_ttl.as_secs().max(1)),
            "renewable": true,
        });
        let client = self.client().await;
        let what = format!("a session token from token role {role:?}");
        let result = self
            .raw(
                &client,
                &what,
                rustify::enums::RequestMethod::POST,
                &format!("auth/token/create/{role}"),
                Some(body),
            )
            .await?;
        let auth = result.auth.ok_or_else(|| VaultError::Unexpected {
            what: what.clone(),
            message: "no auth block in the answer".into(),
        })?;
        Ok(SessionToken {
            token: SecretString::from(auth.client_token),
            accessor: auth.accessor,
        })
    }

    /// Gives a session's token its full lifetime (bounded by its `explicit_max_ttl`).
    pub(crate) async fn extend(&self, token: &SecretString, ttl: Duration) -> Result<(), VaultError> {
        let client = self.as_token(token).await;
        vaultrs::token::renew_self(&client, Some(&format!("{}s", ttl.as_secs().max(1))))
            .await
            .map_err(|e| self.map_err("a renewal of the session token", e))?;
        Ok(())
    }

    /// Signs an SSH user certificate with the session's token.
    pub(crate) async fn sign_ssh(
        &self,
        token: &SecretString,
        req: &SignRequest<'_>,
    ) -> Result<SignedCertificate, VaultError> {
        let client = self.as_token(token).await;
        let mut body = serde_json::json!({
            "public_key": req.public_key.trim(),
            "cert_type": "user",
            "key_id": req.key_id,
            "valid_principals": req.principals.join(","),
            "ttl": format!("{}s", req.ttl_secs.max(1)),
        });
        if !req.source_addresses.is_empty() {
            body["critical_options"] =
                serde_json::json!({"source-address": req.source_addresses.join(",")});
        }
        let what = format!(
            "an SSH certificate from role {:?} on mount {:?}",
            req.role, req.mount
        );
        let result = self
            .raw(
                &client,
                &what,
                rustify::enums::RequestMethod::POST,
                &format!("{}/sign/{}", req.mount, req.role),
                Some(body),
            )
            .await?;
        let data: SignData = parse_data(result.data, &what)?;
        let serial =
            u64::from_str_radix(&data.serial_number.replace([':', '-'], ""), 16).map_err(|_| {
                VaultError::Unexpected {
                    what: what.clone(),
                    message: format!("serial {:?} is not hexadecimal", data.serial_number),
                }
            })?;
        Ok(SignedCertificate {
            certificate: data.signed_key.trim().to_owned(),
            serial,
        })
    }

    /// Reads a (leased) secret with the session's token.
    pub(crate) async fn read_leased(
        &self,
        token: &SecretString,
        path: &str,
    ) -> Result<Leased, VaultError> {
        let client = self.as_token(token).await;
        let what = format!("a read of {path:?}");
        let result = self
            .raw(
                &client,
                &what,
                rustify::enums::RequestMethod::GET,
                path,
                None,
            )
            .await?;
        Ok(Leased {
            lease_id: result.lease_id,
            lease_duration: u64::from(result.lease_duration),
            data: result.data.unwrap_or(serde_json::Value::Null),
        })
    }

    /// Revokes a token (and with it every lease made under it) by its accessor. Vault answers
    /// success for an accessor it no longer knows: the token is gone either way.
    pub(crate) async fn revoke_accessor(&self, accessor: &str) -> Result<(), VaultError> {
        let client = self.client().await;
        vaultrs::token::revoke_accessor(client.as_ref(), accessor)
            .await
            .map_err(|e| self.map_err("a token revocation by accessor", e))
    }

    /// The SSH CA public key of `mount` (OpenSSH line), cached for [`CA_CACHE`].
    pub(crate) async fn ssh_ca_public_key(&self, mount: &str) -> Result<String, VaultError> {
        if let Some((key, at)) = self.inner.ca_keys.read().await.get(mount) {
            if at.elapsed() < CA_CACHE {
                return Ok(key.clone());
            }
        }
        let client = self.client().await;
        let what = format!("the SSH CA public key of mount {mount:?}");
        let result = self
            .raw(
                &client,
                &what,
                rustify::enums::RequestMethod::GET,
                &format!("{mount}/config/ca"),
                None,
            )
            .await?;
        let data: CaData = parse_data(result.data, &what)?;
        let key = data.public_key.trim().to_owned();
        self.inner
            .ca_keys
            .write()
            .await
            .insert(mount.to_owned(), (key.clone(), std::time::Instant::now()));
        Ok(key)
    }

    /// Keeps the controller's own token alive: renews it at two thirds of its TTL, and logs
    /// in again (AppRole, or a re-read token file) when renewal fails or the token nears its
    /// maximum. A token without a TTL (root, periodic without expiry) needs nothing.
    pub(crate) async fn keep_token_alive(self, mut ttl: Duration, shutdown: CancellationToken) {
        loop {
            let wait = if ttl.is_zero() {
                Duration::from_secs(300)
            } else {
                (ttl * 2 / 3).max(Duration::from_secs(1))
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if ttl.is_zero() {
                // Re-check: a token file may have been replaced by one that expires.
                if let Ok(me) = vaultrs::token::lookup_self(self.client().await.as_ref()).await {
                    ttl = Duration::from_secs(me.ttl);
                }
                continue;
            }
            let renewed = vaultrs::token::renew_self(self.client().await.as_ref(), None).await;
            match renewed {
                Ok(auth) if auth.lease_duration * 3 >= wait.as_secs() * 2 => {
                    ttl = Duration::from_secs(auth.lease_duration);
                    tracing::debug!(ttl_secs = auth.lease_duration, "renewed the Vault token");
                }
                other => {
                    if let Err(err) = other {
                        let err = self.map_err("a renewal of the controller's token", err);
                        tracing::warn!(error = %portcullis_proto::text::escaped(&err), "cannot renew the controller's Vault token; logging in again");
                    }
                    match self.login().await {
                        Ok(new_ttl) => ttl = new_ttl,
                        Err(err) => {
                            tracing::error!(error = %portcullis_proto::text::escaped(&err), "cannot log in to Vault; retrying in 5 s");
                            ttl = Duration::from_secs(8);
                        }
                    }
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct SignData {
    serial_number: String,
    signed_key: String,
}

#[derive(serde::Deserialize)]
struct CaData {
    public_key: String,
}

fn parse_data<T: DeserializeOwned>(
    data: Option<serde_json::Value>,
    what: &str,
) -> Result<T, VaultError> {
    let data = data.ok_or_else(|| VaultError::Unexpected {
        what: what.to_owned(),
        message: "no data in the answer".into(),
    })?;
    serde_json::from_value(data).map_err(|e| VaultError::Unexpected {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// Vault's error envelope, like vaultrs does for its own endpoints.
fn rest_error(e: rustify::errors::ClientError) -> ClientError {
    if let rustify::errors::ClientError::ServerResponseError {
        code,
        content: Some(content),
    } = &e
    {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<String>,
        }
        if let Ok(errs) = serde_json::from_str::<Errors>(content) {
            return ClientError::APIError {
                code: *code,
                errors: errs.errors,
            };
        }
    }
    ClientError::RestClientError { source: e }
}

/// Credential files should be 0600 (or stricter): say so when they are not.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "a Vault credential file is readable by others; chmod 600 it"
            );
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn build_client(config: &VaultConfig, token: &str) -> Result<VaultClient, VaultError> {
    let mut settings = VaultClientSettingsBuilder::default();
    if url_ok(&config.address) {
        settings.address(&config.address);
    } else {
        return Err(VaultError::Login(format!(
            "vault.address {:?} is not a URL",
            config.address
        )));
    }
    settings
        .token(token)
        .timeout(Some(config.request_timeout))
        .verify(true)
        .ca_certs(
            config
                .ca_file
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        );
    let settings = settings
        .build()
        .map_err(|e| VaultError::Login(format!("bad Vault client settings: {e}")))?;
    VaultClient::new(settings)
        .map_err(|e| VaultError::Login(format!("cannot set up the Vault client: {e}")))
}

/// The builder's `address` setter panics on a bad URL: check first.
fn url_ok(address: &str) -> bool {
    let Some((scheme, rest)) = address.split_once("://") else {
        return false;
    };
    (scheme == "http" || scheme == "https")
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]/_".contains(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_are_checked() {
        assert!(super::valid_path("database/creds/readonly"));
        assert!(super::valid_path("ssh-client-signer"));
        assert!(!super::valid_path("../sys/raw"));
        assert!(!super::valid_path("/ssh"));
        assert!(!super::valid_path("ssh/"));
        assert!(!super::valid_path("a b"));
        assert!(!super::valid_path("a?b=c"));
        assert!(super::url_ok("https://vault.internal:8200"));
        assert!(!super::url_ok("vault.internal:8200"));
    }
}
