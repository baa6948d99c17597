//! A real browser for the tests: Debian's chromium driven by playwright-core through
//! tests/browser/driver.mjs, a node process spoken to with one JSON command per line on its
//! stdin and one JSON reply per line on its stdout. One chromium per [`Browser`]; it trusts the
//! controller's TLS certificate by its public key (an SPKI pin read over TLS verified against
//! a CA the test names), resolves no name but 127.0.0.1, and is stopped at drop with every
//! process it started.
//!
//! The controller's internal CA issues the API's certificate as ECDSA P-256, which chromium
//! accepts: a browser test trusts it as it is ([`Browser::for_dev`]). (Chromium refuses the
//! Ed25519 certificates of a CA made before P-256: ERR_SSL_PROTOCOL_ERROR at the handshake.)

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::dev::Dev;

mod procs;

use procs::descendants;
pub(crate) use procs::Proc;

/// Names a directory that keeps a copy of every screenshot.
const SCREENSHOTS_VAR: &str = "PORTCULLIS_TEST_SCREENSHOTS";

/// Longer than any wait of the driver's own (15 s an action, 30 s a navigation): a reply that
/// takes longer means the driver hangs.
const REPLY_LIMIT: Duration = Duration::from_secs(60);

/// The chromium the driver runs: Debian's, unless PORTCULLIS_TEST_CHROMIUM names another.
fn chromium() -> PathBuf {
    std::env::var_os("PORTCULLIS_TEST_CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The final response of a navigation: its status, URL and headers (names in lower case).
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// An accessibility rule that axe-core found broken, with the elements that break it.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    pub id: String,
    /// minor, moderate, serious or critical.
    pub impact: String,
    pub help: String,
    pub targets: Vec<String>,
}

/// A console message (`type` as the page's console named it: log, warning, error...) or an
/// uncaught exception (`pageerror`).
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub kind: String,
    pub text: String,
    /// Where it came from (a script's URL, a resource's), when chromium says.
    pub url: String,
}

/// `scheme://host:port` of a URL (the whole text when it has no path).
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// How chromium reports a response with an error status on the console.
const ERROR_STATUS: &str = "Failed to load resource: the server responded with a status of";

/// What a `fetch()` run inside the page gave: a response, or the error it threw (a CSP
/// refusal, a network error).
#[derive(Debug, Clone)]
pub(crate) enum Fetched {
    Response {
        status: u16,
        body: String,
        headers: BTreeMap<String, String>,
    },
    Error(String),
}

/// The console's Content-Security-Policy for every page (controller/src/console/mod.rs).
pub(crate) const CONSOLE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
                                      img-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                                      base-uri 'none'";

/// What every console page must pass: its headers (the CSP among them), a clean browser
/// console, no serious or critical axe-core violation, and a PNG screenshot `name`.
pub(crate) fn check_page(browser: &mut Browser, response: &Response, name: &str) {
    check_page_with(browser, response, CONSOLE_CSP, name);
}

/// [`check_page`] for a page with a policy of its own (`csp`: the player pages).
pub(crate) fn check_page_with(browser: &mut Browser, response: &Response, csp: &str, name: &str) {
    assert_eq!(
        response.header("content-security-policy"),
        Some(csp),
        "{response:?}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let serious = browser.axe_serious();
    assert!(serious.is_empty(), "axe on the {name} page: {serious:#?}");
    let problems = browser.console_problems();
    assert!(
        problems.is_empty(),
        "the browser console on the {name} page: {problems:#?}"
    );
    let shot = browser.screenshot(name);
    let bytes = std::fs::read(&shot).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
}

/// Chromium under playwright-core, for one test file (start it once: it takes a second).
pub(crate) struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<String>,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
    pub version: String,
}

impl Browser {
    /// A browser that trusts `dev`'s API certificate, verified against the CA its environment
    /// names (`PORTCULLIS_CA`: the internal CA's bundle); screenshots go into `dir` (the
    /// test's temp dir).
    pub(crate) fn for_dev(dev: &Dev, dir: &Path) -> Browser {
        let ca = PathBuf::from(dev.var("PORTCULLIS_CA"));
        Browser::start(dir, &[(&dev.api(), &ca)])
    }

    /// Starts the driver and chromium. `trust`: (https origin, CA file) pairs; the origin's
    /// certificate, verified against the CA, is the one chromium accepts there.
    ///
    /// # Panics
    ///
    /// When chromium, node or the driver's node modules are missing (naming scripts/test, which
    /// installs them), or chromium does not start.
    pub(crate) fn start(dir: &Path, trust: &[(&str, &Path)]) -> Browser {
        let chromium = chromium();
        assert!(
            chromium.exists(),
            "{} is missing: the browser tests need Debian's chromium (scripts/test installs it; \
             or apt-get install chromium)",
            chromium.display()
        );
        let modules = driver_dir().join("node_modules");
        let installed = ["playwright-core", "@axe-core/playwright"]
            .iter()
            .all(|m| modules.join(m).exists());
        assert!(
            installed,
            "tests/browser/node_modules is missing: run `npm ci` in tests/browser \
             (scripts/test does)"
        );
        let mut child = Command::new("node")
            .arg(driver_dir().join("driver.mjs"))
            .env("PORTCULLIS_TEST_CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node is needed for the browser tests (scripts/test installs it)");
        let log = Arc::new(Mutex::new(String::new()));
        let (sink, stderr) = (log.clone(), child.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[browser] {line}");
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut browser = Browser {
            child,
            stdin,
            replies,
            log,
            dir: dir.to_owned(),
            version: String::new(),
        };
        let trust: Vec<Value> = trust
            .iter()
            .map(|(url, ca)| json!({"url": url, "ca": ca}))
            .collect();
        let launched = browser.command(json!({"cmd": "launch", "trust": trust}));
        browser.version = launched["version"].as_str().unwrap_or_default().to_owned();
        browser
    }

    /// Sends one command and returns its reply.
    ///
    /// # Panics
    ///
    /// When the driver answers with an error (its message, and the driver's stderr), or not
    /// within a minute.
    pub(crate) fn command(&mut self, command: Value) -> Value {
        let reply = self.try_command(&command);
        match reply {
            Ok(value) => value,
            Err(err) => panic!(
                "browser command {command} failed: {err}\nthe driver's stderr:\n{}",
                self.log.lock().map(|l| l.clone()).unwrap_or_default()
            ),
        }
    }

    fn try_command(&mut self, command: &Value) -> Result<Value, String> {
        self.try_command_within(command, REPLY_LIMIT)
    }

    fn try_command_within(&mut self, command: &Value, limit: Duration) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("the driver was closed")?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the driver: {e}"))?;
        let line = match self.replies.recv_timeout(limit) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => return Err(format!("no reply in {limit:?}")),
            Err(RecvTimeoutError::Disconnected) => return Err("the driver exited".into()),
        };
        let reply: Value = serde_json::from_str(&line)
            .map_err(|e| format!("a reply that is not JSON ({e}): {line}"))?;
        if reply["ok"] == true {
            Ok(reply)
        } else {
            Err(reply["error"].as_str().unwrap_or(&line).to_owned())
        }
    }

    /// Opens `url` and returns its final response (after redirects).
    pub(crate) fn goto(&mut self, url: &str) -> Response {
        response(&self.command(json!({"cmd": "goto", "url": url})))
    }

    /// [`Browser::goto`] for a page that may not load: `Err` is chromium's reason
    /// (`net::ERR_CERT_AUTHORITY_INVALID`, `net::ERR_NAME_NOT_RESOLVED`...).
    pub(crate) fn try_goto(&mut self, url: &str) -> Result<Response, String> {
        self.try_command(&json!({"cmd": "goto", "url": url}))
            .map(|reply| response(&reply))
    }

    /// The last response the page navigated to (after a click that submitted a form, too).
    pub(crate) fn last_response(&mut self) -> Response {
        response(&self.command(json!({"cmd": "response"})))
    }

    pub(crate) fn fill(&mut self, selector: &str, value: &str) {
        self.command(json!({"cmd": "fill", "selector": selector, "value": value}));
    }

    pub(crate) fn click(&mut self, selector: &str) {
        self.command(json!({"cmd": "click", "selector": selector}));
    }

    /// The visible text of the first element `selector` matches (waiting for it).
    pub(crate) fn text(&mut self, selector: &str) -> String {
        let reply = self.command(json!({"cmd": "text", "selector": selector}));
        reply["text"].as_str().unwrap_or_default().to_owned()
    }

    /// How many elements `selector` matches now (without waiting: for "there is none").
    pub(crate) fn count(&mut self, selector: &str) -> usize {
        let reply = self.command(json!({"cmd": "count", "selector": selector}));
        reply["count"].as_u64().unwrap_or_default() as usize
    }

    /// Waits until an element `selector` matches is visible.
    pub(crate) fn wait_for(&mut self, selector: &str) {
        self.command(json!({"cmd": "wait_for", "selector": selector}));
    }

    /// Waits until the page's URL contains `part` and the page has loaded; returns the URL.
    pub(crate) fn wait_for_url(&mut self, part: &str) -> String {
        let reply = self.command(json!({"cmd": "wait_for_url", "contains": part}));
        reply["url"].as_str().unwrap_or_default().to_owned()
    }

    /// Sets the page's viewport (CSS pixels): `(390, 844)` is a phone held upright.
    pub(crate) fn viewport(&mut self, width: u32, height: u32) {
        self.command(json!({"cmd": "viewport", "width": width, "height": height}));
    }

    pub(crate) fn url(&mut self) -> String {
        let reply = self.command(json!({"cmd": "url"}));
        reply["url"].as_str().unwrap_or_default().to_owned()
    }

    /// A full-page PNG of the page as `NAME.png` in the test's dir; its path. With
    /// `PORTCULLIS_TEST_SCREENSHOTS=DIR` set, a copy goes into DIR too (to keep them after the
    /// test, or to refresh the ones in docs/).
    pub(crate) fn screenshot(&mut self, name: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.png"));
        self.command(json!({"cmd": "screenshot", "path": path}));
        if let Some(keep) = std::env::var_os(SCREENSHOTS_VAR) {
            let keep = Path::new(&keep);
            std::fs::create_dir_all(keep).unwrap();
            std::fs::copy(&path, keep.join(format!("{name}.png"))).unwrap();
        }
        path
    }

    /// axe-core's check of the page (every rule it runs by default).
    pub(crate) fn axe(&mut self) -> Vec<Violation> {
        let reply = self.command(json!({"cmd": "axe"}));
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        reply["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| Violation {
                id: text(&v["id"]),
                impact: text(&v["impact"]),
                help: text(&v["help"]),
                targets: v["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect(),
            })
            .collect()
    }

    /// axe's serious and critical violations: the ones a page must not have.
    pub(crate) fn axe_serious(&mut self) -> Vec<Violation> {
        self.axe()
            .into_iter()
            .filter(|v| v.impact == "serious" || v.impact == "critical")
            .collect()
    }

    /// The console messages and page errors since the last call (or the context's start).
    pub(crate) fn messages(&mut self) -> Vec<Message> {
        let reply = self.command(json!({"cmd": "messages"}));
        reply["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| Message {
                kind: m["type"].as_str().unwrap_or_default().to_owned(),
                text: m["text"].as_str().unwrap_or_default().to_owned(),
                url: m["url"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// [`Browser::messages`] that are errors, warnings or uncaught exceptions, but for the
    /// error chromium logs when the page itself came with an error status (a login failure's
    /// 401, a refusal's 403: the test asserts that status on the response).
    pub(crate) fn console_problems(&mut self) -> Vec<Message> {
        let page = self.url();
        let origin = origin_of(&page).to_owned();
        self.messages()
            .into_iter()
            .filter(|m| matches!(m.kind.as_str(), "error" | "warning" | "pageerror"))
            .filter(|m| !(m.url == page && m.text.starts_with(ERROR_STATUS)))
            // A resource of another site's page that came back late (the OpenID provider's
            // favicon after its redirect to us): not this page's, which loads nothing from
            // other origins (its CSP).
            .filter(|m| !(m.text.starts_with(ERROR_STATUS) && origin_of(&m.url) != origin))
            .collect()
    }

    /// The cookies of the browser context, as playwright describes them (name, value, domain,
    /// path, expires, httpOnly, secure, sameSite).
    pub(crate) fn cookies(&mut self) -> Vec<Value> {
        let reply = self.command(json!({"cmd": "cookies"}));
        reply["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// `fetch(url, {method, body, headers, credentials: "same-origin", redirect: "manual"})`
    /// run inside the page: its origin, cookies and Content-Security-Policy apply.
    pub(crate) fn fetch(
        &mut self,
        url: &str,
        method: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Fetched {
        self.fetch_as(url, method, body, headers, "same-origin")
    }

    /// [`Browser::fetch`] with `credentials: "include"`: the cookies go to another origin too
    /// (when their SameSite lets them), as a cross-site attacker's page would try.
    pub(crate) fn fetch_including_credentials(
        &mut self,
        url: &str,
        method: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Fetched {
        self.fetch_as(url, method, body, headers, "include")
    }

    fn fetch_as(
        &mut self,
        url: &str,
        method: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
        credentials: &str,
    ) -> Fetched {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let reply = self.command(json!({
            "cmd": "fetch", "url": url, "method": method, "body": body, "headers": headers,
            "credentials": credentials,
        }));
        if let Some(error) = reply["error"].as_str() {
            return Fetched::Error(error.to_owned());
        }
        Fetched::Response {
            status: reply["status"].as_u64().unwrap_or_default() as u16,
            body: reply["body"].as_str().unwrap_or_default().to_owned(),
            headers: string_map(&reply["headers"]),
        }
    }

    /// `expression` evaluated in the page (a function body's value, or a promise's); its JSON.
    pub(crate) fn eval(&mut self, expression: &str) -> Value {
        self.command(json!({"cmd": "eval", "expression": expression}))["value"].take()
    }

    /// A fresh browser context and page (no cookies, no storage): another user.
    pub(crate) fn new_context(&mut self) {
        self.command(json!({"cmd": "new_context"}));
    }

    /// The driver's processes (node's children: chromium and its helpers), for a test that
    /// checks none outlives the [`Browser`].
    pub(crate) fn processes(&self) -> Vec<Proc> {
        descendants(self.child.id())
    }
}

impl Drop for Browser {
    /// Closes chromium and the driver (killing what has not ended after 25 s), and waits until
    /// every process they started is gone.
    fn drop(&mut self) {
        let processes = self.processes();
        let closed = self
            .try_command_within(&json!({"cmd": "close"}), Duration::from_secs(15))
            .is_ok();
        self.stdin = None;
        let exited = closed
            && super::wait::poll_within(Duration::from_secs(10), || match self.child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(()),
            })
            .is_ok();
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let gone = super::wait::poll_within(Duration::from_secs(10), || {
            if processes.iter().any(Proc::alive) {
                Err(())
            } else {
                Ok(())
            }
        });
        if gone.is_err() {
            for p in processes.iter().filter(|p| p.alive()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.pid.to_string()])
                    .status();
            }
        }
    }
}

fn response(reply: &Value) -> Response {
    Response {
        status: reply["status"].as_u64().unwrap_or_default() as u16,
        url: reply["url"].as_str().unwrap_or_default().to_owned(),
        headers: string_map(&reply["headers"]),
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
