//! `portcullis login`, `logout`, `whoami` and `users revoke`: OIDC login through the
//! controller, bound to this process by a secret that never leaves it except in the body of
//! the final redemption request.

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use portcullis_proto::api::{
    LoginResponse, LogoutResponse, OidcLoginMode, OidcRedeemRequest, OidcStartRequest,
    OidcStartResponse, RevokeUserRequest, RevokeUserResponse, UserInfo,
};
use portcullis_proto::clock::{Clock as _, SystemClock};
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::http::{config_dir, ApiClient, ClientArgs};
use super::output;
use loopback::Callback;

mod loopback;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
How it works:
  The controller runs the login with your organisation's OpenID provider. By default the CLI
  opens your browser; when you are done there, the browser is sent back to this CLI on
  127.0.0.1 with a one-time code, which the CLI redeems together with a secret it never
  shows to anyone. The API token is saved (mode 0600) to CONFIG/portcullis/token, where
  CONFIG is $XDG_CONFIG_HOME or ~/.config; PORTCULLIS_TOKEN overrides that file.

  PORTCULLIS_BROWSER names the program that opens the URL (default: xdg-open).

Examples:
  portcullis login                 # opens the browser
  portcullis login --no-browser    # prints the URL; type the code the page shows
  portcullis login --device        # enter a code on another device (if the controller allows it)")]
pub struct LoginArgs {
    /// Print the login URL instead of opening a browser (e.g. over SSH); the page you land on
    /// after signing in shows a code to type here.
    #[arg(long, conflicts_with = "device")]
    pub no_browser: bool,
    /// Use the device authorization grant: sign in on any device by entering a code. Only
    /// when the controller enables it (see docs/auth.md for its phishing risk).
    #[arg(long)]
    pub device: bool,
    /// Where to save the token instead of CONFIG/portcullis/token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {
    /// Print JSON instead of fields.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Revoke every API token of a user and end the user's live sessions (needs the
    /// `users:revoke` permission). The user can log in again unless the provider stops them.
    Revoke {
        /// The user's subject (`sub` at the provider; `portcullis whoami` shows it).
        subject: String,
        /// Only the user of this issuer (default: the subject under every issuer).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn token_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(path) => Ok(path.to_owned()),
        None => config_dir()
            .map(|d| d.join("token"))
            .context("no config directory: set HOME or XDG_CONFIG_HOME, or pass --token-file"),
    }
}

/// Writes the token file with mode 0600 (created that way, then renamed into place).
fn save_token(path: &Path, token: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// A client without a token (logging in needs none, and an old token file, even one with
/// the wrong mode, must not stop a new login from replacing it).
fn anonymous_client(args: &ClientArgs) -> anyhow::Result<ApiClient> {
    let mut args = args.clone();
    if args.token.is_none() {
        // Keeps resolve() from reading the token file.
        args.token = "unused".parse().ok();
    }
    let mut settings = args.resolve()?;
    settings.token = None;
    ApiClient::new(settings)
}

pub async fn login(args: LoginArgs) -> anyhow::Result<i32> {
    let api = anonymous_client(&args.client)?;
    let path = token_path(args.token_file.as_deref())?;
    let secret = random_secret()?;
    let response = if args.device {
        device_login(&api, &secret).await?
    } else if args.no_browser {
        code_login(&api, &secret).await?
    } else {
        loopback_login(&api, &secret).await?
    };
    save_token(&path, &response.token)?;
    let user = &response.user;
    eprintln!(
        "Logged in as {} ({} at {}); groups: {}; token expires {}; saved to {}",
        user.username,
        user.subject,
        user.issuer,
        if user.groups.is_empty() {
            "none".to_owned()
        } else {
            user.groups.join(", ")
        },
        output::time(response.expires_at),
        path.display()
    );
    if args.client.token.is_some() {
        eprintln!("Note: PORTCULLIS_TOKEN (or --token) is set and overrides the saved token.");
    }
    Ok(0)
}

async fn start(
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

async fn redeem(
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

fn login_response(value: serde_json::Value) -> anyhow::Result<LoginResponse> {
    serde_json::from_value(value)
        .context("the controller's login answer is not what this CLI expects")
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

async fn loopback_login(api: &ApiClient, secret: &str) -> anyhow::Result<LoginResponse> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen on 127.0.0.1 for the browser's return; try --no-browser")?;
    let port = listener.local_addr()?.port();
    let started = start(api, OidcLoginMode::Loopback, Some(port), secret).await?;
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
    let value = redeem(api, &started.login_id, Some(code), secret).await?;
    login_response(value)
}

/// Serves the loopback redirect until one for this login arrives; returns its code.
async fn wait_for_callback(
    listener: &tokio::net::TcpListener,
    login_id: &str,
) -> anyhow::Result<String> {
    loop {
        let (mut stream, _) = listener.accept().await?;
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

async fn code_login(api: &ApiClient, secret: &str) -> anyhow::Result<LoginResponse> {
    let started = start(api, OidcLoginMode::Code, None, secret).await?;
    let url = started
        .authorization_url
        .context("the controller sent no authorization URL")?;
    println!("{url}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "\nOpen the URL above in a browser and sign in. The page you land on shows a code:\n\
         type it here. Never type a code someone else sent you.\n"
    );
    let mut lines = std::io::stdin().lock().lines();
    for _ in 0..3 {
        eprint!("Code: ");
        let _ = std::io::stderr().flush();
        let Some(line) = lines.next() else {
            bail!("no code was typed (end of input); run `portcullis login --no-browser` again");
        };
        let code = line.context("cannot read the code")?;
        if code.trim().is_empty() {
            continue;
        }
        match redeem(api, &started.login_id, Some(code.trim().to_owned()), secret).await {
            Ok(value) => return login_response(value),
            Err(err) if format!("{err:#}").contains("wrong code") => {
                eprintln!("{err:#}");
            }
            Err(err) => return Err(err),
        }
    }
    bail!("too many wrong codes; run `portcullis login --no-browser` again")
}

async fn device_login(api: &ApiClient, secret: &str) -> anyhow::Result<LoginResponse> {
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

pub async fn logout(args: LogoutArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let response: LogoutResponse = api
        .post("/v1/auth/logout", &serde_json::json!({}))
        .await
        .context("cannot log out")?;
    eprintln!(
        "Logged out: token {} revoked, {} live session(s) ended.",
        response.token_id,
        response.sessions_ended.len()
    );
    if args.client.token.is_some() {
        eprintln!("PORTCULLIS_TOKEN (or --token) still holds the revoked token: unset it.");
    } else if let Ok(path) = token_path(None) {
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(0)
}

pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<i32> {
    let api = ApiClient::from_args(&args.client)?;
    let info: UserInfo = api
        .get("/v1/whoami")
        .await
        .context("cannot ask who you are")?;
    if args.json {
        output::print_json(&info)?;
        return Ok(0);
    }
    output::print_fields(&[
        ("user", info.username.clone()),
        ("issuer", info.issuer.clone()),
        ("subject", info.subject.clone()),
        ("groups", info.groups.join(", ")),
        ("amr", info.amr.join(", ")),
        ("acr", output::or_dash(info.acr.as_deref())),
        ("auth time", output::opt_time(info.auth_time)),
        ("permissions", info.permissions.join(", ")),
        ("token expires", output::opt_time(info.token_expires_at)),
    ])?;
    Ok(0)
}

pub async fn users(cmd: UsersCommand) -> anyhow::Result<i32> {
    match cmd {
        UsersCommand::Revoke {
            subject,
            issuer,
            json,
            client,
        } => {
            let api = ApiClient::from_args(&client)?;
            let response: RevokeUserResponse = api
                .post("/v1/users/revoke", &RevokeUserRequest { subject, issuer })
                .await
                .context("cannot revoke the user's tokens")?;
            if json {
                output::print_json(&response)?;
            } else {
                for user in &response.users {
                    println!(
                        "{} at {}: {} token(s) revoked, {} session(s) ended",
                        portcullis_proto::text::escaped(&user.subject),
                        portcullis_proto::text::escaped(&user.issuer),
                        user.tokens_revoked.len(),
                        user.sessions_ended.len()
                    );
                }
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        save_token(&path, "t0k").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "t0k\n");
    }
}
