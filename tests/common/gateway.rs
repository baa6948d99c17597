//! SSH in gateway mode end to end: a dev stack whose policy puts SSH through the worker's
//! gateway (tests/fixtures/policy-gateway.toml), a real sshd target `web-01` that trusts the
//! CA minting the worker's certificates, and a client with a HOME and TMPDIR of its own, so
//! a test can look at everything the client side wrote. Also the tools the tests drive the
//! client with: tmux for a real terminal, a canary listener that counts who reaches it.

use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::dev::{bin, curl, Dev};
use super::sshd::{login_user, Sshd};
use super::vault::Bao;
use super::wait::poll;

/// The target every gateway test reaches.
pub(crate) const TARGET: &str = "web-01";
/// The target's name as ssh reaches it through the `ssh-config` block.
pub(crate) const HOST: &str = "web-01.pc";
/// The gateway's one host name (proto's `gateway::HOST_ALIAS`).
pub(crate) const HOST_ALIAS: &str = "portcullis-gateway";

/// How the stack differs from the default one.
#[derive(Default)]
pub(crate) struct Setup<'a> {
    /// Extra sshd_config lines for the target.
    pub sshd_config: &'a str,
    /// A host key pinned on the target instead of sshd's own.
    pub pinned_host_key: Option<&'a str>,
    /// Certificates from this OpenBao (`ssh.backend = "vault"`) instead of the embedded CA.
    pub vault: Option<&'a Bao>,
}

pub(crate) struct Gateway {
    pub dev: Dev,
    pub sshd: Sshd,
    /// The client's HOME; `ssh-prepare` keeps its sessions under HOME/run (XDG_RUNTIME_DIR).
    pub home: tempfile::TempDir,
    /// The client's TMPDIR (`connect ssh` makes its private directory there).
    pub tmp: tempfile::TempDir,
    /// What `portcullis ssh-config` printed.
    pub config: PathBuf,
    _work: tempfile::TempDir,
}

pub(crate) fn policy_fixture() -> &'static str {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/policy-gateway.toml"
    )
}

impl Gateway {
    pub(crate) fn start() -> Gateway {
        Gateway::start_with(&Setup::default())
    }

    pub(crate) fn start_with(setup: &Setup<'_>) -> Gateway {
        let user = login_user();
        let work = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--user".to_owned(),
            user.clone(),
            "--worker-egress".to_owned(),
            "127.0.0.2".to_owned(),
            "--policy".to_owned(),
            policy_fixture().to_owned(),
        ];
        if let Some(bao) = setup.vault {
            let config = work.path().join("controller.toml");
            std::fs::write(
                &config,
                format!(
                    "[ssh]\nbackend = \"vault\"\n[vault]\naddress = \"{}\"\ntoken_file = \"{}\"\n\
                     ssh_role = \"{}\"\ntoken_role = \"{}\"\n",
                    bao.addr,
                    bao.controller_token_file("1h").display(),
                    super::vault::SSH_ROLE,
                    super::vault::TOKEN_ROLE
                ),
            )
            .unwrap();
            args.push("--config".to_owned());
            args.push(config.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dev = Dev::start(&args);
        let user_ca = match setup.vault {
            Some(bao) => bao.ssh_ca(),
            None => {
                let (code, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
                assert_eq!(code, 200, "{ca}");
                ca
            }
        };
        let sshd_config = format!("Subsystem sftp internal-sftp\n{}", setup.sshd_config);
        let sshd = Sshd::start_configured(&user_ca, &[&user], None, &sshd_config);
        let body = serde_json::json!({
            "name": TARGET,
            "address": format!("127.0.0.1:{}", sshd.port),
            "zone": "LOCAL",
            "service": "echo",
            "ssh_host_keys": [setup.pinned_host_key.unwrap_or(&sshd.host_key_pub)],
        })
        .to_string();
        let token = dev.var("PORTCULLIS_TOKEN");
        let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&token), Some(&body));
        assert_eq!(code, 201, "{text}");
        let home = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("run")).unwrap();
        let config = dev.write_ssh_config(&home.path().join("run"));
        Gateway {
            dev,
            sshd,
            home,
            tmp,
            config,
            _work: work,
        }
    }

    /// The client's environment on `cmd`: the dev stack's, and its own HOME, TMPDIR and
    /// XDG_RUNTIME_DIR.
    pub(crate) fn client_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(self.dev.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORTCULLIS_LOG", "warn")
            .env("HOME", self.home.path())
            .env("TMPDIR", self.tmp.path())
            .env("XDG_RUNTIME_DIR", self.runtime())
    }

    /// A `portcullis` command as the client runs it.
    pub(crate) fn cli(&self) -> Command {
        let mut cmd = Command::new(bin());
        self.client_env(&mut cmd);
        cmd
    }

    /// `ssh -F CONFIG` (the blocks `portcullis ssh-config` printed) as the client runs it,
    /// never waiting for a prompt.
    pub(crate) fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        self.client_env(&mut cmd).arg("-F").arg(&self.config).args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=30",
        ]);
        cmd
    }

    /// A tool that runs ssh (`scp`, `sftp`, `rsync`) with the same environment.
    pub(crate) fn tool(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        self.client_env(&mut cmd);
        cmd
    }

    /// Runs `cmd`, which must succeed; its stdout, trimmed.
    pub(crate) fn ok(&self, cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed ({}):\n{}{}\nsshd:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs `cmd`, which must fail; its output.
    pub(crate) fn fails(&self, cmd: &mut Command) -> Output {
        let out = cmd.output().unwrap();
        assert!(
            !out.status.success(),
            "{cmd:?} succeeded:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn runtime(&self) -> PathBuf {
        self.home.path().join("run")
    }

    /// Where `ssh-prepare` keeps the target's session.
    pub(crate) fn session_dir(&self) -> PathBuf {
        self.runtime().join("portcullis/ssh").join(HOST)
    }

    /// The id of the session `ssh-prepare` has on disk.
    pub(crate) fn cached_session_id(&self) -> String {
        let text = std::fs::read_to_string(self.session_dir().join("session.json")).unwrap();
        let file: Value = serde_json::from_str(&text).unwrap();
        file["session_id"].as_str().unwrap().to_owned()
    }

    /// The gateway host CA as `GET /v1/ssh/gateway-ca` serves it (key type and key).
    pub(crate) fn gateway_ca(&self) -> String {
        let (code, text) = curl(&self.dev, "GET", "/v1/ssh/gateway-ca", None, None);
        assert_eq!(code, 200, "{text}");
        key_words(&text)
    }

    /// Audit events matching `query` (e.g. `session=s_1`), newest first.
    pub(crate) fn audit(&self, query: &str) -> Vec<Value> {
        let token = self.dev.var("PORTCULLIS_TOKEN");
        let (code, text) = curl(
            &self.dev,
            "GET",
            &format!("/v1/audit?limit=1000&{query}"),
            Some(&token),
            None,
        );
        assert_eq!(code, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        answer["items"].as_array().unwrap().clone()
    }

    /// Waits for the audit event of a refused channel of `session` whose details name
    /// `channel` (as the SSH protocol names it), and returns it.
    pub(crate) fn channel_refusal(&self, session: &str, channel: &str) -> Value {
        poll(
            &format!("an audited refusal of {channel} in session {session}"),
            Duration::from_secs(30),
            || {
                let events = self.audit(&format!("session={session}"));
                events
                    .iter()
                    .find(|e| {
                        e["type"]
                            .as_str()
                            .is_some_and(|t| t.contains("channel_refused"))
                            && e["details"].to_string().contains(channel)
                    })
                    .cloned()
                    .ok_or_else(|| summary(&events))
            },
        )
    }

    /// sshd's `Accepted publickey` lines.
    pub(crate) fn accepted(&self) -> Vec<String> {
        self.sshd
            .log()
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until a session is no longer live; returns it as the API shows it.
    pub(crate) fn wait_ended(&self, session: &str) -> Value {
        let token = self.dev.var("PORTCULLIS_TOKEN");
        poll(
            &format!("session {session} to end"),
            Duration::from_secs(30),
            || {
                let (_, text) = curl(
                    &self.dev,
                    "GET",
                    &format!("/v1/sessions/{session}"),
                    Some(&token),
                    None,
                );
                let v: Value = serde_json::from_str(&text).map_err(|_| text.clone())?;
                match v["state"].as_str() {
                    Some(state) if state != "pending" && state != "active" => Ok(v),
                    _ => Err(text),
                }
            },
        )
    }
}

/// How many forwards to `port` the target's sshd refused (refused outright, or not
/// permitted by `PermitOpen`): each shows that the forward was asked of the target.
pub(crate) fn target_refused_forwards(log: &str, port: u16) -> usize {
    let denied = format!("port {port}, but the request was denied");
    let refused = format!("port {port}");
    log.lines()
        .filter(|l| {
            l.contains(&denied)
                || (l.contains("refused local port forward") && l.ends_with(&refused))
        })
        .count()
}

/// The type and key of an OpenSSH public key line (no comment).
pub(crate) fn key_words(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn summary(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("{} {}", e["type"], e["details"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a look through the client's directories found that would be a credential of the
/// target: any SSH certificate, and any private key but the session's own ones (`allowed`:
/// the files that may hold one: the per-session SSH key and the session hand-off file with
/// the per-session TLS key).
pub(crate) fn target_credentials(dirs: &[&Path], allowed: &dyn Fn(&Path) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let name = path.display().to_string();
            if name.ends_with("-cert.pub") {
                found.push(format!("{name}: a certificate file"));
            }
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            if text.contains("-cert-v01@openssh.com") {
                found.push(format!("{name}: holds an SSH certificate"));
            }
            if (text.contains("PRIVATE KEY") || text.contains("CERTIFICATE")) && !allowed(&path) {
                found.push(format!("{name}: holds a key or certificate"));
            }
        }
    }
    found
}

/// A tmux server of its own (a private socket) running one command in a terminal, killed at
/// drop. Panes stay after their command exits, so a test sees how it ended.
pub(crate) struct Tmux {
    socket: PathBuf,
    /// Where the pane's shell writes the command's exit status: read from a file, not from
    /// tmux, whose server may be gone by then (it exits with its last pane).
    status: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a 160x40 terminal with `gateway`'s client
    /// environment.
    pub(crate) fn start(gateway: &Gateway, command: &str) -> Tmux {
        Tmux::start_with(&|cmd| gateway.client_env(cmd), command)
    }

    /// Like [`Tmux::start`], with the environment `client_env` sets on a command.
    pub(crate) fn start_with(
        client_env: &dyn Fn(&mut Command) -> &mut Command,
        command: &str,
    ) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let conf = dir.path().join("tmux.conf");
        let status = dir.path().join("status");
        let command = format!(
            "{command}; echo $? > {}.tmp && mv {0}.tmp {0}",
            status.display()
        );
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g history-limit 5000\n",
        )
        .unwrap();
        let mut cmd = Command::new("tmux");
        client_env(&mut cmd);
        let out = cmd
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "gw",
                "-x",
                "160",
                "-y",
                "40",
                &command,
            ])
            .output()
            .expect("tmux (scripts/test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux {
            socket,
            status,
            _dir: dir,
        }
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    /// Types `keys` and Enter.
    pub(crate) fn type_line(&self, keys: &str) {
        let out = self
            .tmux()
            .args(["send-keys", "-t", "gw", "-l", keys])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self
            .tmux()
            .args(["send-keys", "-t", "gw", "Enter"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The terminal's text, with its scrollback.
    pub(crate) fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-", "-t", "gw"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the terminal shows `text`; the screen.
    pub(crate) fn wait_for_text(&self, text: &str, limit: Duration) -> String {
        poll(&format!("the terminal to show {text:?}"), limit, || {
            let screen = self.screen();
            if screen.contains(text) {
                Ok(screen)
            } else {
                Err(screen)
            }
        })
    }

    /// The command's exit status once it has exited.
    pub(crate) fn exited(&self) -> Option<i32> {
        std::fs::read_to_string(&self.status)
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// A listener on 127.0.0.1 that counts the connections it accepts, and answers none.
pub(crate) struct Canary {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Canary {
    pub(crate) fn start() -> Canary {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if conn.is_ok() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Canary {
            port,
            accepted,
            stop,
        }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        // Wakes the accept loop, which sees the flag first and stops without counting.
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The lines a child wrote to a pipe so far, read by a thread.
pub(crate) fn collect_lines(
    pipe: impl std::io::Read + Send + 'static,
) -> Arc<std::sync::Mutex<String>> {
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
    seen
}

/// SHA-256 of a file, hex (as `sha256sum` prints it).
pub(crate) fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A file of `len` random bytes (not compressible, so no transfer shortcut hides a
/// corruption).
pub(crate) fn random_file(path: &Path, len: u64) {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .take(len)
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A directory under /tmp the target's login can write to (the target is this machine), for
/// files sent to it.
pub(crate) fn remote_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("portcullis-gw-remote-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}
