//! `portcullis login --device`: the device authorization grant. Print the verification URL
//! and user code, then poll the controller at the interval it asks for until the login is
//! done or expires.

use std::io::Write as _;
use std::time::Duration;

use anyhow::bail;
use portcullis_proto::api::{LoginResponse, OidcLoginMode};

use super::oidc::{login_response, redeem, start};
use crate::cli::http::ApiClient;
use portcullis_proto::clock::{Clock as _, SystemClock};

/// Logs in with the device grant; returns the controller's answer with the new token.
pub(super) async fn login(api: &ApiClient, secret: &str) -> anyhow::Result<LoginResponse> {
    let started = start(api, OidcLoginMode::Device, None, secret).await?;
    let user_code = started.user_code.clone().unwrap_or_default();
    let uri = started.verification_uri.clone().unwrap_or_default();
    println!("{uri}");
    println!("{user_code}");
    if let Some(complete) = &started.verification_uri_complete {
        println!("{complete}");
    }
    let _ = std::io::stdout().flush();
    eprintln!(
        "\nOn any device, open {uri} and enter the code {user_code}.\n\
         Only enter a code that THIS terminal shows you: a code someone sends you would log \
         them in as you.\n"
    );
    let mut interval = started.interval.unwrap_or(5).max(1);
    loop {
        if SystemClock.unix_secs() >= started.expires_at {
            bail!("the device login expired; run `portcullis login --device` again");
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let value = redeem(api, &started.login_id, None, secret).await?;
        if value.get("token").is_some() {
            return login_response(value);
        }
        if let Some(next) = value.get("interval").and_then(|v| v.as_u64()) {
            interval = next.max(interval);
        }
    }
}
