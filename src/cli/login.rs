//! `portcullis login`, `logout`, `whoami` and `users revoke`: OIDC login through the
//! controller, bound to this process by a secret that never leaves it except in the body of
//! the final redemption request.
//!
//! The flows live beside this file: `redirect` (the default: the browser comes back to a
//! loopback port, whose requests `loopback` reads), `typed_code` (`--no-browser`) and
//! `device` (`--device`), all through `oidc`'s start and redeem calls. This file holds the
//! arguments, the commands and the token file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_proto::api::{LogoutResponse, UserInfo};

use super::http::{config_dir, ApiClient, ClientArgs};
use super::output;
use super::profile::fingerprint::Fingerprint;

mod device;
mod first_use;
mod loopback;
mod oidc;
mod password;
mod redirect;
mod service;
mod typed_code;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
How it works:
  `portcullis login URL` saves a profile: the controller address(es) and its CA. The CA is
  fetched, shown by its SHA-256 fingerprint and kept only when you confirm it on a terminal
  (or it matches --ca-fingerprint, or you name it with --ca FILE); without a terminal and
  without either flag the login is refused. The profile is CONFIG/portcullis/profiles/NAME/
  (NAME from --profile or PORTCULLIS_PROFILE, else `default`), where CONFIG is
  $XDG_CONFIG_HOME or ~/.config; it becomes the current profile. Later commands use it
  without flags; PORTCULLIS_ADDR/CA/TOKEN and --addr/--ca/--token still win.

  The controller runs the login with your organisation's OpenID provider. By default the CLI
  opens your browser; when you are done there, the browser is sent back to this CLI on
  127.0.0.1 with a one-time code, which the CLI redeems together with a secret it never
  shows to anyone. The API token is saved (mode 0600) in the profile (without a profile:
  CONFIG/portcullis/token); PORTCULLIS_TOKEN overrides it.

  PORTCULLIS_BROWSER names the program that opens the URL (default: xdg-open).

Examples:
  # After `portcullis dev` and `. STATE/dev.env` (its address, CA and admin token):
  echo \"$PORTCULLIS_TOKEN\" | portcullis login \"$PORTCULLIS_ADDR\" --profile dev \\
      --ca \"$PORTCULLIS_CA\" --with-token   # a profile `dev` holding the token you have
  portcullis status --profile dev

In a deployment:
  portcullis login https://ctl.example:9200            # shows the CA's fingerprint, asks
  # Two controllers, the CA checked by its fingerprint without a prompt:
  portcullis login https://ctl-a:9200 --controller https://ctl-b:9200 \\
      --ca-fingerprint SHA256:Hc2M3mD0b5r9lkWQqxk7d2cJ1XcYw6pS0xVb4g2nP8E
  portcullis login --profile staging https://ctl.staging:9200
  portcullis login                 # again, on the current profile: opens the browser
  portcullis login --no-browser    # prints the URL; type the code the page shows
  portcullis login --device        # enter a code on another device (if the controller allows it)
  portcullis login --password --user ana       # a local user: password, then TOTP
  portcullis login --bootstrap-file /root/portcullis-bootstrap --user admin   # the first admin
  portcullis login --service-account terraform-ci --key ci.key                 # automation")]
pub(crate) struct LoginArgs {
    /// The controller to log in to, saved as a profile with its CA: https://HOST:PORT
    /// (several: a comma list, or --controller). Without it, the current profile (or
    /// PORTCULLIS_ADDR) is used.
    #[arg(value_name = "URL")]
    pub url: Option<String>,
    /// Another controller of the same cluster for the profile, tried when the others cannot
    /// be reached (repeatable). With URL only.
    #[arg(long, value_name = "URL", requires = "url")]
    pub controller: Vec<String>,
    /// The CA's SHA-256 fingerprint, checked instead of asking on a terminal: SHA256:BASE64,
    /// or hex with or without colons (as `openssl x509 -fingerprint -sha256` prints it). With
    /// URL only; a mismatch refuses the login.
    #[arg(long, value_name = "SHA256", requires = "url")]
    pub ca_fingerprint: Option<Fingerprint>,
    /// Print the login URL instead of opening a browser (e.g. over SSH); the page you land on
    /// after signing in shows a code to type here.
    #[arg(long, conflicts_with = "device")]
    pub no_browser: bool,
    /// Use the device authorization grant: sign in on any device by entering a code. Only
    /// when the controller enables it (see docs/auth.md for its phishing risk).
    #[arg(long)]
    pub device: bool,
    /// Log in as a local user (no OpenID provider): prompts for the password and a TOTP
    /// code; a first login also sets a new password and enrols TOTP with a QR code.
    #[arg(long, conflicts_with_all = ["no_browser", "device", "service_account"])]
    pub password: bool,
    /// The local user's name (default: $USER).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The first admin's login: read the bootstrap credential `controller init` wrote from
    /// FILE (mode 0600) instead of prompting for it. Implies --password.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_browser", "device", "service_account"])]
    pub bootstrap_file: Option<PathBuf>,
    /// With --bootstrap-file only (automation of the first start): read the first admin's
    /// new password from FILE (mode 0600). A person's password is always typed.
    #[arg(long, value_name = "FILE", requires = "bootstrap_file")]
    pub password_file: Option<PathBuf>,
    /// Log in as a service account by signing an assertion with its key (no prompt).
    #[arg(long, value_name = "NAME", requires = "key", conflicts_with_all = ["no_browser", "device"])]
    pub service_account: Option<String>,
    /// The service account's Ed25519 private key (OpenSSH or PKCS#8, mode 0600).
    #[arg(long, value_name = "FILE", requires = "service_account")]
    pub key: Option<PathBuf>,
    /// Save a token you already have, read from stdin (one line), after checking it with the
    /// controller; no login flow runs.
    #[arg(long, conflicts_with_all = ["no_browser", "device", "password", "bootstrap_file", "service_account"])]
    pub with_token: bool,
    /// Print the login's result as JSON on stdout (never the token).
    #[arg(long)]
    pub json: bool,
    /// Where to save the token instead of the profile (or CONFIG/portcullis/token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  # Log out another token (your own, from dev.env, would stop working):
  portcullis controller issue-token --user kim --group users > kim.token
  PORTCULLIS_TOKEN=\"$(cat kim.token)\" portcullis logout

In a deployment:
  portcullis logout          # the saved token (CONFIG/portcullis/token), and its sessions")]
pub(crate) struct LogoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  portcullis whoami
  portcullis whoami --json | jq -r .token_expires_at")]
pub(crate) struct WhoamiArgs {
    /// Print JSON instead of fields.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn token_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(path) => Ok(path.to_owned()),
        None => config_dir()
            .map(|d| d.join("token"))
            .context("no config directory: set HOME or XDG_CONFIG_HOME, or pass --token-file"),
    }
}

/// Writes the token file with mode 0600 (see `portcullis_files`), creating its directory.
fn save_token(path: &Path, token: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = zeroize::Zeroizing::new(format!("{token}\n"));
    portcullis_files::write_private_atomic(path, text.as_bytes())?;
    Ok(())
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

/// A step-up login in the browser answering `challenge_id` (docs/auth.md, "Step-up MFA"):
/// the controller's single-use proof for it.
pub(crate) async fn step_up_in_browser(
    api: &ApiClient,
    challenge_id: &str,
) -> anyhow::Result<portcullis_proto::step_up::StepUpProof> {
    let secret = oidc::random_secret()?;
    let value = redirect::in_browser(api, &secret, Some(challenge_id)).await?;
    serde_json::from_value(value)
        .context("the controller's step-up answer is not what this CLI expects")
}

pub(crate) async fn login(args: LoginArgs) -> anyhow::Result<i32> {
    let (api, path) = match &args.url {
        Some(url) => first_use::setup(&args, url).await?,
        None => {
            let api = anonymous_client(&args.client)?;
            let path = match (&args.token_file, api.profile()) {
                (None, Some(profile)) => profile.token_path(),
                (explicit, _) => token_path(explicit.as_deref())?,
            };
            (api, path)
        }
    };
    if args.with_token {
        return with_token(&api, &path).await;
    }
    if args.password || args.bootstrap_file.is_some() {
        return password::login(&api, &args, &path).await;
    }
    if args.service_account.is_some() {
        return service::login(&api, &args, &path).await;
    }
    let secret = oidc::random_secret()?;
    let response = if args.device {
        device::login(&api, &secret).await?
    } else if args.no_browser {
        typed_code::login(&api, &secret).await?
    } else {
        redirect::login(&api, &secret).await?
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

/// `--with-token`: the token on stdin, checked with `GET /v1/whoami`, then saved.
async fn with_token(api: &ApiClient, path: &Path) -> anyhow::Result<i32> {
    use std::io::{BufRead as _, IsTerminal as _};
    let read = || {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the token from stdin")?;
        Ok(line)
    };
    let line = if std::io::stdin().is_terminal() {
        eprint!("API token: ");
        let line = super::no_echo::without_echo(read)?;
        eprintln!();
        line
    } else {
        read()?
    };
    let token: super::http::Token = line
        .parse()
        .map_err(|why| anyhow::anyhow!("the token on stdin: {why}"))?;
    let api = api.with_token(token.clone());
    let info: UserInfo = api
        .get("/v1/whoami")
        .await
        .context("the controller did not accept the token; nothing was saved")?;
    save_token(path, token.expose_for_saving())?;
    eprintln!(
        "Logged in as {} ({} at {}); token expires {}; saved to {}",
        info.username,
        info.subject,
        info.issuer,
        output::opt_time(info.token_expires_at),
        path.display()
    );
    Ok(0)
}

pub(crate) async fn logout(args: LogoutArgs) -> anyhow::Result<i32> {
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
    } else if let Ok(path) = api
        .profile()
        .map(|p| Ok(p.token_path()))
        .unwrap_or_else(|| token_path(None))
    {
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(0)
}

pub(crate) async fn whoami(args: WhoamiArgs) -> anyhow::Result<i32> {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

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

    #[test]
    fn a_file_planted_where_the_token_is_written_first_never_receives_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let planted = dir.path().join("planted");
        std::fs::write(&planted, "").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&planted, dir.path().join("token.tmp")).unwrap();
        save_token(&path, "t0k").unwrap();
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "t0k\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
