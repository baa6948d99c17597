//! `portcullis run` as a process, against a stand-in controller (the `/v1/requests` routes,
//! authorize-session checking the run's proof) and a stand-in worker (an echo after the
//! proxy handshake): the request carries the command line, the run waits for its approval,
//! the command gets the run socket and no token, `connect --stdio` inside it reaches the
//! target through the run (and only the run's targets), the command's status (or 128 +
//! signal) is the run's and is reported with run/finish, SIGTERM reaches the command, and
//! Ctrl-C while waiting revokes the request. The same against the real controller is the
//! lead's end-to-end test once the controller side is merged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::process::{Command, Stdio};
use std::time::Duration;

#[allow(dead_code)]
#[path = "common/wait.rs"]
mod wait;

use wait::wait_for;

/// How long a step of the run may take.
const LIMIT: Duration = Duration::from_secs(20);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `portcullis run ARGS` against the fakes, with a token in its environment.
fn run_command(fakes: &fake::Fakes, home: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .arg("run")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .env("PORTCULLIS_ADDR", &fakes.controller_addr)
        .env("PORTCULLIS_CA", &fakes.controller_ca)
        .env("PORTCULLIS_TOKEN", fake::TOKEN)
        .env("PC_BIN", env!("CARGO_BIN_EXE_portcullis"));
    command
}

#[test]
fn a_run_carries_its_commands_sessions_and_passes_its_status_on() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fakes = runtime.block_on(fake::start(fake::Approve::OnSecondLook));
    let home = tempfile::tempdir().unwrap();
    let script = r#"
        test -z "$PORTCULLIS_TOKEN" || { echo "token leaked"; exit 90; }
        env | grep -q pct_secret && { echo "token value leaked"; exit 91; }
        echo "socket-dir-mode $(stat -c %a "$(dirname "$PORTCULLIS_RUN_SOCKET")")"
        echo "reply $(printf hello | "$PC_BIN" connect echo --stdio)"
        "$PC_BIN" connect db --stdio </dev/null 2>&1 | tail -n 1
        "$PC_BIN" connect echo --write-session-file "$XDG_RUNTIME_DIR/f" 2>&1 | tail -n 1
        echo "listener $("$PC_BIN" connect echo --exec python3 -- -c 'import os, socket; s = socket.create_connection(("127.0.0.1", int(os.environ["PORTCULLIS_CONNECT_PORT"]))); s.sendall(b"listen"); s.shutdown(1); print(s.recv(100).decode())')"
        "$PC_BIN" ssh-prepare --suffix .pc echo.pc || exit 92
        d="$XDG_RUNTIME_DIR/portcullis/ssh/echo.pc"
        grep -q "PRIVATE KEY" "$d/session.json" && exit 93
        grep -q "grant" "$d/session.json" && exit 94
        echo "key-mode $(stat -c %a "$d/id_ed25519")"
        echo "options $(tr '\n' ' ' < "$d/login.conf")"
        echo "ssh-reply $(printf again | "$PC_BIN" connect echo --stdio --session-file "$d/session.json")"
        exit 7
    "#;
    let out = run_command(
        &fakes,
        home.path(),
        &[
            "--role",
            "echo-oncall",
            "--targets",
            "echo",
            "--for",
            "10m",
            "--",
            "sh",
            "-c",
            script,
        ],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("socket-dir-mode 700"), "{stdout}");
    assert!(stdout.contains("reply hello"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("db is not one of this run's targets (echo)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("inside `portcullis run`") && stdout.contains("not available"),
        "{stdout}"
    );
    // A listener under the run: its session opened by the run, its connection a join.
    assert!(stdout.contains("listener listen"), "{stdout}\n{stderr}");
    assert!(stderr.contains("waits for 1 approval(s)"), "{stderr}");
    // ssh-prepare through the run: ssh's files, a session file with no key, joined by the
    // ProxyCommand's `connect --stdio --session-file` through the run.
    assert!(stdout.contains("key-mode 600"), "{stdout}");
    assert!(
        stdout.contains("options User deploy HostKeyAlias portcullis.echo CertificateFile"),
        "{stdout}"
    );
    assert!(stdout.contains("ssh-reply again"), "{stdout}\n{stderr}");
    let session_file = home.path().join("portcullis/ssh/echo.pc/session.json");
    let joined = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["connect", "echo", "--stdio", "--session-file"])
        .arg(&session_file)
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!joined.status.success());
    assert!(
        text(&joined.stderr).contains("only that run's command can join it"),
        "{}",
        text(&joined.stderr)
    );
    assert!(!stdout.contains(fake::TOKEN) && !stderr.contains(fake::TOKEN));

    let seen = fakes.seen.lock().unwrap().clone();
    let created = seen.created.expect("the request was made");
    assert_eq!(created["role"], "echo-oncall");
    assert_eq!(created["targets"], serde_json::json!(["echo"]));
    assert_eq!(created["duration_secs"], 600);
    assert_eq!(created["run_command"][0], "sh");
    assert!(seen.started_key.is_some(), "run/start carried the key");
    assert_eq!(seen.keepalive_secs, Some(30));
    assert_eq!(
        seen.proofs,
        vec![true, true, true],
        "three sessions (connect, the --exec listener, ssh-prepare), each with its proof by \
         the run's key"
    );
    assert!(seen
        .ssh_public_key
        .as_deref()
        .is_some_and(|k| k.starts_with("ssh-ed25519 ")));
    assert_eq!(seen.cancel_reason.as_deref(), Some("closed"));
    assert_eq!(seen.finished, Some(serde_json::json!({"exit_status": 7})));
    // Only the run process ever spoke to the controller: every request carried the token,
    // and the command's `connect`s sent none (they never reached the API).
    assert!(
        seen.requests_without_token.is_empty(),
        "{:?}",
        seen.requests_without_token
    );
    // The socket's directory is gone with the run.
    let left: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("portcullis-run-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn sigterm_reaches_the_command_and_its_end_is_reported() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fakes = runtime.block_on(fake::start(fake::Approve::AtOnce));
    let home = tempfile::tempdir().unwrap();
    let ready = home.path().join("ready");
    let script = format!(
        "trap 'exit 42' TERM; touch {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let mut child = run_command(
        &fakes,
        home.path(),
        &[
            "--role",
            "r",
            "--targets",
            "echo",
            "--for",
            "1m",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for("the command to start", LIMIT, || ready.exists());
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "the command's trap decided the status"
    );
    let seen = fakes.seen.lock().unwrap().clone();
    assert_eq!(seen.finished, Some(serde_json::json!({"exit_status": 42})));

    // A command killed by a signal: 128 + N, reported as the signal.
    let out = run_command(
        &fakes,
        home.path(),
        &[
            "--role",
            "r",
            "--targets",
            "echo",
            "--for",
            "1m",
            "--",
            "sh",
            "-c",
            "kill -KILL $$",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let seen = fakes.seen.lock().unwrap().clone();
    assert_eq!(
        seen.finished,
        Some(serde_json::json!({"exit_status": null, "signal": 9}))
    );
}

#[test]
fn ctrl_c_while_waiting_revokes_the_request() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fakes = runtime.block_on(fake::start(fake::Approve::Never));
    let home = tempfile::tempdir().unwrap();
    let marker = home.path().join("ran");
    let script = format!("touch {}", marker.display());
    let child = run_command(
        &fakes,
        home.path(),
        &[
            "--role",
            "r",
            "--targets",
            "echo",
            "--for",
            "1m",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for("the run to wait for approval", LIMIT, || {
        fakes.seen.lock().unwrap().polls > 0
    });
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("request ar_1 revoked"),
        "{}",
        text(&out.stderr)
    );
    assert!(fakes.seen.lock().unwrap().revoked);
    assert!(!marker.exists(), "the command never ran");
}

mod fake {
    use std::sync::{Arc, Mutex};

    use portcullis_crypto::tls;
    use portcullis_proto::{access, keys, proxy};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use serde_json::{json, Value};
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    pub(super) const TOKEN: &str = "pct_secret-run-token";
    const HOST_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Approve {
        AtOnce,
        OnSecondLook,
        Never,
    }

    #[derive(Debug, Default, Clone)]
    pub(super) struct Seen {
        pub created: Option<Value>,
        pub polls: u32,
        pub revoked: bool,
        pub started_key: Option<Vec<u8>>,
        pub keepalive_secs: Option<u64>,
        /// Per authorize-session: whether its run proof verified with the started key.
        pub proofs: Vec<bool>,
        pub cancel_reason: Option<String>,
        pub finished: Option<Value>,
        pub ssh_public_key: Option<String>,
        pub requests_without_token: Vec<String>,
    }

    pub(super) struct Fakes {
        pub controller_addr: String,
        pub controller_ca: std::path::PathBuf,
        pub seen: Arc<Mutex<Seen>>,
        _dir: tempfile::TempDir,
    }

    struct State {
        seen: Arc<Mutex<Seen>>,
        approve: Approve,
        worker_addr: String,
        fingerprint: String,
    }

    pub(super) async fn start(approve: Approve) -> Fakes {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (worker_addr, fingerprint) = worker().await;
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca_pem) = controller_tls();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            seen: seen.clone(),
            approve,
            worker_addr,
            fingerprint,
        });
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some((head, body)) = read_request(&mut tls).await else {
                        return;
                    };
                    let reply = answer(&head, &body, &state).to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Fakes {
            controller_addr: addr,
            controller_ca: ca,
            seen,
            _dir: dir,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn request(state: &str) -> Value {
        json!({
            "id": "ar_1", "user_id": "u_1", "username": "ci", "role": "echo-oncall",
            "targets": ["echo"], "state": state, "reason": null, "break_glass": false,
            "duration_secs": 600, "created_at": now(),
            "approved_at": if state == "approved" { Some(now()) } else { None },
            "expires_at": now() + 600,
            "approvals_needed": if state == "pending" { 1 } else { 0 },
            "approvals": []
        })
    }

    fn answer(head: &str, body: &[u8], state: &State) -> Value {
        let line = head.lines().next().unwrap_or_default().to_owned();
        let json: Value = serde_json::from_slice(body).unwrap_or_default();
        let mut seen = state.seen.lock().unwrap();
        let bearer = format!("authorization: Bearer {TOKEN}");
        if !head.lines().any(|l| l.eq_ignore_ascii_case(&bearer)) {
            seen.requests_without_token.push(line.clone());
        }
        if line.starts_with("POST /v1/requests ") {
            seen.created = Some(json);
            request(if state.approve == Approve::AtOnce {
                "approved"
            } else {
                "pending"
            })
        } else if line.starts_with("GET /v1/requests/ar_1 ") {
            seen.polls += 1;
            match state.approve {
                Approve::Never => request("pending"),
                _ if seen.polls < 2 => request("pending"),
                _ => request("approved"),
            }
        } else if line.starts_with("POST /v1/requests/ar_1/revoke ") {
            seen.revoked = true;
            request("revoked")
        } else if line.starts_with("POST /v1/requests/ar_1/run/start ") {
            let key = keys::unb64(json["run_public_key"].as_str().unwrap()).unwrap();
            seen.started_key = Some(key);
            seen.keepalive_secs = json["keepalive_secs"].as_u64();
            request("approved")
        } else if line.starts_with("POST /v1/requests/ar_1/run/keepalive ") {
            json!({})
        } else if line.starts_with("POST /v1/requests/ar_1/run/finish ") {
            seen.finished = Some(json);
            json!({})
        } else if line.starts_with("POST /v1/targets/echo/authorize-session ") {
            let verified = (|| {
                let spki = seen.started_key.clone()?;
                let raw = keys::ed25519_from_spki(&spki).ok()?;
                let under = &json["under_request"];
                let message = access::run_proof_message(
                    under["request_id"].as_str()?,
                    json["client_public_key"].as_str()?,
                );
                let proof = keys::unb64(under["run_proof"].as_str()?).ok()?;
                portcullis_crypto::ed25519::verify(&raw, &message, &proof).ok()
            })()
            .is_some();
            seen.proofs.push(verified);
            let mut authorization = json!({
                "session_id": "s_1", "target_id": "t_1", "target_name": "echo",
                "worker_id": "w_1", "worker_addr": state.worker_addr,
                "worker_key_fingerprint": state.fingerprint, "expires_at": now() + 600,
                "connection_limit": 0, "grant": "the-grant", "endpoint": "127.0.0.1:7"
            });
            if let Some(key) = json["ssh_public_key"].as_str() {
                seen.ssh_public_key = Some(key.to_owned());
                authorization["ssh_certificate"] =
                    json!("ssh-ed25519-cert-v01@openssh.com AAAAnot-checked-here");
                authorization["ssh_principals"] = json!(["deploy"]);
            }
            authorization
        } else if line.starts_with("GET /v1/targets/echo ") {
            json!({
                "id": "t_1", "name": "echo", "address": "127.0.0.1:22", "zone": null,
                "service": "ssh", "vmid": null, "tags": [], "pool": null,
                "max_session_secs": 3600, "connection_limit": 0,
                "ssh_host_keys": [HOST_KEY], "created_at": 0, "updated_at": 0
            })
        } else if line.starts_with("POST /v1/sessions/s_1/cancel ") {
            seen.cancel_reason = json["reason"].as_str().map(str::to_owned);
            json!({
                "id": "s_1", "user_id": "u_1", "username": "ci", "target_id": "t_1",
                "target_name": "echo", "worker_id": "w_1", "state": "terminated",
                "termination_reason": json["reason"], "client_addr": "127.0.0.1",
                "endpoint": "127.0.0.1:7", "connection_limit": 0, "created_at": now(),
                "expires_at": now() + 600, "activated_at": null, "terminated_at": now(),
                "connections": []
            })
        } else {
            json!({"error": format!("the fake controller does not know {line}")})
        }
    }

    /// The controller's HTTPS identity for 127.0.0.1 and its CA's PEM.
    fn controller_tls() -> (TlsAcceptor, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = tls::https_server_config(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            b"http/1.1",
        )
        .unwrap();
        (TlsAcceptor::from(Arc::new(config)), ca.pem())
    }

    /// A worker's proxy listener: the hello, `accepted`, then an echo.
    async fn worker() -> (String, String) {
        use rcgen::PublicKeyData as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["worker".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let fingerprint = keys::spki_fingerprint(&key.subject_public_key_info());
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let config = tls::server_config(
            Arc::new(tls::verify::AnyKey),
            tls::ServerCert::Single {
                chain,
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            },
            proxy::ALPN,
        )
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut len = [0u8; 4];
                    if tls.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
                    tls.read_exact(&mut hello).await.unwrap();
                    let hello: proxy::ClientHello = proxy::decode_frame(&hello).unwrap();
                    assert_eq!(hello.grant, "the-grant");
                    let accepted = proxy::WorkerReply::Accepted {
                        connection_id: "c_1".into(),
                    };
                    tls.write_all(&proxy::encode_frame(&accepted).unwrap())
                        .await
                        .unwrap();
                    let (mut read, mut write) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = write.shutdown().await;
                });
            }
        });
        (addr, fingerprint)
    }

    /// One HTTP/1.1 request: its head and its body (by Content-Length).
    async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = buf[end..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some((head, body))
    }
}
