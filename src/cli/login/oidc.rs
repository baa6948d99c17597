//! The controller's OIDC login API as the CLI uses it: start a login bound to a fresh secret
//! (only its hash is sent), and redeem it with the secret, which leaves this process only in
//! the body of that final request.

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_proto::api::{
    LoginResponse, OidcLoginMode, OidcRedeemRequest, OidcStartRequest, OidcStartResponse,
};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::cli::http::ApiClient;

pub(super) fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

pub(super) fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

pub(super) async fn start(
    api: &ApiClient,
    mode: OidcLoginMode,
    redirect_port: Option<u16>,
    secret: &str,
) -> anyhow::Result<OidcStartResponse> {
    api.post(
        "/v1/auth/oidc/start",
        &OidcStartRequest {
            mode,
            redirect_port,
            secret_hash: hash_secret(secret),
        },
    )
    .await
    .context("cannot start the login")
}

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

pub(super) fn login_response(value: serde_json::Value) -> anyhow::Result<LoginResponse> {
    serde_json::from_value(value)
        .context("the controller's login answer is not what this CLI expects")
}
