//! A controller and workers as separate processes with their own config files, an echo
//! target, and a pausable TCP proxy to cut links: the pieces of a real deployment on
//! 127.0.0.1.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dev::bin;
use super::netns::Place;

/// Spawns `portcullis ARGS` in `place` and waits for its JSON readiness line.
pub(crate) fn spawn_ready(
    place: &Place,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, serde_json::Value) {
    let mut cmd = place.command(bin());
    cmd.args(args)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => (child, serde_json::from_str(&line).expect("readiness JSON")),
        Err(_) => {
            let _ = child.kill();
            panic!("{args:?} printed no readiness line")
        }
    }
}

pub(crate) fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

/// Waits for `child` to exit and returns its status.
///
/// # Panics
///
/// When it is still running after `limit`.
pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let pid = child.id();
    super::wait::poll(&format!("process {pid} to exit"), limit, || {
        match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// `DIR/master.key`, the master key of a test controller in `dir`, written if missing.
pub(crate) fn master_key(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let master = dir.join("master.key");
    if !master.exists() {
        use std::os::unix::fs::OpenOptionsExt as _;
        // One key for every test controller (they may share a store), readable by its
        // owner only: the controller refuses a key file others can read.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&master)
            .unwrap();
        file.write_all("ab".repeat(32).as_bytes()).unwrap();
    }
    master
}

pub(crate) struct Controller {
    pub child: Child,
    pub place: Place,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub api: String,
    pub cluster: String,
    pub ca: PathBuf,
    pub token: String,
    /// The ops listener's address, when it has one (`[ops]`).
    pub ops: Option<String>,
}

impl Controller {
    /// A controller on SQLite in `dir` with the dev policy and short timers.
    pub(crate) fn start(dir: &Path) -> Controller {
        Controller::start_with(dir, "")
    }

    /// Like [`Controller::start`], with extra lines for the `[workers]` section.
    pub(crate) fn start_with(dir: &Path, workers_extra: &str) -> Controller {
        let url = format!("sqlite://{}", dir.join("portcullis.db").display());
        Controller::start_on(dir, &url, workers_extra)
    }

    /// A controller on the store at `url` (several controllers may share a PostgreSQL
    /// database; they share the master key every test controller uses).
    pub(crate) fn start_on(dir: &Path, url: &str, workers_extra: &str) -> Controller {
        Controller::start_full(dir, url, "", workers_extra)
    }

    /// Extra lines for the `[cluster]` and `[workers]` sections.
    pub(crate) fn start_full(
        dir: &Path,
        url: &str,
        cluster_extra: &str,
        workers_extra: &str,
    ) -> Controller {
        Controller::start_in(&Place::host(), dir, url, cluster_extra, workers_extra)
    }

    /// The most general start: in `place` (a zone's network namespace, listening on its
    /// address), with extra lines for the `[cluster]` and `[workers]` sections.
    pub(crate) fn start_in(
        place: &Place,
        dir: &Path,
        url: &str,
        cluster_extra: &str,
        workers_extra: &str,
    ) -> Controller {
        let dev_policy = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy-dev.toml");
        Controller::start_policy(
            place,
            dir,
            url,
            Path::new(dev_policy),
            cluster_extra,
            workers_extra,
        )
    }

    /// Like [`Controller::start_in`], with the policy file `policy` instead of the dev
    /// policy (copied into `dir`).
    pub(crate) fn start_policy(
        place: &Place,
        dir: &Path,
        url: &str,
        policy_file: &Path,
        cluster_extra: &str,
        workers_extra: &str,
    ) -> Controller {
        Controller::start_configured(
            place,
            dir,
            url,
            policy_file,
            "",
            cluster_extra,
            workers_extra,
        )
    }

    /// A controller on SQLite in `dir` with the dev policy and extra lines for `[api]`.
    pub(crate) fn start_with_api(dir: &Path, api_extra: &str) -> Controller {
        let url = format!("sqlite://{}", dir.join("portcullis.db").display());
        let dev_policy = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy-dev.toml");
        Controller::start_configured(
            &Place::host(),
            dir,
            &url,
            Path::new(dev_policy),
            api_extra,
            "",
            "",
        )
    }

    /// Like [`Controller::start_policy`], with extra lines for `[api]` too.
    pub(crate) fn start_configured(
        place: &Place,
        dir: &Path,
        url: &str,
        policy_file: &Path,
        api_extra: &str,
        cluster_extra: &str,
        workers_extra: &str,
    ) -> Controller {
        let ip = &place.ip;
        let master = master_key(dir);
        let policy = dir.join("policy.toml");
        std::fs::copy(policy_file, &policy).unwrap();
        let config = dir.join("controller.toml");
        // Tests hear from workers quickly, unless `workers_extra` sets its own pace.
        let pace = if workers_extra.contains("heartbeat_interval") {
            ""
        } else {
            "heartbeat_interval = 0.2\nlost_after = 3\n"
        };
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"{url}\"\n[keys]\nmaster_key_file = \"{}\"\n[api]\nlisten = \"{ip}:0\"\ntls_names = [\"localhost\", \"{ip}\"]\n{api_extra}\n\
                 [cluster]\nlisten = \"{ip}:0\"\n{cluster_extra}\n[policy]\nfile = \"{}\"\n\
                 [sessions]\nsweep_interval = 0.5\n[workers]\n{pace}{workers_extra}\n",
                master.display(),
                policy.display(),
            ),
        )
        .unwrap();
        let ca = dir.join("ca.pem");
        let out = Command::new(bin())
            .args(["controller", "ca", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&ca, &out.stdout).unwrap();
        let (child, ready) = spawn_ready(
            place,
            &["controller", "run", "--config", config.to_str().unwrap()],
            &[],
        );
        let api = format!("https://{}", ready["api"].as_str().unwrap());
        let mut c = Controller {
            child,
            place: place.clone(),
            dir: dir.to_owned(),
            config,
            api,
            cluster: ready["cluster"].as_str().unwrap().to_owned(),
            ca,
            token: String::new(),
            ops: ready["ops"].as_str().map(str::to_owned),
        };
        c.token = c.issue_token("admin", &["admins"]);
        c
    }

    /// An API token for `user` in `groups` (with MFA), from the break-glass command
    /// `portcullis controller issue-token` (a controller run from a config has no dev login).
    pub(crate) fn issue_token(&self, user: &str, groups: &[&str]) -> String {
        let out = Command::new(bin())
            .args([
                "controller",
                "issue-token",
                "--json",
                "--amr",
                "mfa",
                "--config",
            ])
            .arg(&self.config)
            .args(["--user", user])
            .args(groups.iter().flat_map(|g| ["--group", g]))
            .env("PORTCULLIS_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) fn join_token(&self) -> String {
        let out = Command::new(bin())
            .args(["controller", "join-token", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub(crate) fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.curl_as(&self.token, method, path, body)
    }

    /// Like [`Controller::curl`] with another user's token (none when empty).
    pub(crate) fn curl_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let mut cmd = self.place.command("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(&self.ca)
            .args(["-X", method])
            .arg(format!("{}{}", self.api, path));
        if !token.is_empty() {
            cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Creates the target `name` at `address` (zone `LOCAL`, service `echo`); returns its id.
    pub(crate) fn create_target(&self, name: &str, address: &str) -> String {
        let body = serde_json::json!({"name": name, "address": address, "zone": "LOCAL", "service": "echo"})
            .to_string();
        let (code, text) = self.curl("POST", "/v1/targets", Some(&body));
        assert_eq!(code, 201, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The set-up most cluster tests start from: a worker in `dir/w1`, enrolled with this
    /// controller's join token and linked over `links` (this controller's `cluster` address,
    /// a [`PausableProxy`] in front of it, or several controllers), with `extra` lines of
    /// worker config; and the target `echo` at a new [`echo`] server.
    pub(crate) fn join_worker_with_echo(
        &self,
        dir: &Path,
        links: &[String],
        extra: &str,
    ) -> Worker {
        let worker = Worker::start(&dir.join("w1"), links, Some(&self.join_token()), extra)
            .unwrap_or_else(|e| panic!("the worker did not start: {e}"));
        self.create_target("echo", &echo());
        worker
    }

    /// A `portcullis` CLI command talking to this controller.
    pub(crate) fn cli(&self) -> Command {
        let mut cmd = self.place.command(bin());
        cmd.env("PORTCULLIS_ADDR", &self.api)
            .env("PORTCULLIS_CA", &self.ca)
            .env("PORTCULLIS_TOKEN", &self.token)
            .env("PORTCULLIS_LOG", "warn");
        cmd
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Worker {
    pub child: Child,
    pub id: String,
    pub proxy: String,
    /// The ops listener's address, when it has one (`[ops]`).
    pub ops: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Worker {
    /// A worker in `dir` linked to `controllers`; `token` for the first start.
    pub(crate) fn start(
        dir: &Path,
        controllers: &[String],
        token: Option<&str>,
        extra: &str,
    ) -> Result<Worker, String> {
        Worker::start_in(&Place::host(), 0, dir, controllers, token, extra)
    }

    /// Like [`Worker::start`], in `place` with its proxy on `proxy_port` (0: any) of the
    /// place's address.
    pub(crate) fn start_in(
        place: &Place,
        proxy_port: u16,
        dir: &Path,
        controllers: &[String],
        token: Option<&str>,
        extra: &str,
    ) -> Result<Worker, String> {
        let ip = &place.ip;
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("worker.toml");
        let list = controllers
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "[worker]\nname = \"{}\"\nstate_dir = \"{}\"\ncontrollers = [{list}]\nproxy_listen = \"{ip}:{proxy_port}\"\n{extra}\n",
                dir.file_name().unwrap().to_string_lossy(),
                dir.join("state").display()
            ),
        )
        .unwrap();
        let mut cmd = place.command(bin());
        cmd.args(["worker", "run", "--config"])
            .arg(&config)
            .env("PORTCULLIS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("PORTCULLIS_JOIN_TOKEN", t);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let _ = stdout.read_line(&mut line);
        std::thread::spawn(move || for _ in stdout.lines() {});
        if line.is_empty() {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.wait();
            return Err(err);
        }
        // The worker's log goes to the test's captured output, shown when a test fails, and is
        // kept for tests that look for a line in it.
        let log = Arc::new(Mutex::new(String::new()));
        let (sink, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[worker] {line}");
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let ready: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{e}: {line}"));
            }
        };
        Ok(Worker {
            child,
            id: ready["worker_id"].as_str().unwrap().to_owned(),
            proxy: ready["proxy"].as_str().unwrap().to_owned(),
            ops: ready["ops"].as_str().map(str::to_owned),
            log,
        })
    }

    /// The worker's log (stderr) so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An echo server on 127.0.0.1 (threads), with half-close.
pub(crate) fn echo() -> String {
    echo_on("127.0.0.1")
}

/// An echo server on `ip` (any loopback address: each zone of a test policy has its own),
/// with half-close; its address.
pub(crate) fn echo_on(ip: &str) -> String {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 16384];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A TCP proxy the test can pause: paused, it cuts every connection and refuses new ones.
pub(crate) struct PausableProxy {
    pub addr: String,
    paused: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl PausableProxy {
    pub(crate) fn start(upstream: &str) -> PausableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let paused = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (p, l, up) = (paused.clone(), live.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if p.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&up) else {
                    continue;
                };
                if let Ok(mut live) = l.lock() {
                    live.push(client.try_clone().unwrap());
                    live.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        PausableProxy { addr, paused, live }
    }

    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        if let Ok(mut live) = self.live.lock() {
            for s in live.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    pub(crate) fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}
