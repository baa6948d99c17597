//! `portcullis dev` as a real process, on ports picked at run time, stopped at drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

pub(crate) struct Dev {
    pub child: Child,
    pub state_dir: PathBuf,
    pub ready: serde_json::Value,
    pub env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Dev {
    /// Starts `portcullis dev` with extra arguments in a new state dir.
    pub(crate) fn start(extra: &[&str]) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let mut dev = Dev::start_in(&state, extra);
        dev._dir = Some(dir);
        dev
    }

    /// Starts `portcullis dev` with its API on a port known before it starts: `extra` is given
    /// the port and returns the arguments (with `--api-port PORT`), and `before` runs first
    /// for each port tried (e.g. writes a config naming it). On a collision it starts again
    /// on another port ([`super::ports`]).
    pub(crate) fn start_on_api_port<B>(
        mut before: impl FnMut(u16) -> B,
        mut extra: impl FnMut(u16) -> Vec<String>,
    ) -> (Dev, B) {
        Dev::start_on_ports(super::ports::free_port, &mut before, &mut extra)
    }

    /// [`Dev::start_on_api_port`] on the ports `pick` chooses.
    pub(crate) fn start_on_ports<B>(
        pick: impl FnMut() -> u16,
        mut before: impl FnMut(u16) -> B,
        mut extra: impl FnMut(u16) -> Vec<String>,
    ) -> (Dev, B) {
        super::ports::start_on_ports("portcullis dev", pick, |port| {
            let prepared = before(port);
            let args = extra(port);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let dir = tempfile::tempdir().expect("tempdir");
            match Dev::spawn(&dir.path().join("state"), &args, &[], None) {
                Ok(mut dev) => {
                    dev._dir = Some(dir);
                    super::ports::Start::Up((dev, prepared))
                }
                Err(said) => super::ports::collided_or_panic("portcullis dev did not start", said),
            }
        })
    }

    /// Starts `portcullis dev` on an existing state dir (for restart tests).
    pub(crate) fn start_in(state: &Path, extra: &[&str]) -> Dev {
        Dev::start_in_env(state, extra, &[])
    }

    /// Like [`Dev::start_in`], with extra environment variables.
    pub(crate) fn start_in_env(state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Dev {
        Dev::spawn(state, extra, env, None).unwrap_or_else(|said| panic!("{said}"))
    }

    /// Like [`Dev::start`], logging at `info` into `log` (for tests that read the log).
    pub(crate) fn start_logging(extra: &[&str], log: &Path) -> Dev {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(log).expect("log file");
        let mut dev = Dev::spawn(
            &dir.path().join("state"),
            extra,
            &[("PORTCULLIS_LOG", "info")],
            Some(file),
        )
        .unwrap_or_else(|said| panic!("{said}"));
        dev._dir = Some(dir);
        dev
    }

    /// Starts `portcullis dev` and waits for its readiness line. Its log goes to `log_file`,
    /// or else to the test's output (shown when a test fails). `Err`: it printed no
    /// readiness line, with what it said.
    fn spawn(
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log_file: Option<std::fs::File>,
    ) -> Result<Dev, String> {
        // A test that must know the API port in advance (e.g. for an OIDC redirect URL)
        // passes its own --api-port.
        let api_port: &[&str] = if extra.contains(&"--api-port") {
            &[]
        } else {
            &["--api-port", "0"]
        };
        let to_file = log_file.is_some();
        let mut child = Command::new(bin())
            .args(["dev", "--state-dir"])
            .arg(state)
            .args(api_port)
            .args(["--cluster-port", "0", "--proxy-port", "0"])
            .args(extra)
            .env("PORTCULLIS_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file.map_or_else(Stdio::piped, Stdio::from))
            .spawn()
            .expect("spawn portcullis dev");
        let log = Arc::new(Mutex::new(String::new()));
        if !to_file {
            let (sink, stderr) = (log.clone(), child.stderr.take().expect("stderr"));
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[dev] {line}");
                    if let Ok(mut l) = sink.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            // The log is complete once the process is gone and the reader has drained it.
            let said = super::wait::poll_within(Duration::from_secs(5), || {
                let seen = log.lock().map(|l| l.clone()).unwrap_or_default();
                if Arc::strong_count(&log) == 1 || to_file {
                    Ok(seen)
                } else {
                    Err(seen)
                }
            })
            .unwrap_or_else(|seen| seen);
            return Err(format!(
                "portcullis dev printed no readiness line within 60 s; its log:\n{said}"
            ));
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("readiness line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let env = parse_env(&std::fs::read_to_string(state.join("dev.env")).expect("dev.env"));
        Ok(Dev {
            child,
            state_dir: state.to_owned(),
            ready,
            env,
            _dir: None,
        })
    }

    pub(crate) fn api(&self) -> String {
        format!("https://{}", self.ready["api"].as_str().expect("api addr"))
    }

    pub(crate) fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .expect("dev.env variable")
    }

    /// A `portcullis` command with this dev's environment.
    pub(crate) fn cli(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env("PORTCULLIS_LOG", "warn");
        cmd
    }

    /// Runs `portcullis ssh-config` with `XDG_RUNTIME_DIR=runtime` and writes what it prints
    /// to `runtime/ssh_config`, the file `ssh -F` reads; its path.
    pub(crate) fn write_ssh_config(&self, runtime: &Path) -> PathBuf {
        let out = self
            .cli()
            .arg("ssh-config")
            .env("XDG_RUNTIME_DIR", runtime)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = runtime.join("ssh_config");
        std::fs::write(&config, &out.stdout).unwrap();
        config
    }

    /// `ssh -F config` as a user of this dev stack runs it: with its environment, and
    /// `XDG_RUNTIME_DIR=runtime` as when the config was written.
    pub(crate) fn ssh(&self, config: &Path, runtime: &Path) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-F").arg(config).env("XDG_RUNTIME_DIR", runtime);
        ssh.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ssh
    }

    /// Sends SIGTERM and waits (up to 30 s).
    pub(crate) fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let exited =
            super::wait::poll_within(Duration::from_secs(30), || match self.child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(()),
            });
        if exited.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `curl` against the API: returns (status, body).
pub(crate) fn curl(
    dev: &Dev,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(dev.var("PORTCULLIS_CA"))
        .args(["-X", method])
        .arg(format!("{}{}", dev.api(), path));
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        if b.len() > 65_536 {
            // Wait for the server's verdict before sending a large body: a refusal then
            // arrives instead of a reset.
            cmd.args(["-H", "Expect: 100-continue"]);
        }
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
