//! A real OpenID provider (npm `oidc-provider`, tests/oidc/provider.mjs) on 127.0.0.1, and a
//! `portcullis dev` whose controller logs in with it: for tests/oidc.rs (the CLI's logins) and
//! the browser tests (tests/browser_harness.rs).

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::browser::Browser;
use super::dev::Dev;

pub(crate) const CLIENT_ID: &str = "portcullis-test";
pub(crate) const CLIENT_SECRET: &str = "portcullis-test-secret-0123456789";

/// The node OpenID provider, killed at drop.
pub(crate) struct Provider {
    pub child: Child,
    pub issuer: String,
}

impl Provider {
    pub(crate) fn start(redirect_uri: &str, log: &Path) -> Provider {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/oidc/node_modules is missing: run `npm ci` in tests/oidc (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("node is needed for the OIDC tests (scripts/test installs it)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "the OpenID provider printed no readiness line (node >= 20 is needed); \
                     its stderr:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        Provider {
            child,
            issuer: v["issuer"].as_str().unwrap().to_owned(),
        }
    }

    /// Makes the next ID token bad (see provider.mjs).
    pub(crate) fn spoil_next(&self, mode: &str) {
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "POST"])
            .arg(format!("{}/admin/next?mode={mode}", self.issuer))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Completes the provider's login form in `browser` (which is on it, or on its way there) as
/// `user` with `groups` and `amr` (comma separated), and submits it; the browser then
/// follows the provider's redirect to the client's callback.
pub(crate) fn sign_in(browser: &mut Browser, user: &str, groups: &str, amr: &str) {
    browser.wait_for("input[name=user]");
    browser.fill("input[name=user]", user);
    browser.fill("input[name=groups]", groups);
    browser.fill("input[name=amr]", amr);
    browser.click("button");
}

/// A provider and a `portcullis dev` (with `policy`) whose controller logs in with it; the
/// client secret, the controller's config and the provider's log go into `dir`. `before`: the
/// config's tables before `[auth.oidc]` (e.g. `[auth]` keys, `[api]`'s certificate);
/// `oidc`: more lines after `[auth.oidc]`'s keys (they may open its sub-tables, e.g.
/// `[auth.oidc.mfa]`).
pub(crate) fn dev_with_provider(
    dir: &Path,
    policy: &Path,
    before: &str,
    oidc: &str,
) -> (Dev, Provider) {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.join("controller.toml");
    // The redirect URL names the controller's API port: a provider and a config for each
    // port the controller is tried on.
    Dev::start_on_api_port(
        |port| {
            let redirect = format!("https://127.0.0.1:{port}/v1/auth/oidc/callback");
            let provider = Provider::start(&redirect, &dir.join("provider.log"));
            std::fs::write(
                &config,
                format!(
                    "{before}[auth.oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
                     client_secret_file = \"{}\"\nredirect_url = \"{redirect}\"\n\
                     scopes = [\"openid\", \"profile\", \"email\", \"groups\"]\n{oidc}",
                    provider.issuer,
                    secret.display()
                ),
            )
            .unwrap();
            provider
        },
        |port| {
            vec![
                "--api-port".into(),
                port.to_string(),
                "--policy".into(),
                policy.display().to_string(),
                "--config".into(),
                config.display().to_string(),
            ]
        },
    )
}
