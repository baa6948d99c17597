//! The default login flow: listen on 127.0.0.1, open the browser at the provider, and take
//! the one-time code from the browser's redirect back to this port (what a request there
//! means is `loopback`'s to say), then redeem it.

use std::time::Duration;

use anyhow::{bail, Context as _};
use portcullis_proto::api::{LoginResponse, OidcLoginMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::loopback::{self, Callback};
use super::oidc::{login_response, redeem, start_for};
use crate::cli::http::ApiClient;
use portcullis_proto::clock::{Clock as _, SystemClock};

/// Logs in through the loopback redirect; returns the controller's answer with the new token.
pub(super) async fn login(api: &ApiClient, secret: &str) -> anyhow::Result<LoginResponse> {
    login_response(in_browser(api, secret, None).await?)
}

/// The loopback flow, for a login or a step-up login answering the challenge `step_up`:
/// the controller's redeem answer (a token, or a step-up proof).
pub(super) async fn in_browser(
    api: &ApiClient,
    secret: &str,
    step_up: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen on 127.0.0.1 for the browser's return; try --no-browser")?;
    let port = listener.local_addr()?.port();
    let mode = OidcLoginMode::Loopback;
    let started = start_for(api, mode, Some(port), secret, step_up).await?;
    let url = started
        .authorization_url
        .context("the controller sent no authorization URL")?;
    if open_browser(&url) {
        eprintln!("Opened your browser to sign in. If it did not open, visit:\n\n  {url}\n");
    } else {
        eprintln!("Could not open a browser. Visit this URL to sign in:\n\n  {url}\n");
    }
    eprintln!("Waiting for the login to finish...");
    let wait = started
        .expires_at
        .saturating_sub(SystemClock.unix_secs())
        .max(1);
    let code = tokio::time::timeout(
        Duration::from_secs(wait),
        wait_for_callback(&listener, &started.login_id),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the login was not completed in time; run `portcullis login` again (or use --no-browser)"
        )
    })??;
    redeem(api, &started.login_id, Some(code), secret).await
}

/// Runs `PORTCULLIS_BROWSER URL` (or xdg-open/open); false when nothing could be started.
fn open_browser(url: &str) -> bool {
    let candidates: Vec<String> = match std::env::var("PORTCULLIS_BROWSER") {
        Ok(cmd) if !cmd.trim().is_empty() => vec![cmd],
        _ => vec!["xdg-open".into(), "open".into()],
    };
    candidates.iter().any(|cmd| {
        std::process::Command::new(cmd)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
    })
}

/// Serves the loopback redirect until one for this login arrives; returns its code.
async fn wait_for_callback(
    listener: &tokio::net::TcpListener,
    login_id: &str,
) -> anyhow::Result<String> {
    // A connection that fails before it is accepted does not end the login.
    let mut accepting = portcullis_net::accept::Acceptor::new("login redirect");
    loop {
        let (mut stream, _) = accepting.next(|| listener.accept()).await;
        let mut buf = vec![0u8; 8192];
        let mut len = 0;
        // Read the request head (the query is all that matters).
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let n = stream.read(&mut buf[len..]).await?;
                if n == 0 {
                    break;
                }
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                    break;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if !matches!(read, Ok(Ok(()))) {
            continue;
        }
        let code = match loopback::parse_callback(&buf[..len], login_id) {
            Callback::Foreign => {
                respond(
                    &mut stream,
                    "400 Bad Request",
                    "This is not the login this CLI is waiting for.",
                )
                .await;
                continue;
            }
            Callback::Failed(error) => {
                respond(
                    &mut stream,
                    "200 OK",
                    &format!("Login failed: {error}. You can close this window."),
                )
                .await;
                bail!("the login failed: {error}");
            }
            Callback::NoCode => {
                respond(
                    &mut stream,
                    "400 Bad Request",
                    "The redirect carries no code.",
                )
                .await;
                continue;
            }
            Callback::Code(code) => code,
        };
        respond(
            &mut stream,
            "200 OK",
            "Signed in. You can close this window and return to the terminal.",
        )
        .await;
        return Ok(code);
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, message: &str) {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Portcullis</title></head>\
         <body><p>{}</p></body></html>",
        message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
