//! The controller as an OpenID Connect relying party (the `openidconnect` crate over the
//! workspace's rustls/ring reqwest): discovery, the authorization code flow with PKCE, state
//! and nonce, the device authorization grant, and ID token verification into an
//! [`OidcIdentity`]. The login state machine around it (pending logins in the store, the
//! binding to the CLI that started a login) lives in `api/oidc.rs`.

pub(crate) mod claims;
pub(crate) mod config;
mod refresh;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, Scope, SignatureVerificationError, TokenResponse as _,
};
use serde::{Deserialize, Serialize};

pub(crate) use claims::OidcIdentity;
use config::{ClientSecretSource, OidcConfig};

use crate::secret::{ExposeSecret as _, SecretString};

/// How long discovery metadata (and the JWKS in it) is reused.
const METADATA_TTL: Duration = Duration::from_secs(300);
/// Clock skew tolerated on `iat`.
const SKEW_SECS: i64 = 60;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot reach the OpenID provider ({what}): {cause}; check that it is up and that auth.oidc.issuer is right")]
    Unreachable { what: String, cause: String },
    #[error("the OpenID provider refused: {0}")]
    Refused(String),
    #[error("the ID token was rejected: {0}")]
    InvalidToken(String),
    #[error("{0}")]
    Claims(String),
    #[error("OIDC is misconfigured: {0}")]
    Config(String),
}

/// The discovery fields beyond the core ones that Portcullis reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_authorization_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Only asymmetric signatures: `none` and HMAC (where the "key" would be the client secret,
/// the classic key-confusion attack) are refused.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// A started device authorization (RFC 8628).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// The outcome of one device token poll.
#[derive(Debug)]
pub(crate) enum DevicePoll {
    Pending,
    SlowDown,
    Done(Box<OidcIdentity>),
}

/// The relying party of one provider; shared by every request of a controller.
pub(crate) struct Relying {
    config: OidcConfig,
    secret: SecretString,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Metadata>)>>,
    /// When an unknown key id last forced a re-fetch (they are rate limited).
    forced_refresh: std::sync::Mutex<refresh::RefreshLimit>,
    /// The metadata's age, the re-fetch limit and the `iat` check.
    clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for Relying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relying")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// The error chain in one line (the innermost cause names the real problem).
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(next) = current {
        let text = next.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = next.source();
    }
    out
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Relying {
    /// Reads the client secret and sets up the HTTP client (rustls with ring; the public web
    /// roots, or only `ca_file` when set; no redirects followed).
    pub(crate) fn new(config: OidcConfig, clock: crate::clock::SharedClock) -> Result<Relying, OidcError> {
        let secret = match &config.client_secret {
            ClientSecretSource::Env(secret) => secret.clone(),
            ClientSecretSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    OidcError::Config(format!(
                        "cannot read auth.oidc.client_secret_file {}: {e}",
                        path.display()
                    ))
                })?;
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    if let Ok(meta) = std::fs::metadata(path) {
                        if meta.permissions().mode() & 0o077 != 0 {
                            tracing::warn!(
                                file = %path.display(),
                                "auth.oidc.client_secret_file is readable by other users: chmod 600 it"
                            );
                        }
                    }
                }
                let text = text.trim().to_owned();
                if text.is_empty() {
                    return Err(OidcError::Config(format!(
                        "auth.oidc.client_secret_file {} is empty",
                        path.display()
                    )));
                }
                SecretString::from(text)
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_file {
            Some(path) => {
                use rustls_pki_types::pem::PemObject as _;
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                    OidcError::Config(format!(
                        "cannot read auth.oidc.ca_file {}: {e}",
                        path.display()
                    ))
                })?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        OidcError::Config(format!("auth.oidc.ca_file {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        OidcError::Config(format!("auth.oidc.ca_file {}: {e}", path.display()))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| OidcError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(HTTP_TIMEOUT)
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("portcullis-controller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OidcError::Config(format!("cannot set up the HTTPS client: {e}")))?;
        Ok(Relying {
            config,
            secret,
            http,
            cached: tokio::sync::Mutex::new(None),
            forced_refresh: std::sync::Mutex::default(),
            clock,
        })
    }

    pub(crate) fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The provider's discovery metadata and keys, cached for [`METADATA_TTL`]; `force`
    /// fetches them again.
    async fn metadata(&self, force: bool) -> Result<Arc<Metadata>, OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, md)) = cached.as_ref() {
            if !force && self.clock.instant().duration_since(*at) < METADATA_TTL {
                return Ok(md.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Config(format!("auth.oidc.issuer: {e}")))?;
        let md = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                let text = chain(&e);
                if matches!(e, openidconnect::DiscoveryError::Request(_)) {
                    OidcError::Unreachable {
                        what: format!("discovery at {}", self.config.issuer),
                        cause: text,
                    }
                } else {
                    OidcError::Refused(format!(
                        "its discovery document at {}/.well-known/openid-configuration is unusable: {text}",
                        self.config.issuer.trim_end_matches('/')
                    ))
                }
            })?;
        let md = Arc::new(md);
        *cached = Some((self.clock.instant(), md.clone()));
        Ok(md)
    }

    fn client(
        &self,
        md: &Metadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Config(format!("auth.oidc.redirect_url: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            md.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// A new PKCE pair: the challenge goes to the provider, the verifier stays (sealed) in the
    /// store until the callback.
    pub(crate) fn pkce() -> (PkceCodeChallenge, String) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        (challenge, verifier.secret().clone())
    }

    /// The provider's authorization URL for a login with this state, nonce and PKCE challenge.
    pub(crate) async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        challenge: PkceCodeChallenge,
    ) -> Result<String, OidcError> {
        let md = self.metadata(false).await?;
        let client = self.client(&md)?;
        let state = state.to_owned();
        let nonce = nonce.to_owned();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    /// Redeems an authorization code (with the PKCE verifier) and verifies the ID token.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: String,
        nonce: &str,
    ) -> Result<OidcIdentity, OidcError> {
        let md = self.metadata(false).await?;
        let client = self.client(&md)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Refused(format!("its metadata has no token endpoint ({e})")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e))?;
        let id_token = response.id_token().ok_or_else(|| {
            OidcError::InvalidToken(
                "the token response has no id_token (is `openid` among the scopes?)".into(),
            )
        })?;
        let _ = response.access_token();
        self.verify(md, id_token, Some(nonce)).await
    }

    fn token_error<RE: std::error::Error + 'static>(
        &self,
        err: openidconnect::RequestTokenError<
            RE,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >,
    ) -> OidcError {
        match err {
            openidconnect::RequestTokenError::ServerResponse(e) => OidcError::Refused(format!(
                "token request: {}{}",
                e.error().as_ref(),
                e.error_description()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
            openidconnect::RequestTokenError::Request(e) => OidcError::Unreachable {
                what: "token endpoint".into(),
                cause: chain(&e),
            },
            other => OidcError::Refused(format!("token request: {}", chain(&other))),
        }
    }

    /// Verifies an ID token: signature against the provider's JWKS (re-fetched once, rate
    /// limited, when the key id is unknown: the provider may have rotated keys), `iss`, `aud`,
    /// `azp`, `exp`, `iat` with [`SKEW_SECS`] of skew, and the nonce when there is one. Then
    /// reads the identity from the verified claims.
    async fn verify(
        &self,
        md: Arc<Metadata>,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<OidcIdentity, OidcError> {
        let mut result = self.check(&md, id_token, nonce);
        let unknown_key = matches!(
            result,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey
            ))
        );
        if unknown_key && self.may_force_refresh() {
            tracing::info!(
                issuer = %self.config.issuer,
                "ID token signed with an unknown key id: fetching the provider's keys again"
            );
            let fresh = self.metadata(true).await?;
            result = self.check(&fresh, id_token, nonce);
        }
        result.map_err(describe)?;
        let payload = payload_of(id_token)?;
        let rules = claims::ClaimRules {
            groups_claim: &self.config.groups_claim,
            group_match: self.config.group_match,
            username_claim: &self.config.username_claim,
            mfa: &self.config.mfa,
        };
        claims::identity(md.issuer().as_str(), &payload, &rules).map_err(OidcError::Claims)
    }

    /// Whether an unknown key id may re-fetch the keys now (see [`refresh`]).
    fn may_force_refresh(&self) -> bool {
        let Ok(mut limit) = self.forced_refresh.lock() else {
            return false;
        };
        limit.allow(self.clock.instant())
    }

    fn check(
        &self,
        md: &Metadata,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<(), ClaimsVerificationError> {
        let client = self
            .client(md)
            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?;
        let max_age =
            i64::try_from(self.config.login_timeout.as_secs()).unwrap_or(3600) + SKEW_SECS;
        let now = crate::clock::to_i64(self.clock.unix_secs());
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(ALLOWED_ALGS)
            .set_issue_time_verifier_fn(move |iat| {
                let iat = iat.timestamp();
                if iat > now + SKEW_SECS {
                    Err(format!("issued {} s in the future", iat - now))
                } else if iat < now - max_age {
                    Err(format!(
                        "issued {} s ago, too long for a fresh login",
                        now - iat
                    ))
                } else {
                    Ok(())
                }
            });
        match nonce {
            Some(n) => id_token
                .claims(&verifier, &Nonce::new(n.to_owned()))
                .map(drop),
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(drop),
        }
    }

    /// Starts a device authorization at the provider (RFC 8628 section 3.1).
    pub(crate) async fn device_start(&self) -> Result<DeviceAuthorization, OidcError> {
        let md = self.metadata(false).await?;
        let endpoint = md
            .additional_metadata()
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                OidcError::Refused(
                    "it publishes no device_authorization_endpoint: it does not offer the device flow"
                        .into(),
                )
            })?;
        let scope = self.config.scopes.join(" ");
        let response = self
            .http
            .post(&endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.secret.expose_secret())),
            )
            .form(&[
                ("client_id", self.config.client_id.as_str()),
                ("scope", &scope),
            ])
            .send()
            .await
            .map_err(|e| OidcError::Unreachable {
                what: "device authorization endpoint".into(),
                cause: chain(&e),
            })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(OidcError::Refused(format!(
                "device authorization: {status} {}",
                oauth_error(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            OidcError::Refused(format!("device authorization: unexpected answer ({e})"))
        })
    }

    /// Polls the token endpoint once for a device authorization (RFC 8628 section 3.4).
    pub(crate) async fn device_poll(&self, device_code: &str) -> Result<DevicePoll, OidcError> {
        let md = self.metadata(false).await?;
        let endpoint = md
            .token_endpoint()
            .ok_or_else(|| OidcError::Refused("its metadata has no token endpoint".into()))?
            .to_string();
        let response = self
            .http
            .post(&endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.secret.expose_secret())),
            )
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code),
                ("client_id", self.config.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|e| OidcError::Unreachable {
                what: "token endpoint".into(),
                cause: chain(&e),
            })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return match code.as_str() {
                "authorization_pending" => Ok(DevicePoll::Pending),
                "slow_down" => Ok(DevicePoll::SlowDown),
                _ => Err(OidcError::Refused(format!(
                    "device login: {}",
                    oauth_error(&body)
                ))),
            };
        }
        let tokens: CoreTokenResponse = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Refused(format!("token response: unexpected answer ({e})")))?;
        let id_token = tokens.id_token().ok_or_else(|| {
            OidcError::InvalidToken(
                "the token response has no id_token (is `openid` among the scopes?)".into(),
            )
        })?;
        self.verify(md, id_token, None)
            .await
            .map(|identity| DevicePoll::Done(Box::new(identity)))
    }
}

/// What was wrong with an ID token, in words.
fn describe(err: ClaimsVerificationError) -> OidcError {
    let text = match err {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "it is signed with a key the provider does not publish in its JWKS (unknown key id)"
            .to_owned(),
        ClaimsVerificationError::SignatureVerification(inner) => {
            format!("bad signature ({inner})")
        }
        ClaimsVerificationError::InvalidAudience(m) => {
            format!("it is not meant for this client (audience: {m})")
        }
        ClaimsVerificationError::Expired(m) => format!("it has expired ({m})"),
        other => other.to_string(),
    };
    OidcError::InvalidToken(text)
}

/// An OAuth error body as `error (description)`.
fn oauth_error(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let error = v.get("error").and_then(|e| e.as_str()).unwrap_or("error");
            match v.get("error_description").and_then(|e| e.as_str()) {
                Some(d) => format!("{error} ({d})"),
                None => error.to_owned(),
            }
        }
        Err(_) => format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    }
}

/// The payload of an ID token whose signature has been verified, as JSON (for the claims the
/// core types do not model: groups, `_claim_names`).
fn payload_of(id_token: &CoreIdToken) -> Result<serde_json::Value, OidcError> {
    use base64::Engine as _;
    let compact = id_token.to_string();
    let payload = compact
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::InvalidToken("not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| OidcError::InvalidToken(format!("payload is not base64url ({e})")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::InvalidToken(format!("payload is not JSON ({e})")))
}
