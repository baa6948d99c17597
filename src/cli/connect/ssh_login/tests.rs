use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use portcullis_proto::api::SessionAuthorization;

use super::{Reach, SshLogin, UserKey};

fn authorization(extra: serde_json::Value) -> SessionAuthorization {
    let mut value = serde_json::json!({
        "session_id": "s_1", "target_id": "t_1", "target_name": "web", "worker_id": "w_1",
        "worker_addr": "127.0.0.1:1", "worker_key_fingerprint": "00", "expires_at": 1,
        "connection_limit": 0, "grant": "g", "endpoint": "127.0.0.1:22",
        "ssh_principals": ["deploy", "admin"],
    });
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn new_key() -> ssh_key::PrivateKey {
    ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .unwrap()
}

/// A key pair on disk as ssh-keygen leaves it: `dir/id` and `dir/id.pub`.
fn key_files(dir: &Path) -> (std::path::PathBuf, String) {
    let key = new_key();
    let public = key.public_key().to_openssh().unwrap();
    let private = dir.join("id");
    std::fs::write(&private, "not read").unwrap();
    std::fs::write(dir.join("id.pub"), format!("{public} me@laptop\n")).unwrap();
    (private, public)
}

#[test]
fn the_public_half_is_read_from_the_pub_file_or_beside_the_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = key_files(dir.path());
    let cert = dir.path().join("id-cert.pub");
    for given in [private.clone(), dir.path().join("id.pub")] {
        let key = UserKey::read(&given).unwrap();
        assert_eq!(key.public, public, "the comment is not sent");
        assert_eq!(key.certificate_path, cert);
    }
    std::fs::remove_file(dir.path().join("id.pub")).unwrap();
    let err = format!("{:#}", UserKey::read(&private).unwrap_err());
    assert!(err.contains("KEY.pub"), "{err}");
    std::fs::write(
        dir.path().join("bad.pub"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = format!(
        "{:#}",
        UserKey::read(&dir.path().join("bad.pub")).unwrap_err()
    );
    assert!(err.contains("is not an OpenSSH public key"), "{err}");
}

#[test]
fn gateway_mode_writes_the_one_known_hosts_line_and_says_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = key_files(dir.path());
    let key = UserKey::read(&private).unwrap();
    let ca = new_key().public_key().to_openssh().unwrap();
    let auth = authorization(serde_json::json!({
        "ssh_mode": "gateway", "gateway_host_ca": format!("{ca} a comment"),
    }));
    let login = SshLogin::prepare(&key, &auth).unwrap();
    let known_hosts = login.known_hosts().unwrap();
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        format!("@cert-authority portcullis-gateway {ca}\n")
    );
    let mode = std::fs::metadata(&known_hosts)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let command = login.command(Reach::Port(2222)).unwrap();
    assert_eq!(
        command,
        format!(
            "ssh -o HostKeyAlias=portcullis-gateway -o UserKnownHostsFile={} -o \
             StrictHostKeyChecking=yes -p 2222 deploy@127.0.0.1",
            known_hosts.display()
        )
    );
    let json = login.json(Reach::Port(2222)).unwrap();
    assert_eq!(json["mode"], "gateway");
    assert_eq!(json["logins"], serde_json::json!(["deploy", "admin"]));
    assert_eq!(json["known_hosts"], known_hosts.display().to_string());
    assert_eq!(json["options"][1], "HostKeyAlias=portcullis-gateway");
    assert!(!dir.path().join("id-cert.pub").exists());
    drop(login);
    assert!(!known_hosts.exists(), "removed at exit");
}

#[test]
fn certificate_mode_puts_the_certificate_beside_the_key_and_never_replaces_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = key_files(dir.path());
    let key = UserKey::read(&private).unwrap();
    let auth = authorization(serde_json::json!({
        "ssh_certificate": "ssh-ed25519-cert-v01@openssh.com AAAAcert",
    }));
    let cert = dir.path().join("id-cert.pub");
    let login = SshLogin::prepare(&key, &auth).unwrap();
    assert_eq!(
        std::fs::read_to_string(&cert).unwrap(),
        "ssh-ed25519-cert-v01@openssh.com AAAAcert\n"
    );
    let mode = std::fs::metadata(&cert).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(login.text(Reach::Port(1)).unwrap().contains("id-cert.pub"));
    assert_eq!(
        login.json(Reach::Port(1)).unwrap()["certificate"],
        cert.display().to_string()
    );

    // A second session on the same key: the file is not this one's, and stays.
    let err = format!("{:#}", SshLogin::prepare(&key, &auth).unwrap_err());
    assert!(
        err.contains("already exists and is not this session's"),
        "{err}"
    );
    drop(login);
    assert!(!cert.exists(), "removed at exit");

    // The user's own file there is refused and left as it was, at exit too.
    std::fs::write(&cert, "mine\n").unwrap();
    assert!(SshLogin::prepare(&key, &auth).is_err());
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), "mine\n");
}

#[test]
fn the_ways_to_reach_the_session_are_spelled_for_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = key_files(dir.path());
    let key = UserKey::read(&private).unwrap();
    let ca = new_key().public_key().to_openssh().unwrap();
    let auth = authorization(serde_json::json!({"ssh_mode": "gateway", "gateway_host_ca": ca}));
    let login = SshLogin::prepare(&key, &auth).unwrap();
    // What a shell makes of the line: its words, the ProxyCommand as one.
    let words = |reach| shlex::split(&login.command(reach).unwrap()).unwrap();
    let unix = words(Reach::Unix(Path::new("/run/my dir/web.sock")));
    assert_eq!(
        unix[unix.len() - 3..],
        [
            "-o",
            "ProxyCommand=nc -U '/run/my dir/web.sock'",
            "deploy@portcullis-gateway"
        ],
        "{unix:?}"
    );
    let file = words(Reach::SessionFile {
        target: "web",
        file: Path::new("/run/web.session"),
    });
    let exe = std::env::current_exe().unwrap().display().to_string();
    assert_eq!(
        file[file.len() - 3..],
        [
            "-o".to_owned(),
            format!("ProxyCommand={exe} connect web --stdio --session-file /run/web.session"),
            "deploy@portcullis-gateway".to_owned()
        ],
        "{file:?}"
    );
}
