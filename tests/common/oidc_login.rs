//! Logging in at the test OpenID provider without a real browser: a [`CurlBrowser`] (curl
//! with a cookie jar, one hop at a time) fills the provider's login form as a [`Who`], and
//! `portcullis login` runs as a real process whose "browser" is a script that hands the URL
//! over. Shared by tests/oidc.rs and tests/access_oidc.rs.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::dev::Dev;
use super::oidc::{dev_with_provider, Provider};
use super::wait::{poll, poll_within};

/// A provider and a `portcullis dev` whose controller logs in with it.
pub(crate) struct Env {
    pub(crate) provider: Provider,
    pub(crate) dev: Dev,
    pub(crate) dir: tempfile::TempDir,
}

impl Env {
    /// The provider and dev with `policy`; `before` and `oidc` as [`dev_with_provider`] takes
    /// them.
    pub(crate) fn start(policy: &str, before: &str, oidc: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy).unwrap();
        let (dev, provider) = dev_with_provider(dir.path(), &path, before, oidc);
        Env { provider, dev, dir }
    }
}

/// Who signs in at the provider's login form.
#[derive(Clone)]
pub(crate) struct Who {
    pub(crate) user: &'static str,
    pub(crate) groups: &'static str,
    pub(crate) amr: &'static str,
    pub(crate) auth_age: u64,
    pub(crate) extra: &'static [(&'static str, &'static str)],
}

pub(crate) fn who(user: &'static str, groups: &'static str, amr: &'static str) -> Who {
    Who {
        user,
        groups,
        amr,
        auth_age: 0,
        extra: &[],
    }
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
    pub(crate) url: String,
}

/// A browser made of curl calls with a cookie jar, one hop at a time.
pub(crate) struct CurlBrowser {
    pub(crate) jar: PathBuf,
    pub(crate) ca: String,
    pub(crate) visited: Vec<String>,
}

impl CurlBrowser {
    pub(crate) fn new(dir: &Path, name: &str, ca: String) -> CurlBrowser {
        CurlBrowser {
            jar: dir.join(format!("{name}.cookies")),
            ca,
            visited: Vec::new(),
        }
    }

    pub(crate) fn request(&mut self, url: &str, form: Option<&[(String, String)]>) -> Page {
        self.visited.push(url.to_owned());
        let headers = self.jar.with_extension("headers");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-o", "-", "-D"])
            .arg(&headers)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .arg("--cacert")
            .arg(&self.ca);
        if let Some(fields) = form {
            for (k, v) in fields {
                cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
            }
        }
        let out = cmd.arg(url).output().unwrap();
        assert!(out.status.success(), "curl {url}: {out:?}");
        let head = std::fs::read_to_string(&headers).unwrap();
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let location = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_owned())
        });
        Page {
            status,
            location: location.map(|l| absolute(url, &l)),
            body: String::from_utf8_lossy(&out.stdout).into_owned(),
            url: url.to_owned(),
        }
    }

    /// Follows `url` through the provider (signing in as `who`, confirming device codes) to
    /// the end. With `deliver_loopback` false it stops at the redirect to a CLI's loopback
    /// port, as a browser on another machine would fail to deliver it.
    pub(crate) fn sign_in(&mut self, url: &str, who: &Who, deliver_loopback: bool) -> Page {
        let mut page = self.request(url, None);
        for _ in 0..30 {
            if let Some(next) = page.location.clone() {
                if next.contains("/callback?login=") && !deliver_loopback {
                    return page;
                }
                page = self.request(&next, None);
                continue;
            }
            if page.url.contains("/interaction/") && page.body.contains("Sign in") {
                let action = format!("{}/login", page.url.trim_end_matches('/'));
                let mut fields = vec![
                    ("user".to_owned(), who.user.to_owned()),
                    ("groups".to_owned(), who.groups.to_owned()),
                    ("amr".to_owned(), who.amr.to_owned()),
                    ("auth_age".to_owned(), who.auth_age.to_string()),
                ];
                fields.extend(
                    who.extra
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
                page = self.request(&action, Some(&fields));
                continue;
            }
            // The device pages: a confirmation form, and an auto-submitting one.
            if page.body.contains("method=\"post\"") {
                let action = absolute(&page.url, &attr(&page.body, "action").unwrap());
                page = self.request(&action, Some(&hidden_inputs(&page.body)));
                continue;
            }
            return page;
        }
        panic!("too many hops signing in")
    }
}

pub(crate) fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let scheme_end = base.find("://").unwrap() + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}{}", &base[..host_end], location)
}

pub(crate) fn attr(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

pub(crate) fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
        })
        .collect()
}

/// A `portcullis` command against the dev controller with its own config dir and no
/// PORTCULLIS_TOKEN: what a user's shell looks like.
pub(crate) fn user_cli(env: &Env, home: &Path) -> Command {
    let mut cmd = env.dev.cli();
    cmd.env_remove("PORTCULLIS_TOKEN")
        .env("XDG_CONFIG_HOME", home)
        .env("PORTCULLIS_BROWSER", env.dir.path().join("browser.sh"));
    cmd
}

/// A browser stand-in for PORTCULLIS_BROWSER: writes the URL next to the config dir.
pub(crate) fn install_browser_script(env: &Env) {
    let script = env.dir.path().join("browser.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s\\n' \"$1\" > \"$XDG_CONFIG_HOME/opened-url\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub(crate) fn wait_file(path: &Path) -> String {
    poll(
        &format!("{} to be written", path.display()),
        Duration::from_secs(30),
        || match std::fs::read_to_string(path) {
            Ok(text) if text.ends_with('\n') => Ok(text.trim().to_owned()),
            Ok(text) => Err(format!("{text:?} so far")),
            Err(e) => Err(e.to_string()),
        },
    )
}

pub(crate) fn wait_output(mut child: Child) -> (bool, String) {
    let finished = poll_within(Duration::from_secs(60), || {
        child.try_wait().unwrap().ok_or(())
    });
    let Ok(status) = finished else {
        let _ = child.kill();
        panic!("portcullis login did not finish within 60 s");
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), err)
}

/// `portcullis login` (loopback mode) as `who`; returns (success, stderr).
pub(crate) fn cli_login(env: &Env, home: &Path, who: &Who) -> (bool, String) {
    std::fs::create_dir_all(home).unwrap();
    let _ = std::fs::remove_file(home.join("opened-url"));
    let child = user_cli(env, home)
        .arg("login")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = wait_file(&home.join("opened-url"));
    assert!(url.starts_with(&env.provider.issuer), "{url}");
    let mut browser = CurlBrowser::new(home, "browser", env.dev.var("PORTCULLIS_CA"));
    let page = browser.sign_in(&url, who, true);
    assert_eq!(page.status, 200, "{}", page.body);
    wait_output(child)
}

pub(crate) fn token_of(home: &Path) -> String {
    std::fs::read_to_string(home.join("portcullis/token"))
        .unwrap()
        .trim()
        .to_owned()
}
