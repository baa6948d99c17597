//! docs/ssh.md's "Vault set-up" recipe, run as written (with `vault` being OpenBao's `bao`)
//! against a bare OpenBao dev server: every command must succeed, and the result must be what
//! the controller needs: the role signs certificates with `permit-pty`, the controller's token
//! makes session tokens through the token role and revokes them, and a session token carries
//! only its own policy yet can renew itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::Command;

use common::vault::{bao_binary, call_at, Bao, SSH_ROLE, TOKEN_ROLE};
use serde_json::{json, Value};

/// The recipe's shell block, up to the optional database engine (which needs a PostgreSQL of
/// its own), with the files it writes moved into `dir`.
fn recipe(dir: &std::path::Path) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ssh.md")).unwrap();
    let section = doc
        .split_once("### Vault set-up")
        .expect("docs/ssh.md has a \"### Vault set-up\" section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a sh block")
        .1
        .split_once("\n```")
        .unwrap()
        .0;
    let core = block
        .split_once("# Leased database credentials")
        .map_or(block, |(core, _)| core);
    core.replace("/etc/ssh/", &format!("{}/", dir.display()))
        .replace("/etc/portcullis/", &format!("{}/", dir.display()))
}

fn run_recipe(bao: &Bao, dir: &std::path::Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(bao_binary(), bin.join("vault")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("sh")
        .args(["-euc", &recipe(dir)])
        .env("PATH", path)
        .env("HOME", dir)
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", "root")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the recipe failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_documented_vault_recipe_sets_up_what_the_controller_needs() {
    let bao = Bao::start_bare();
    let dir = tempfile::tempdir().unwrap();
    run_recipe(&bao, dir.path());
    let call = |token: &str, method: &str, path: &str, body: Option<Value>| {
        call_at(&bao.addr, None, token, method, path, body)
    };

    // The role: permit-pty by default (the map the key=value form could not express).
    let (code, role) = call("root", "GET", &format!("ssh/roles/{SSH_ROLE}"), None);
    assert_eq!(code, 200, "{role}");
    assert_eq!(
        role["data"]["default_extensions"],
        json!({"permit-pty": ""})
    );

    // The CA file sshd trusts is the engine's CA, and the controller's token file is 0600.
    let ca = std::fs::read_to_string(dir.path().join("vault_user_ca.pub")).unwrap();
    assert_eq!(ca.trim(), bao.ssh_ca());
    let token_file = dir.path().join("vault-token");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let controller = std::fs::read_to_string(&token_file).unwrap();
    let controller = controller.trim();

    // The controller's token: reads the CA, renews itself, makes a session token as the
    // controller does (vault/token.rs's body).
    assert_eq!(call(controller, "GET", "ssh/config/ca", None).0, 200);
    assert_eq!(
        call(controller, "POST", "auth/token/renew-self", Some(json!({}))).0,
        200
    );
    let (code, made) = call(
        controller,
        "POST",
        &format!("auth/token/create/{TOKEN_ROLE}"),
        Some(json!({
            "display_name": "portcullis-s1",
            "meta": {"portcullis_session": "s1"},
            "ttl": "60s",
            "explicit_max_ttl": "3600s",
            "renewable": true,
        })),
    );
    assert_eq!(code, 200, "{made}");
    assert_eq!(
        made["auth"]["policies"],
        json!(["portcullis-session"]),
        "no `default` policy"
    );
    assert_eq!(made["auth"]["orphan"], json!(true));
    let session = made["auth"]["client_token"].as_str().unwrap();
    let accessor = made["auth"]["accessor"].as_str().unwrap();

    // The session token extends itself and signs a certificate that permits a pty.
    let (code, renewed) = call(
        session,
        "POST",
        "auth/token/renew-self",
        Some(json!({"increment": "600s"})),
    );
    assert_eq!(code, 200, "{renewed}");
    let key = dir.path().join("id");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let (code, signed) = call(
        session,
        "POST",
        &format!("ssh/sign/{SSH_ROLE}"),
        Some(
            json!({"public_key": public, "valid_principals": "admin", "key_id": "s1", "cert_type": "user"}),
        ),
    );
    assert_eq!(code, 200, "{signed}");
    let cert = dir.path().join("id-cert.pub");
    std::fs::write(&cert, signed["data"]["signed_key"].as_str().unwrap()).unwrap();
    let listed = Command::new("ssh-keygen")
        .arg("-Lf")
        .arg(&cert)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("permit-pty"), "{listed}");
    // Nothing else: the session token cannot read the controller's paths.
    assert_eq!(call(session, "GET", "ssh/config/ca", None).0, 403);

    // The controller revokes the session's token by accessor.
    let (code, answer) = call(
        controller,
        "POST",
        "auth/token/revoke-accessor",
        Some(json!({"accessor": accessor})),
    );
    assert!((200..300).contains(&code), "{code} {answer}");
    assert_eq!(
        call(session, "POST", "auth/token/renew-self", Some(json!({}))).0,
        403
    );
}
