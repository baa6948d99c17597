//! The controller's OIDC login API as the CLI uses it: start a login bound to a fresh secret
//! (only its hash is sent), and redeem it with the secret, which leaves this process only in
//! the body of that final request.

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_proto::api::{
    LoginResponse, OidcLoginMode, OidcRedeemRequest, OidcStartRequest, OidcStartResponse,
};

use crate::cli::http::ApiClient;

/// A fresh 256-bit secret that binds the login to this process.
pub(super) fn random_secret() -> anyhow::Result<String> {
    let bytes = portcullis_crypto::random::bytes::<32>()?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What the controller keeps of the secret until redemption: its SHA-256, base64url.
fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(portcullis_crypto::digest::sha256(secret.as_bytes()))
}

/// `POST /v1/auth/oidc/start` in `mode`, sending only the secret's hash.
pub(super) async fn start(
    api: &ApiClient,
    mode: OidcLoginMode,
    redirect_port: Option<u16>,
    secret: &str,
) -> anyhow::Result<OidcStartResponse> {
    start_for(api, mode, redirect_port, secret, None).await
}

/// [`start`], or a step-up login answering the challenge `step_up`.
pub(super) async fn start_for(
    api: &ApiClient,
    mode: OidcLoginMode,
    redirect_port: Option<u16>,
    secret: &str,
    step_up: Option<&str>,
) -> anyhow::Result<OidcStartResponse> {
    api.post(
        "/v1/auth/oidc/start",
        &OidcStartRequest {
            mode,
            redirect_port,
            secret_hash: hash_secret(secret),
            step_up: step_up.map(str::to_owned),
        },
    )
    .await
    .context("cannot start the login")
}

/// `POST /v1/auth/oidc/redeem` with the secret: the token, or (device flow) a wait to poll again.
pub(super) async fn redeem(
    api: &ApiClient,
    login_id: &str,
    code: Option<String>,
    secret: &str,
) -> anyhow::Result<serde_json::Value> {
    api.post(
        "/v1/auth/oidc/redeem",
        &OidcRedeemRequest {
            login_id: login_id.to_owned(),
            code,
            secret: secret.to_owned(),
        },
    )
    .await
    .context("the login failed")
}

/// Reads a redemption that carries the token.
pub(super) fn login_response(value: serde_json::Value) -> anyhow::Result<LoginResponse> {
    serde_json::from_value(value)
        .context("the controller's login answer is not what this CLI expects")
}
