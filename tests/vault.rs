//! The Vault backend against real peers: an OpenBao dev server (SSH engine, token role,
//! database engine on the test PostgreSQL), OpenSSH sshd trusting Vault's SSH CA, the
//! OpenSSH client, and `portcullis dev` with `ssh.backend = "vault"`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::PausableProxy;
use common::dev::{curl, Dev};
use common::sshd::{login_user, Sshd};
use common::vault::Bao;
use common::wait::{poll, wait_for};
use serde_json::{json, Value};

struct Setup {
    bao: Bao,
    dev: Dev,
    sshd: Sshd,
    proxy: Option<PausableProxy>,
    config: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct Opts {
    /// Vault behind a pausable proxy.
    proxy: bool,
    /// Extra lines for `[ssh]`.
    ssh_extra: &'static str,
    /// The target's fields besides name, address, zone and service.
    target: Option<Value>,
    /// Environment of the dev process.
    env: Vec<(&'static str, &'static str)>,
    /// A host CA private key for sshd's host certificate.
    host_ca: Option<PathBuf>,
    /// Log in with AppRole (token TTL, max TTL) instead of a token file.
    approle: Option<(&'static str, &'static str)>,
    /// Vault over HTTPS, its CA in `vault.ca_file`.
    tls: bool,
}

fn write_config(dir: &Path, vault_addr: &str, auth: &str, ssh_extra: &str) -> PathBuf {
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "[ssh]\nbackend = \"vault\"\n{ssh_extra}\n[vault]\naddress = \"{vault_addr}\"\n{auth}\n\
             ssh_role = \"{}\"\ntoken_role = \"{}\"\nrevoke_retry_max = 2\nmint_timeout = 3\njob_interval = 0.5\n\
             request_timeout = 3\n",
            common::vault::SSH_ROLE,
            common::vault::TOKEN_ROLE,
        ),
    )
    .unwrap();
    path
}

fn start_dev(state: &Path, config: &Path, env: &[(&str, &str)]) -> Dev {
    let user = login_user();
    Dev::start_in_env(
        state,
        &[
            "--user",
            &user,
            "--worker-egress",
            "127.0.0.2",
            "--config",
            config.to_str().unwrap(),
        ],
        env,
    )
}

fn setup(opts: Opts) -> Setup {
    let bao = if opts.tls {
        Bao::start_tls()
    } else {
        Bao::start()
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = opts
        .proxy
        .then(|| PausableProxy::start(&format!("127.0.0.1:{}", bao.port)));
    let vault_addr = match &proxy {
        Some(p) => format!("http://{}", p.addr),
        None => bao.addr.clone(),
    };
    let auth = match opts.approle {
        Some((ttl, max)) => {
            let (role_id, secret_file) = bao.controller_approle(ttl, max);
            format!(
                "approle_role_id = \"{role_id}\"\napprole_secret_id_file = \"{}\"",
                secret_file.display()
            )
        }
        None => format!(
            "token_file = \"{}\"",
            bao.controller_token_file("1h").display()
        ),
    };
    let auth = match &bao.ca_file {
        Some(ca) => format!("{auth}\nca_file = \"{}\"", ca.display()),
        None => auth,
    };
    let config = write_config(dir.path(), &vault_addr, &auth, opts.ssh_extra);
    let state = dir.path().join("state");
    let dev = start_dev(&state, &config, &opts.env);
    let user = login_user();
    let sshd = Sshd::start_with(&bao.ssh_ca(), &[&user], opts.host_ca.as_deref());
    let mut body = json!({
        "name": "box",
        "address": format!("127.0.0.1:{}", sshd.port),
        "zone": "LOCAL",
        "service": "echo",
    });
    let fields = opts
        .target
        .unwrap_or_else(|| json!({"ssh_host_keys": [sshd.host_key_pub]}));
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
    Setup {
        bao,
        dev,
        sshd,
        proxy,
        config,
        state,
        _dir: dir,
    }
}

impl Setup {
    fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        curl(
            &self.dev,
            method,
            path,
            Some(&self.dev.var("PORTCULLIS_TOKEN")),
            body,
        )
    }

    /// Authorises a session for a fresh key: (status, answer, private key path).
    fn authorize(&self, name: &str) -> (u16, Value, PathBuf) {
        let key = self.sshd.path(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let public = std::fs::read_to_string(self.sshd.path(&format!("{name}.pub"))).unwrap();
        let tls = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let body = json!({
            "client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&tls)),
            "ssh_public_key": public.trim(),
        })
        .to_string();
        let (code, text) = self.api("POST", "/v1/targets/box/authorize-session", Some(&body));
        let answer: Value = serde_json::from_str(&text).unwrap_or(json!({"raw": text}));
        if let Some(cert) = answer["ssh_certificate"].as_str() {
            std::fs::write(self.sshd.path(&format!("{name}-cert.pub")), cert).unwrap();
        }
        (code, answer, key)
    }

    fn audit(&self, session: &str, kind: &str) -> Vec<Value> {
        let (code, text) = self.api(
            "GET",
            &format!("/v1/audit?session={session}&type={kind}"),
            None,
        );
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["items"].as_array().unwrap().clone()
    }

    fn accessor_of(&self, session: &str) -> String {
        let minted = self.audit(session, "credential_minted");
        assert_eq!(minted.len(), 1, "{minted:?}");
        minted[0]["details"]["token_accessor"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn session(&self, id: &str) -> Value {
        let (code, text) = self.api("GET", &format!("/v1/sessions/{id}"), None);
        assert_eq!(code, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn cancel(&self, id: &str) {
        let (code, text) = self.api("POST", &format!("/v1/sessions/{id}/cancel"), Some("{}"));
        assert_eq!(code, 200, "{text}");
    }

    /// ssh straight to sshd (not through the worker), from `source`.
    fn direct_ssh(&self, key: &Path, source: &str) -> std::process::Output {
        let known = self.sshd.path("known_hosts_direct");
        std::fs::write(
            &known,
            format!(
                "[127.0.0.1]:{} {}\n",
                self.sshd.port, self.sshd.host_key_pub
            ),
        )
        .unwrap();
        Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "IdentityAgent=none",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ControlMaster=no",
                "-b",
                source,
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg("-i")
            .arg(key)
            .args([
                "-p",
                &self.sshd.port.to_string(),
                "-l",
                &self.sshd.user,
                "127.0.0.1",
                "echo",
                "direct-ok",
            ])
            .output()
            .unwrap()
    }
}

/// How many times the controller has tried to revoke the session's Vault credentials (read
/// from the dev controller's SQLite store).
fn revoke_attempts(state: &Path, session_id: &str) -> i64 {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", state.join("portcullis.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let row: (i64,) =
            sqlx::query_as("SELECT attempts FROM vault_credentials WHERE session_id = ?")
                .bind(session_id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        row.0
    })
}

fn pg_role_exists(name: &str) -> bool {
    use sqlx::Connection as _;
    let url = std::env::var("PORTCULLIS_TEST_PG_URL")
        .expect("PORTCULLIS_TEST_PG_URL (run the suite with scripts/test)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_roles WHERE rolname = $1")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        row.0 == 1
    })
}

#[test]
fn connect_ssh_with_a_vault_certificate_names_the_session_and_is_useless_outside_the_broker() {
    // Vault over HTTPS, trusted through vault.ca_file.
    let s = setup(Opts {
        tls: true,
        ..Opts::default()
    });
    let out = s
        .dev
        .cli()
        .args(["connect", "ssh", "box", "--", "echo", "hello-via-vault"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\nsshd log:\n{}",
        s.sshd.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello-via-vault"
    );
    let (line, sid) = s.sshd.accepted_session();
    assert!(sid.starts_with("s_"), "{line}");
    assert!(line.contains("from 127.0.0.2"), "{line}");
    // Signed by Vault's CA, which GET /v1/ssh/ca serves for targets with this backend.
    let (code, served_ca) = curl(&s.dev, "GET", "/v1/ssh/ca", None, None);
    assert_eq!(code, 200, "{served_ca}");
    let vault_ca = s.bao.ssh_ca();
    assert_eq!(served_ca.trim(), vault_ca.trim());
    let ca_fp = |key: &str| {
        let k = ssh_key::PublicKey::from_openssh(key.trim()).unwrap();
        k.fingerprint(ssh_key::HashAlg::Sha256).to_string()
    };
    assert!(line.contains(&ca_fp(&vault_ca)), "{line}");
    let accessor = s.accessor_of(&sid);
    // ssh exited, the CLI cancelled the session: its token is revoked.
    wait_for(
        "token revoked after the session ended",
        Duration::from_secs(5),
        || !s.bao.accessor_alive(&accessor),
    );
    assert_eq!(s.audit(&sid, "credential_revoked").len(), 1);

    // A certificate of a live session, used straight from 127.0.0.1 (not through the
    // worker's egress 127.0.0.2): refused by source-address.
    let (code, auth, key) = s.authorize("direct");
    assert_eq!(code, 201, "{auth}");
    let info = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(s.sshd.path("direct-cert.pub"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!(
            "Key ID: \"{}\"",
            auth["session_id"].as_str().unwrap()
        )),
        "{info}"
    );
    assert!(info.contains("source-address 127.0.0.2"), "{info}");
    let out = s.direct_ssh(&key, "127.0.0.1");
    assert!(!out.status.success(), "direct use succeeded");
    assert!(
        s.sshd.log().contains("not from a permitted source address"),
        "{}",
        s.sshd.log()
    );
    // No token, secret or certificate in the audit log.
    let (_, export) = s.api("GET", "/v1/audit?limit=1000", None);
    assert!(!export.contains("client_token"), "{export}");
    assert!(!export.contains("-cert-v01@openssh.com"), "{export}");
}

#[test]
fn cancel_revokes_the_token_its_database_user_and_the_certificate() {
    let s = setup(Opts {
        target: Some(json!({
            "vault_secrets": [format!("database/creds/{}", common::vault::DB_ROLE)],
        })),
        ..Opts::default()
    });
    // The target's host key is not pinned in this setup: only the API is used here.
    let (code, auth, _key) = s.authorize("k1");
    assert_eq!(code, 201, "{auth}");
    let sid = auth["session_id"].as_str().unwrap().to_owned();
    let secret = &auth["secrets"][0];
    assert_eq!(
        secret["path"],
        format!("database/creds/{}", common::vault::DB_ROLE)
    );
    assert!(!secret["lease_id"].as_str().unwrap().is_empty(), "{auth}");
    // The answer names the secret's fields; its data is served, audited, on its own.
    assert!(secret.get("data").is_none(), "{auth}");
    assert_eq!(secret["fields"], json!(["password", "username"]), "{auth}");
    let (code, text) = s.api("GET", &format!("/v1/sessions/{sid}/secrets"), None);
    assert_eq!(code, 200, "{text}");
    let served: Value = serde_json::from_str(&text).unwrap();
    let secret = &served["secrets"][0];
    let username = secret["data"]["username"].as_str().unwrap().to_owned();
    assert!(pg_role_exists(&username), "Vault made no database user");
    let accessor = s.accessor_of(&sid);
    assert!(s.bao.accessor_alive(&accessor));
    assert_eq!(s.bao.tokens_of_session(&sid), vec![accessor.clone()]);
    // The minted event names the lease, never the password.
    let minted = s.audit(&sid, "credential_minted");
    let text = minted[0].to_string();
    assert!(
        text.contains(secret["lease_id"].as_str().unwrap()),
        "{text}"
    );
    assert!(
        !text.contains(secret["data"]["password"].as_str().unwrap()),
        "{text}"
    );
    // A second, live session keeps its certificate valid in the KRL.
    let (code, _, _) = s.authorize("k2");
    assert_eq!(code, 201);

    assert!(s
        .sshd
        .krl_says(&s.dev, &s.sshd.path("k1-cert.pub"))
        .contains(": ok"));
    // Before the session ends the certificate logs in from the worker's egress address.
    let key1 = s.sshd.path("k1");
    let out = s.direct_ssh(&key1, "127.0.0.2");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );
    s.cancel(&sid);
    let took = wait_for("token revoked", Duration::from_secs(5), || {
        !s.bao.accessor_alive(&accessor)
    });
    eprintln!("token revoked {took:?} after cancel");
    wait_for("database user dropped", Duration::from_secs(5), || {
        !pg_role_exists(&username)
    });
    assert!(s.bao.tokens_of_session(&sid).is_empty());
    let verdict = s.sshd.krl_says(&s.dev, &s.sshd.path("k1-cert.pub"));
    assert!(verdict.contains("REVOKED"), "{verdict}");
    let verdict = s.sshd.krl_says(&s.dev, &s.sshd.path("k2-cert.pub"));
    assert!(verdict.contains(": ok"), "{verdict}");
    // sshd with the served KRL as its RevokedKeys refuses the still-unexpired certificate.
    std::fs::copy(s.sshd.path("fetched.krl"), s.sshd.path("revoked.krl")).unwrap();
    let out = s.direct_ssh(&key1, "127.0.0.2");
    assert!(!out.status.success(), "a revoked certificate logged in");
    assert!(
        s.sshd.log().to_lowercase().contains("revoked"),
        "{}",
        s.sshd.log()
    );
    let revoked = s.audit(&sid, "credential_revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["details"]["token_accessor"], accessor);
}

#[test]
fn an_expired_certificate_is_refused() {
    let s = setup(Opts {
        ssh_extra: "certificate_ttl = 3",
        ..Opts::default()
    });
    let (code, auth, key) = s.authorize("short");
    assert_eq!(code, 201, "{auth}");
    // From the worker's egress address the certificate works while it is valid...
    let out = s.direct_ssh(&key, "127.0.0.2");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "direct-ok");
    // ...and not once it has expired (sshd reads its own clock: poll until it refuses).
    poll(
        "sshd to refuse the expired certificate",
        Duration::from_secs(10),
        || {
            let out = s.direct_ssh(&key, "127.0.0.2");
            if out.status.success() {
                Err(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Ok(())
            }
        },
    );
    let log = s.sshd.log();
    // sshd's own words for a certificate past its validity (not, say, an unknown CA).
    assert!(log.contains("Certificate invalid: expired"), "{log}");
}

#[test]
fn a_revocation_queued_while_vault_is_down_completes_after_it_returns_and_across_a_restart() {
    let mut s = setup(Opts {
        proxy: true,
        ..Opts::default()
    });
    let (code, auth, _) = s.authorize("k");
    assert_eq!(code, 201, "{auth}");
    let sid = auth["session_id"].as_str().unwrap().to_owned();
    let accessor = s.accessor_of(&sid);
    let proxy = s.proxy.take().unwrap();
    proxy.pause();
    s.cancel(&sid);
    wait_for(
        "the failed attempt audited",
        Duration::from_secs(10),
        || !s.audit(&sid, "credential_revoke_failed").is_empty(),
    );
    assert!(
        s.bao.accessor_alive(&accessor),
        "revoked despite the outage?"
    );
    // Restart the controller while Vault is still unreachable: the revocation is in the store.
    s.dev.stop();
    let attempts = revoke_attempts(&s.state, &sid);
    s.dev = start_dev(&s.state, &s.config, &[]);
    wait_for(
        "the restarted controller to try the revocation again",
        Duration::from_secs(10),
        || revoke_attempts(&s.state, &sid) > attempts,
    );
    assert!(s.bao.accessor_alive(&accessor));
    assert!(s.audit(&sid, "credential_revoked").is_empty());
    proxy.resume();
    let took = wait_for(
        "revoked once Vault is back",
        Duration::from_secs(15),
        || !s.bao.accessor_alive(&accessor),
    );
    eprintln!("revoked {took:?} after Vault came back");
    wait_for("the revocation audited", Duration::from_secs(5), || {
        s.audit(&sid, "credential_revoked").len() == 1
    });
}

#[test]
fn a_crash_between_intent_and_mint_leaves_nothing_alive() {
    let mut s = setup(Opts {
        env: vec![("PORTCULLIS_TEST_FAULT", "exit-after-session-token")],
        ..Opts::default()
    });
    let (code, answer, _) = s.authorize("k");
    assert_ne!(code, 201, "{answer}");
    let status = common::cluster::wait_exit(&mut s.dev.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(86));
    // The crash left a token in Vault, named by the session in its metadata.
    let (code, list) = s.bao.call("LIST", "auth/token/accessors", None);
    assert_eq!(code, 200);
    let mut orphan = None;
    for a in list["data"]["keys"].as_array().unwrap() {
        let (_, info) = s.bao.call(
            "POST",
            "auth/token/lookup-accessor",
            Some(json!({"accessor": a})),
        );
        if let Some(sid) = info["data"]["meta"]["portcullis_session"].as_str() {
            orphan = Some((sid.to_owned(), a.as_str().unwrap().to_owned()));
        }
    }
    let (sid, accessor) = orphan.expect("a session token was made before the crash");
    // Restarted without the fault, the controller finds the abandoned mint, ends the
    // session and revokes the token.
    s.dev = start_dev(&s.state, &s.config, &[]);
    wait_for(
        "the abandoned token revoked",
        Duration::from_secs(15),
        || !s.bao.accessor_alive(&accessor),
    );
    let session = s.session(&sid);
    assert_eq!(session["state"], "terminated", "{session}");
    assert_eq!(
        session["termination_reason"], "credential_mint_abandoned",
        "{session}"
    );
    assert!(s.bao.tokens_of_session(&sid).is_empty());

    // A crash right after the intent, before Vault was called: the session is ended and
    // nothing of it exists in Vault.
    s.dev.stop();
    s.dev = start_dev(
        &s.state,
        &s.config,
        &[("PORTCULLIS_TEST_FAULT", "exit-after-mint-intent")],
    );
    let (code, _, _) = s.authorize("k2");
    assert_ne!(code, 201);
    let status = common::cluster::wait_exit(&mut s.dev.child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(86));
    s.dev = start_dev(&s.state, &s.config, &[]);
    let (_, text) = s.api("GET", "/v1/sessions?limit=10", None);
    let sessions: Value = serde_json::from_str(&text).unwrap();
    let second = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] != sid.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{text}"));
    let second_id = second["id"].as_str().unwrap().to_owned();
    wait_for(
        "the abandoned session ended",
        Duration::from_secs(15),
        || s.session(&second_id)["state"] == "terminated",
    );
    assert!(s.bao.tokens_of_session(&second_id).is_empty());
}

#[test]
fn an_unknown_vault_role_fails_with_a_clear_error_and_leaves_nothing_behind() {
    let s = setup(Opts {
        target: Some(json!({"vault_ssh_role": "no-such-role"})),
        ..Opts::default()
    });
    let (code, answer, _) = s.authorize("k");
    assert_eq!(code, 502, "{answer}");
    let message = answer["error"]["message"]
        .as_str()
        .or(answer["message"].as_str())
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    assert!(message.contains("no-such-role"), "{message}");
    assert!(message.to_lowercase().contains("unknown role"), "{message}");
    let (_, text) = s.api("GET", "/v1/sessions?limit=10", None);
    let sessions: Value = serde_json::from_str(&text).unwrap();
    let items = sessions["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{text}");
    let sid = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(items[0]["state"], "terminated", "{text}");
    assert_eq!(items[0]["termination_reason"], "credential_mint_failed");
    assert_eq!(s.audit(&sid, "credential_mint_failed").len(), 1);
    // The token made for it is revoked.
    wait_for("no token of the session", Duration::from_secs(5), || {
        s.bao.tokens_of_session(&sid).is_empty()
    });
    wait_for("revocation audited", Duration::from_secs(5), || {
        s.audit(&sid, "credential_revoked").len() == 1
    });
}

#[test]
fn host_keys_pinned_or_certified_by_a_host_ca_and_wrong_ones_refused() {
    let work = tempfile::tempdir().unwrap();
    let host_ca = work.path().join("host_ca");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let host_ca_pub = std::fs::read_to_string(work.path().join("host_ca.pub")).unwrap();
    let s = setup(Opts {
        host_ca: Some(host_ca.clone()),
        target: Some(json!({"ssh_host_cas": [host_ca_pub.trim()]})),
        ..Opts::default()
    });
    let run = |target: &str| {
        s.dev
            .cli()
            .args(["connect", "ssh", target, "--", "echo", "host-ok"])
            .output()
            .unwrap()
    };
    // Trusted through the host CA (no pinned key).
    let out = run("box");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "host-ok");
    let accepted = s.sshd.log().matches("Accepted publickey").count();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfJ5mkQp5q2eJp5r0N4rK1pY2uXQ0Jm7KcQxUY9n3aK";
    for (name, fields) in [
        ("wrong-ca", json!({"ssh_host_cas": [other]})),
        ("wrong-key", json!({"ssh_host_keys": [other]})),
    ] {
        let mut body = json!({
            "name": name,
            "address": format!("127.0.0.1:{}", s.sshd.port),
            "zone": "LOCAL",
            "service": "echo",
        });
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (code, text) = s.api("POST", "/v1/targets", Some(&body.to_string()));
        assert_eq!(code, 201, "{text}");
        let out = run(name);
        assert!(!out.status.success(), "{name}: connected");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Host key verification failed")
                || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
            "{name}: {stderr}"
        );
    }
    assert_eq!(
        s.sshd.log().matches("Accepted publickey").count(),
        accepted,
        "a login happened with a wrong host key"
    );
}

#[test]
fn the_controller_logs_in_with_approle_and_keeps_its_token_alive() {
    // Tokens of 3 s that may be renewed up to 6 s: the controller must renew, then log in
    // again, or its calls fail within seconds.
    let s = setup(Opts {
        approle: Some(("3s", "6s")),
        ..Opts::default()
    });
    let (code, auth, _) = s.authorize("k0");
    assert_eq!(code, 201, "{auth}");
    let first = s.bao.approle_tokens();
    assert!(!first.is_empty(), "the controller holds no AppRole token");
    // Vault ends the tokens alive now at their max TTL; by then the controller holds another.
    wait_for(
        "the first tokens' end and a later login",
        Duration::from_secs(20),
        || first.iter().all(|a| !s.bao.accessor_alive(a)) && !s.bao.approle_tokens().is_empty(),
    );
    let (code, auth, _) = s.authorize("k1");
    assert_eq!(code, 201, "{auth}");
    let sid = auth["session_id"].as_str().unwrap().to_owned();
    let accessor = s.accessor_of(&sid);
    s.cancel(&sid);
    wait_for("token revoked", Duration::from_secs(5), || {
        !s.bao.accessor_alive(&accessor)
    });
}

#[test]
fn vaults_tls_certificate_is_verified() {
    // A controller that does not trust the server's CA mints nothing.
    let bao = Bao::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let auth = format!(
        "token_file = \"{}\"",
        bao.controller_token_file("1h").display()
    );
    let config = write_config(dir.path(), &bao.addr, &auth, "");
    let dev = start_dev(&dir.path().join("state"), &config, &[]);
    let sshd = Sshd::start(&bao.ssh_ca(), &[&login_user()]);
    let body = json!({
        "name": "box",
        "address": format!("127.0.0.1:{}", sshd.port),
        "zone": "LOCAL",
        "service": "echo",
        "ssh_host_keys": [sshd.host_key_pub],
    });
    let token = dev.var("PORTCULLIS_TOKEN");
    let (code, text) = curl(
        &dev,
        "POST",
        "/v1/targets",
        Some(&token),
        Some(&body.to_string()),
    );
    assert_eq!(code, 201, "{text}");
    let out = dev
        .cli()
        .args(["connect", "ssh", "box", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not trust") && stderr.contains("vault.ca_file"),
        "{stderr}"
    );
    assert!(!sshd.log().contains("Accepted publickey"));
}
