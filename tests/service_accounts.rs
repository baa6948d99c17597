//! Service accounts against a real controller, through the real CLI: a CI identity logs in
//! with its key and no prompt, is refused with another key, with a replayed assertion and
//! after its key is revoked (and so is the token it had); a role requiring MFA admits it
//! only with `service_accounts = true` (and revoking the key ends the session it opened);
//! Ansible runs a playbook through Portcullis with its token. Every action's audit event is
//! checked.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::dev::{curl, Dev};
use common::sshd::{login_user, Sshd};
use common::wait::poll;
use serde_json::Value;

const DEV_POLICY: &str = include_str!("../config/policy-dev.toml");
const REFUSED: &str = "the assertion was not accepted";

/// The dev policy plus three roles for service accounts: `ci` (sessions as `login`),
/// `ci-mfa` (requires MFA) and `ci-exempt` (requires MFA, admits service accounts).
fn policy(login: &str) -> String {
    format!(
        "{DEV_POLICY}
[[role]]
name = \"ci\"
groups = [\"ci\"]
[[role.grant]]
zones = [\"LOCAL\"]
services = [\"echo\"]
logins = [\"{login}\"]

[[role]]
name = \"ci-mfa\"
groups = [\"ci-mfa\"]
[role.constraints]
mfa = {{ amr = [\"mfa\", \"otp\"] }}
[[role.grant]]
zones = [\"LOCAL\"]
services = [\"echo\"]
logins = [\"{{{{preferred_username}}}}\"]

[[role]]
name = \"ci-exempt\"
groups = [\"ci-exempt\"]
[role.constraints]
mfa = {{ amr = [\"mfa\", \"otp\"], service_accounts = true }}
[[role.grant]]
zones = [\"LOCAL\"]
services = [\"echo\"]
logins = [\"{{{{preferred_username}}}}\"]
"
    )
}

/// A dev stack with the policy above, the service accounts' groups allowed, their tokens
/// capped at 20 minutes (API tokens: 8 h) and failures summed over one second (so
/// `login_failed` is written soon).
fn start(dir: &Path, extra: &[&str]) -> Dev {
    let policy_file = dir.join("policy.toml");
    std::fs::write(&policy_file, policy(&login_user())).unwrap();
    let config = dir.join("controller.toml");
    std::fs::write(
        &config,
        "[api]\ntoken_lifetime = \"8h\"\n\
         [audit]\ndenial_window = \"1s\"\n\
         [auth.local]\nallowed_groups = [\"ci\", \"ci-mfa\", \"ci-exempt\"]\n\
         service_token_lifetime = \"20m\"\n",
    )
    .unwrap();
    let mut args = vec![
        "--policy",
        policy_file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Dev::start(&args)
}

/// `ssh-keygen -t ed25519 -N ''`: the private key file (its `.pub` beside it).
fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    key
}

fn public(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

/// The CLI with the dev stack's address and CA, the admin's token, no terminal and no stdin.
fn cli(dev: &Dev, args: &[&str]) -> Output {
    dev.cli().args(args).stdin(Stdio::null()).output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn add_service(dev: &Dev, name: &str, group: &str, key: &Path) -> Value {
    ok_json(&cli(
        dev,
        &[
            "users",
            "add-service",
            name,
            "--groups",
            group,
            "--public-key",
            public(key).to_str().unwrap(),
            "--json",
        ],
    ))
}

/// `portcullis login --service-account NAME --key KEY` without the admin's token in the
/// environment, saving to `token_file`; the process's output.
fn login(dev: &Dev, name: &str, key: &Path, token_file: &Path) -> Output {
    dev.cli()
        .env_remove("PORTCULLIS_TOKEN")
        .args(["login", "--service-account", name, "--key"])
        .arg(key)
        .arg("--token-file")
        .arg(token_file)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn saved_token(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An assertion signed with `key` for the controller at `audience`, as the CLI makes one.
fn assertion(key: &Path, account: &str, audience: &str) -> String {
    let private = ssh_key::PrivateKey::read_openssh_file(key).unwrap();
    let seed = private.key_data().ed25519().unwrap().private.to_bytes();
    let signer = portcullis_crypto::ed25519::SigningKey::from_seed(&seed).unwrap();
    let claims = portcullis_proto::assertion::AssertionClaims::new(
        account,
        &portcullis_proto::assertion::audience_for(audience),
        now(),
        60,
    )
    .unwrap();
    portcullis_proto::assertion::sign(&claims, &signer).unwrap()
}

fn exchange(dev: &Dev, assertion: &str) -> (u16, String) {
    let body = serde_json::json!({ "assertion": assertion }).to_string();
    curl(dev, "POST", "/v1/auth/service-token", None, Some(&body))
}

fn audit(dev: &Dev, kind: &str) -> String {
    let (code, text) = curl(
        dev,
        "GET",
        &format!("/v1/audit?type={kind}&limit=100"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    text
}

fn authorize(dev: &Dev, token: &str, target: &str) -> (u16, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    curl(
        dev,
        "POST",
        &format!("/v1/targets/{target}/authorize-session"),
        Some(token),
        Some(&body),
    )
}

#[test]
fn a_service_account_logs_in_with_its_key_only_until_the_key_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(dir.path(), &[]);
    let key = keygen(dir.path(), "terraform-ci", "ed25519");
    let other = keygen(dir.path(), "other", "ed25519");

    // Added by an admin whose login met MFA; the key's fingerprint is shown.
    let added = add_service(&dev, "terraform-ci", "ci", &key);
    assert_eq!(added["name"], "terraform-ci");
    assert_eq!(added["groups"], serde_json::json!(["ci"]));
    let fingerprint = added["key_fingerprint"].as_str().unwrap().to_owned();
    assert!(added.get("key_revoked_at").is_none(), "{added}");

    // Another key type, or a group the controller does not allow: refused with a sentence.
    let ecdsa = keygen(dir.path(), "ecdsa", "ecdsa");
    let ecdsa_pub = public(&ecdsa);
    let out = cli(
        &dev,
        &[
            "users",
            "add-service",
            "ecdsa-ci",
            "--groups",
            "ci",
            "--public-key",
            ecdsa_pub.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not Ed25519"),
        "{err}"
    );
    let out = cli(
        &dev,
        &[
            "users",
            "add-service",
            "admin-ci",
            "--groups",
            "admins",
            "--public-key",
            public(&other).to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("allowed_groups") && err.contains("admins"),
        "{err}"
    );

    // The account logs in with its key: no prompt (stdin closed), token saved 0600.
    let token_file = dir.path().join("ci/token");
    let logged_in = ok_json(&login(&dev, "terraform-ci", &key, &token_file));
    assert_eq!(logged_in["user"]["username"], "terraform-ci");
    assert_eq!(logged_in["user"]["issuer"], "service:");
    assert_eq!(logged_in["user"]["amr"], serde_json::json!(["svc"]));
    assert_eq!(logged_in["key_fingerprint"], fingerprint.as_str());
    let lifetime = logged_in["expires_at"].as_u64().unwrap() - now();
    assert!(
        (1100..=1200).contains(&lifetime),
        "service_token_lifetime (20 min), not the API's 8 h: {lifetime}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let token = saved_token(&token_file);
    let (code, text) = curl(&dev, "GET", "/v1/whoami", Some(&token), None);
    assert_eq!(code, 200, "{text}");
    let who: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(who["subject"], "terraform-ci");
    assert_eq!(who["amr"], serde_json::json!(["svc"]));

    // Another key: refused, with the one message.
    let out = login(
        &dev,
        "terraform-ci",
        &other,
        &dir.path().join("other-token"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(REFUSED), "{err}");
    assert!(!dir.path().join("other-token").exists());

    // An assertion is single-use; one for another controller is refused.
    let signed = assertion(&key, "terraform-ci", &dev.api());
    let (code, text) = exchange(&dev, &signed);
    assert_eq!(code, 201, "{text}");
    let second: Value = serde_json::from_str(&text).unwrap();
    let second_token = second["token"].as_str().unwrap().to_owned();
    let (code, text) = exchange(&dev, &signed);
    assert_eq!(code, 401, "{text}");
    assert!(text.contains(REFUSED), "{text}");
    let (code, text) = exchange(
        &dev,
        &assertion(&key, "terraform-ci", "https://another.example:9200"),
    );
    assert_eq!(code, 401, "{text}");

    // The key revoked: both tokens it obtained are revoked, and it obtains no more.
    let revoked = ok_json(&cli(
        &dev,
        &["users", "revoke-key", "terraform-ci", "--json"],
    ));
    assert_eq!(revoked["account"]["key_fingerprint"], fingerprint.as_str());
    assert!(revoked["account"]["key_revoked_at"].is_u64(), "{revoked}");
    assert_eq!(
        revoked["revoked_token_ids"].as_array().unwrap().len(),
        2,
        "{revoked}"
    );
    for t in [&token, &second_token] {
        let (code, text) = curl(&dev, "GET", "/v1/whoami", Some(t), None);
        assert_eq!(code, 401, "{text}");
    }
    let out = login(&dev, "terraform-ci", &key, &dir.path().join("after"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(REFUSED), "{err}");

    // Every action's event, and never a secret in the log.
    let created = audit(&dev, "service_account_created");
    assert!(
        created.contains("terraform-ci") && created.contains(&fingerprint),
        "{created}"
    );
    let revoked_events = audit(&dev, "service_key_revoked");
    assert!(revoked_events.contains(&fingerprint), "{revoked_events}");
    for id in revoked["revoked_token_ids"].as_array().unwrap() {
        assert!(
            revoked_events.contains(id.as_str().unwrap()),
            "{revoked_events}"
        );
    }
    let succeeded = audit(&dev, "login_succeeded");
    assert_eq!(
        succeeded.matches("\"service:\"").count(),
        2,
        "two logins of the service account: {succeeded}"
    );
    let failed = poll(
        "the summed login_failed events",
        Duration::from_secs(30),
        || {
            let text = audit(&dev, "login_failed");
            let all = [
                "service-account assertion signed by another key",
                "replayed service-account assertion",
                "service-account assertion for another controller",
                "service account key revoked",
            ];
            if all.iter().all(|r| text.contains(r)) {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    for secret in [&token, &second_token, &signed] {
        for text in [&created, &revoked_events, &succeeded, &failed] {
            assert!(!text.contains(secret.as_str()), "a secret in the audit log");
        }
    }
}

#[test]
fn a_role_requiring_mfa_admits_a_service_account_only_when_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(dir.path(), &[]);
    let mut tokens = Vec::new();
    for (name, group) in [("strict-ci", "ci-mfa"), ("exempt-ci", "ci-exempt")] {
        let key = keygen(dir.path(), name, "ed25519");
        add_service(&dev, name, group, &key);
        let file = dir.path().join(format!("{name}.token"));
        ok_json(&login(&dev, name, &key, &file));
        tokens.push(saved_token(&file));
    }
    let (code, text) = authorize(&dev, &tokens[0], "echo");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("service_accounts = true"), "{text}");
    let (code, text) = authorize(&dev, &tokens[1], "echo");
    assert_eq!(code, 201, "{text}");
    let session = serde_json::from_str::<Value>(&text).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Revoking the key ends the session its token opened.
    ok_json(&cli(&dev, &["users", "revoke-key", "exempt-ci", "--json"]));
    let (code, text) = curl(
        &dev,
        "GET",
        &format!("/v1/sessions/{session}"),
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    let ended: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ended["termination_reason"], "user_revoked", "{text}");
}

fn ansible_playbook() -> PathBuf {
    if let Ok(path) = std::env::var("PORTCULLIS_TEST_ANSIBLE_PLAYBOOK") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap();
    let path = Path::new(&home).join(".cache/portcullis-test/ansible/bin/ansible-playbook");
    assert!(path.exists(), "ansible-playbook not found at {}: run the suite with scripts/test, which installs ansible-core", path.display());
    path
}

#[test]
fn ansible_runs_a_playbook_through_portcullis_with_a_service_accounts_token() {
    let user = login_user();
    let dir = tempfile::tempdir().unwrap();
    let dev = start(
        dir.path(),
        &["--user", &user, "--worker-egress", "127.0.0.2"],
    );
    let (_, ca) = curl(&dev, "GET", "/v1/ssh/ca", None, None);
    let sshd = Sshd::start(&ca, &[&user]);
    let admin = dev.var("PORTCULLIS_TOKEN");
    for name in ["web-1", "web-2"] {
        let body = serde_json::json!({
            "name": name,
            "address": format!("127.0.0.1:{}", sshd.port),
            "zone": "LOCAL",
            "service": "echo",
            "ssh_host_keys": [sshd.host_key_pub],
        })
        .to_string();
        let (code, text) = curl(&dev, "POST", "/v1/targets", Some(&admin), Some(&body));
        assert_eq!(code, 201, "{text}");
    }

    // The pipeline: the account logs in with its key, then Ansible runs with its token.
    let key = keygen(dir.path(), "ansible-ci", "ed25519");
    add_service(&dev, "ansible-ci", "ci", &key);
    let token_file = dir.path().join("ansible-ci.token");
    ok_json(&login(&dev, "ansible-ci", &key, &token_file));
    let token = saved_token(&token_file);

    let work = dir.path().join("ansible");
    std::fs::create_dir_all(&work).unwrap();
    let ssh_config = dev.write_ssh_config(&work);
    let inventory = work.join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[targets]\nweb-1 ansible_host=web-1.pc\nweb-2 ansible_host=web-2.pc\n\n[targets:vars]\nansible_user={user}\n\
             ansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args=-F {} -o ControlMaster=no -o ControlPath=none\n",
            ssh_config.display()
        ),
    )
    .unwrap();
    let playbook = work.join("play.yml");
    std::fs::write(
        &playbook,
        "- hosts: targets\n  gather_facts: false\n  tasks:\n    - command: echo {{ inventory_hostname }}\n      register: out\n    - assert:\n        that: out.stdout == inventory_hostname\n",
    )
    .unwrap();
    let cfg = work.join("ansible.cfg");
    std::fs::write(
        &cfg,
        "[defaults]\nforks = 2\nhost_key_checking = True\n[ssh_connection]\nssh_args = -o ControlMaster=no -o ControlPersist=no\npipelining = True\n",
    )
    .unwrap();
    let mut cmd = Command::new(ansible_playbook());
    cmd.arg("-i")
        .arg(&inventory)
        .arg(&playbook)
        .env("ANSIBLE_CONFIG", &cfg)
        .env("XDG_RUNTIME_DIR", &work)
        .env("ANSIBLE_LOCAL_TEMP", work.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .stdin(Stdio::null());
    for (k, v) in &dev.env {
        cmd.env(k, v);
    }
    // The service account's token, not the admin's.
    cmd.env("PORTCULLIS_TOKEN", &token);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    for host in ["web-1", "web-2"] {
        assert!(stdout.contains(host), "{stdout}");
    }
    assert!(
        stdout.contains("ok=2") && !stdout.contains("failed=1"),
        "{stdout}"
    );

    // The sessions were the service account's.
    let authorized = audit(&dev, "session_authorized");
    assert!(
        authorized.matches("\"ansible-ci\"").count() >= 2,
        "{authorized}"
    );
}
