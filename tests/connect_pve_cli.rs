//! `portcullis connect` for Proxmox API targets, the CLI's side alone: the help teaches the
//! socket, Terraform, Ansible and curl set-ups and names every variable `--exec` sets;
//! mistaken flags are refused before any session is asked for; and `--exec` against a
//! stand-in controller and worker serves loopback HTTPS whose requests carry the local
//! secret whose hash the controller got. The sessions against a real controller, worker and
//! the fake Proxmox API (the token injected, the secret checked) are tested end to end
//! elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

/// Runs the CLI with a home of its own and no controller to talk to.
fn portcullis(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path().join("run"))
        .env("PORTCULLIS_ADDR", "https://127.0.0.1:9")
        .env("PORTCULLIS_TOKEN", "pct_not-a-real-token")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_help_teaches_the_proxmox_api_set_ups() {
    let out = portcullis(&["connect", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for needle in [
        "--socket <PATH>",
        "curl --unix-socket $XDG_RUNTIME_DIR/portcullis/pve-1.sock http://pve/api2/json/version",
        "portcullis connect pve-1 --exec -- terraform apply",
        "portcullis connect pve-1 --exec -- ansible-playbook vms.yml",
        "portcullis connect pve-1 --listen-port 8006",
        "X-Portcullis-Session-Secret",
    ] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
    for variable in [
        "PORTCULLIS_PVE_URL",
        "PROXMOX_VE_ENDPOINT",
        "PROXMOX_VE_API_TOKEN",
        "PROXMOX_HOST",
        "PROXMOX_PORT",
        "PROXMOX_USER",
        "PROXMOX_TOKEN_ID",
        "PROXMOX_TOKEN_SECRET",
        "PROXMOX_VALIDATE_CERTS",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ] {
        assert!(help.contains(variable), "{variable} not in the help");
    }

    let out = portcullis(&["targets", "update", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("--proxmox-cluster <CLUSTER>"), "{help}");
    assert!(help.contains("--clear-proxmox-cluster"), "{help}");
}

#[test]
fn mistaken_flags_are_refused_before_any_session() {
    // The controller address answers nothing: these fail on the flags alone.
    let out = portcullis(&["connect", "pve-1", "--exec", "--"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("name the command to run"), "{err}");
    assert!(!err.contains("cannot reach"), "no request was made: {err}");

    for conflicting in [
        &[
            "connect",
            "pve-1",
            "--socket",
            "s.sock",
            "--listen-port",
            "0",
        ][..],
        &[
            "connect",
            "pve-1",
            "--socket",
            "s.sock",
            "--listen-unix",
            "u.sock",
        ][..],
        &["connect", "pve-1", "--socket", "s.sock", "--stdio"][..],
    ] {
        let out = portcullis(conflicting);
        assert_eq!(out.status.code(), Some(2), "{conflicting:?}");
        let err = text(&out.stderr);
        assert!(err.contains("cannot be used with"), "{err}");
    }
}

/// The whole CLI side of `--exec` on a Proxmox API target, against a stand-in controller
/// (it answers authorize-session with a `proxmox` session) and a stand-in worker (it
/// answers the proxy handshake, then HTTP): the child's curl reaches the worker through the
/// CLI's loopback HTTPS with the local secret whose hash went to the controller, the secret
/// is printed nowhere, the CA bundle is gone after the exit, the child's status is
/// `connect`'s, and the session is closed.
#[test]
fn exec_serves_https_with_the_secret_whose_hash_the_controller_got() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fakes = runtime.block_on(fake::start());
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("bundle-path");
    let script = format!(
        "curl -sS --fail -H \"Authorization: PVEAPIToken=$PROXMOX_VE_API_TOKEN\" \
         \"${{PROXMOX_VE_ENDPOINT}}api2/json/version\" && echo && \
         printf %s \"$SSL_CERT_FILE\" > {marker} && \
         test \"$PROXMOX_TOKEN_SECRET\" = \"${{PROXMOX_VE_API_TOKEN#portcullis@local!session=}}\" && \
         test \"$REQUESTS_CA_BUNDLE\" = \"$SSL_CERT_FILE\" && exit 7",
        marker = marker.display()
    );
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["connect", "pve-1", "--exec", "--", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path().join("run"))
        .env("PORTCULLIS_ADDR", &fakes.controller_addr)
        .env("PORTCULLIS_CA", &fakes.controller_ca)
        .env("PORTCULLIS_TOKEN", "pct_test")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains(fake::VERSION_BODY), "{stdout}");
    assert!(stderr.contains("acting as pc-alice@pve!pc-s1"), "{stderr}");

    let seen = fakes.seen.lock().unwrap().clone();
    let hash = seen
        .local_secret_sha256
        .expect("a hash was sent with authorize-session");
    let authorization = seen
        .worker_authorization
        .expect("the worker got the request");
    let secret = authorization
        .strip_prefix("PVEAPIToken=portcullis@local!session=")
        .expect("the local token shape");
    assert_eq!(secret.len(), 64);
    assert_eq!(
        portcullis_crypto::digest::sha256_hex(secret.as_bytes()),
        hash
    );
    assert!(seen
        .worker_request_line
        .starts_with("GET /api2/json/version HTTP/1.1"));
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    assert_eq!(seen.cancel_reason.as_deref(), Some("closed"));

    let bundle = std::fs::read_to_string(&marker).unwrap();
    assert!(!bundle.is_empty());
    assert!(
        !std::path::Path::new(&bundle).exists(),
        "the CA bundle is removed"
    );
    // The local CA was made in the CLI's config directory, its key private.
    let key = home.path().join(".config/portcullis/local-ca/key.pem");
    let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// A `connect` running against the fakes, its first stdout line read.
struct Running {
    child: std::process::Child,
    line: serde_json::Value,
    _home: tempfile::TempDir,
}

impl Running {
    fn start(fakes: &fake::Fakes, args: &[&str]) -> Running {
        use std::io::BufRead as _;
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", home.path().join("run"))
            .env("PORTCULLIS_ADDR", &fakes.controller_addr)
            .env("PORTCULLIS_CA", &fakes.controller_ca)
            .env("PORTCULLIS_TOKEN", "pct_test")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let line = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Running {
            child,
            line,
            _home: home,
        }
    }

    /// Ends it as Ctrl-C would, and waits.
    fn interrupt(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
    }
}

/// The default: a 0600 socket in a 0700 directory of the runtime directory, no secret (only
/// this user reaches it), the bytes passed through; removed at the end, the session
/// cancelled.
#[test]
fn the_default_is_a_private_socket_passing_http_through() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fakes = runtime.block_on(fake::start());
    let running = Running::start(&fakes, &["connect", "pve-1", "--json"]);
    let path = running.line["path"].as_str().unwrap().to_owned();
    assert!(path.ends_with("/run/portcullis/pve-1.sock"), "{path}");
    assert_eq!(running.line["proxmox"]["token_id"], "pc-alice@pve!pc-s1");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.as_ref()), 0o600);
    assert_eq!(mode(std::path::Path::new(&path).parent().unwrap()), 0o700);

    let curl = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--unix-socket",
            &path,
            "http://pve/api2/json/version",
        ])
        .output()
        .unwrap();
    assert!(curl.status.success(), "{}", text(&curl.stderr));
    assert_eq!(text(&curl.stdout), fake::VERSION_BODY);
    {
        let seen = fakes.seen.lock().unwrap();
        assert_eq!(seen.local_secret_sha256, None, "no secret for a socket");
        assert!(seen
            .worker_request_line
            .starts_with("GET /api2/json/version HTTP/1.1"));
        assert_eq!(seen.worker_authorization, None);
    }
    running.interrupt();
    assert!(
        !std::path::Path::new(&path).exists(),
        "the socket is removed"
    );
    assert_eq!(
        fakes.seen.lock().unwrap().cancel_reason.as_deref(),
        Some("canceled")
    );
}

/// `--listen-port`: HTTPS on loopback; the secret is only in the 0600 environment file the
/// listening line names, which a client sources.
#[test]
fn a_port_serves_https_and_its_secret_is_in_a_private_file() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fakes = runtime.block_on(fake::start());
    let running = Running::start(
        &fakes,
        &["connect", "pve-1", "--listen-port", "0", "--json"],
    );
    let line = running.line.clone();
    assert_eq!(line["address"], "127.0.0.1");
    let port = line["port"].as_u64().unwrap();
    assert_eq!(line["url"], format!("https://localhost:{port}/"));
    let env_file = line["env_file"].as_str().unwrap().to_owned();
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !line.to_string().contains("session="),
        "no secret on stdout: {line}"
    );

    // Without the secret the worker would refuse (it holds the hash); with it, through.
    let script = format!(
        ". {env_file} && curl -sS --fail --cacert {ca} \
         -H \"X-Portcullis-Session-Secret: $PROXMOX_TOKEN_SECRET\" \
         \"${{PROXMOX_VE_ENDPOINT}}api2/json/version\"",
        ca = line["ca_file"].as_str().unwrap()
    );
    let curl = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(curl.status.success(), "{}", text(&curl.stderr));
    assert_eq!(text(&curl.stdout), fake::VERSION_BODY);
    let seen = fakes.seen.lock().unwrap().clone();
    let secret = seen
        .worker_secret_header
        .expect("the secret header reached the worker");
    assert_eq!(
        Some(portcullis_crypto::digest::sha256_hex(secret.as_bytes())),
        seen.local_secret_sha256
    );
    running.interrupt();
    assert!(
        !std::path::Path::new(&env_file).exists(),
        "the file is removed"
    );
}

/// A stand-in controller and worker for the tests above.
mod fake {
    use std::sync::{Arc, Mutex};

    use portcullis_crypto::tls;
    use portcullis_proto::proxy;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    pub(super) const VERSION_BODY: &str = r#"{"data":{"version":"8.2.4"}}"#;

    #[derive(Debug, Default, Clone)]
    pub(super) struct Seen {
        pub local_secret_sha256: Option<String>,
        pub worker_authorization: Option<String>,
        pub worker_secret_header: Option<String>,
        pub worker_request_line: String,
        pub cancel_reason: Option<String>,
    }

    pub(super) struct Fakes {
        pub controller_addr: String,
        pub controller_ca: std::path::PathBuf,
        pub seen: Arc<Mutex<Seen>>,
        _dir: tempfile::TempDir,
    }

    pub(super) async fn start() -> Fakes {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (worker_addr, fingerprint) = worker(seen.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca_pem) = controller_tls();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new((seen.clone(), worker_addr, fingerprint));
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
                    let reply = controller_answer(&head, &body, &state.0, &state.1, &state.2);
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

    fn session_json(reason: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "id": "s_1", "user_id": "u_1", "username": "alice", "target_id": "t_1",
            "target_name": "pve-1", "worker_id": "w_1",
            "state": if reason.is_some() { "terminated" } else { "active" },
            "termination_reason": reason, "client_addr": "127.0.0.1",
            "endpoint": "192.0.2.10:8006", "connection_limit": 0, "created_at": now(),
            "expires_at": now() + 3600, "activated_at": null,
            "terminated_at": reason.map(|_| now()), "connections": []
        })
    }

    fn controller_answer(
        head: &str,
        body: &[u8],
        seen: &Mutex<Seen>,
        worker_addr: &str,
        fingerprint: &str,
    ) -> String {
        let line = head.lines().next().unwrap_or_default().to_owned();
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let answer = if line.starts_with("GET /v1/targets/pve-1 ") {
            serde_json::json!({
                "id": "t_1", "name": "pve-1", "address": "192.0.2.10:8006", "zone": null,
                "service": "proxmox-api", "vmid": null, "tags": [], "pool": null,
                "max_session_secs": 3600, "connection_limit": 0,
                "proxmox_cluster": "homelab", "created_at": 0, "updated_at": 0
            })
        } else if line.starts_with("POST /v1/targets/pve-1/authorize-session ") {
            seen.lock().unwrap().local_secret_sha256 =
                json["local_secret_sha256"].as_str().map(str::to_owned);
            serde_json::json!({
                "session_id": "s_1", "target_id": "t_1", "target_name": "pve-1",
                "worker_id": "w_1", "worker_addr": worker_addr,
                "worker_key_fingerprint": fingerprint, "expires_at": now() + 3600,
                "connection_limit": 0, "grant": "the-grant", "endpoint": "192.0.2.10:8006",
                "proxmox": {
                    "cluster": "homelab", "token_id": "pc-alice@pve!pc-s1",
                    "roles": ["PVEVMAdmin"], "paths": ["/vms"], "expires_at": now() + 3600
                }
            })
        } else if line.starts_with("POST /v1/sessions/s_1/cancel ") {
            seen.lock().unwrap().cancel_reason = json["reason"].as_str().map(str::to_owned);
            session_json(json["reason"].as_str())
        } else if line.starts_with("GET /v1/sessions/s_1 ") {
            session_json(None)
        } else {
            serde_json::json!({"error": format!("the fake controller does not know {line}")})
        };
        answer.to_string()
    }

    /// The controller's HTTPS identity for 127.0.0.1 and its CA's PEM.
    fn controller_tls() -> (TlsAcceptor, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake controller CA");
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

    /// A worker's proxy listener: any client key, the hello, `accepted`, then one HTTP
    /// exchange; returns its address and key fingerprint.
    async fn worker(seen: Arc<Mutex<Seen>>) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["worker".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        use rcgen::PublicKeyData as _;
        let fingerprint = portcullis_proto::keys::spki_fingerprint(&key.subject_public_key_info());
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
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut len = [0u8; 4];
                    if tls.read_exact(&mut len).await.is_err() {
                        return; // A spare connection, never used.
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
                    let Some((head, _)) = read_request(&mut tls).await else {
                        return;
                    };
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.worker_request_line = head.lines().next().unwrap_or_default().into();
                        seen.worker_secret_header = head
                            .lines()
                            .find_map(|l| l.strip_prefix("X-Portcullis-Session-Secret: "))
                            .map(str::to_owned);
                        seen.worker_authorization = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("authorization: ")
                                    .or(l.strip_prefix("Authorization: "))
                            })
                            .map(str::to_owned);
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{VERSION_BODY}",
                        VERSION_BODY.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
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
