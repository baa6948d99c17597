#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::announce::announcement;
use super::*;

fn session() -> ProxmoxSession {
    ProxmoxSession {
        cluster: "homelab".into(),
        token_id: "pc-alice@pve!pc-s1".into(),
        roles: vec!["PVEVMAdmin".into()],
        paths: vec!["/vms".into()],
        expires_at: 2_000_000_000,
        access_writes: false,
    }
}

#[test]
fn the_secret_is_32_random_bytes_and_only_its_hash_leaves() {
    let secret = LocalSecret::generate().unwrap();
    assert_eq!(secret.expose().len(), 64);
    assert!(secret.expose().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(secret.expose(), LocalSecret::generate().unwrap().expose());
    // What the worker compares: SHA-256 of the secret's text, hex.
    assert_eq!(
        secret.sha256_hex(),
        hex::encode(portcullis_crypto::digest::sha256(
            secret.expose().as_bytes()
        ))
    );
    assert_eq!(format!("{secret:?}"), "LocalSecret(<redacted>)");
}

#[test]
fn the_child_env_has_every_client_shape_and_one_secret() {
    let secret = LocalSecret::generate().unwrap();
    let s = secret.expose();
    let env = child_env(41234, &secret, Path::new("/tmp/b/ca-bundle.pem"));
    let expected = [
        ("PORTCULLIS_PVE_URL", "https://127.0.0.1:41234".to_owned()),
        ("PROXMOX_VE_ENDPOINT", "https://localhost:41234/".to_owned()),
        (
            "PROXMOX_VE_API_TOKEN",
            format!("portcullis@local!session={s}"),
        ),
        ("PROXMOX_HOST", "localhost".to_owned()),
        ("PROXMOX_PORT", "41234".to_owned()),
        ("PROXMOX_USER", "portcullis@local".to_owned()),
        ("PROXMOX_TOKEN_ID", "session".to_owned()),
        ("PROXMOX_TOKEN_SECRET", s.to_owned()),
        ("PROXMOX_VALIDATE_CERTS", "true".to_owned()),
        ("SSL_CERT_FILE", "/tmp/b/ca-bundle.pem".to_owned()),
        ("REQUESTS_CA_BUNDLE", "/tmp/b/ca-bundle.pem".to_owned()),
        ("CURL_CA_BUNDLE", "/tmp/b/ca-bundle.pem".to_owned()),
    ];
    for (name, value) in &expected {
        assert_eq!(env.get(name), Some(value.as_str()), "{name}");
    }
    assert_eq!(env.vars().count(), expected.len());
    // The token id the worker accepts is the proto's.
    assert_eq!(
        env.get("PROXMOX_VE_API_TOKEN").unwrap(),
        format!("{LOCAL_TOKEN_USER}!{LOCAL_TOKEN_NAME}={s}")
    );
    assert!(!format!("{env:?}").contains(s));
}

#[test]
fn default_sockets_live_in_a_private_runtime_directory() {
    assert_eq!(
        runtime_dir(Some("/run/user/1000".into()), Some("/home/a".into())),
        Some(PathBuf::from("/run/user/1000/portcullis"))
    );
    assert_eq!(
        runtime_dir(Some("".into()), Some("/home/a".into())),
        Some(PathBuf::from("/home/a/.cache/portcullis/run"))
    );
    assert_eq!(
        runtime_dir(Some("relative".into()), Some("/home/a".into())),
        Some(PathBuf::from("/home/a/.cache/portcullis/run"))
    );
    assert_eq!(runtime_dir(None, None), None);
    assert_eq!(socket_name("pve-1"), "pve-1.sock");
    assert_eq!(socket_name("../x/y z"), "_x_y_z.sock");

    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("a/portcullis");
    private_dir(&dir).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    // A directory left wider is narrowed.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    private_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    // A file in its place is refused.
    let file = base.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert!(private_dir(&file).is_err());

    // A socket nobody answers on is left over from a process that died: it is replaced; one
    // that answers is another session's.
    let stale = dir.join("pve-1.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert_eq!(default_socket(&dir, "pve-1").unwrap(), stale);
    assert!(!stale.exists());
    let _live = std::os::unix::net::UnixListener::bind(&stale).unwrap();
    let err = default_socket(&dir, "pve-1").unwrap_err().to_string();
    assert!(err.contains("--socket PATH"), "{err}");
}

#[test]
fn only_targets_of_a_cluster_look_injecting() {
    let mut target: Target = serde_json::from_value(serde_json::json!({
        "id": "t_1", "name": "pve-1", "address": "pve1.lan:8006", "zone": null,
        "service": "proxmox-api", "vmid": null, "tags": [], "pool": null,
        "max_session_secs": 3600, "connection_limit": 0,
        "created_at": 0, "updated_at": 0
    }))
    .unwrap();
    assert!(
        !looks_injecting(&target),
        "a hand-made target without a cluster"
    );
    target.proxmox_cluster = Some("homelab".into());
    assert!(looks_injecting(&target));
    target.proxmox_cluster = None;
    target.source = Some(portcullis_proto::catalog::TargetSource {
        kind: "proxmox".into(),
        cluster: "homelab".into(),
        key: "node/pve1".into(),
        node: None,
        guest_type: "node".into(),
        status: "online".into(),
        address_origin: None,
        overrides: Vec::new(),
        seen_at: 0,
    });
    assert!(looks_injecting(&target), "a discovered node");
    target.service = Some("pve-web".into());
    assert!(!looks_injecting(&target));
}

#[test]
fn the_announcement_says_how_to_use_the_socket_and_never_a_secret() {
    let socket = PathBuf::from("/run/user/1000/portcullis/pve-1.sock");
    let text = announcement(
        "s_1",
        "pve-1",
        2_000_000_000,
        &session(),
        &Endpoint::Socket(&socket),
    );
    assert!(
        text.contains(
            "curl --unix-socket /run/user/1000/portcullis/pve-1.sock http://pve/api2/json/version"
        ),
        "{text}"
    );
    assert!(text.contains("pc-alice@pve!pc-s1"), "{text}");
    assert!(text.contains("PVEVMAdmin on /vms"), "{text}");
}

#[test]
fn an_https_listener_writes_its_environment_to_a_private_file() {
    let home = tempfile::tempdir().unwrap();
    let runtime = home.path().join("run/portcullis");
    private_dir(&runtime).unwrap();
    let secret = LocalSecret::generate().unwrap();
    let https = Https::prepare(
        &home.path().join("config"),
        41235,
        &secret,
        Duration::from_secs(600),
        Some(EnvFileFor {
            dir: &runtime,
            target: "pve-1",
        }),
    )
    .unwrap();
    let file = https.env_file.as_ref().unwrap().path().to_path_buf();
    assert_eq!(file, runtime.join("pve-1-41235.env"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("export PROXMOX_TOKEN_SECRET={}", secret.expose())));
    // A shell reads the values back as they were.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(". \"$1\" && printf %s \"$PROXMOX_VE_API_TOKEN\"")
        .arg("sh")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("portcullis@local!session={}", secret.expose())
    );
    let bundle = PathBuf::from(https.env.get("SSL_CERT_FILE").unwrap());
    assert!(bundle.exists());
    let text = announcement(
        "s_1",
        "pve-1",
        2_000_000_000,
        &session(),
        &Endpoint::Https(&https),
    );
    assert!(!text.contains(secret.expose()), "{text}");
    assert!(text.contains("https://localhost:41235/"), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    drop(https);
    assert!(!file.exists(), "the environment file is removed");
    assert!(!bundle.exists(), "the CA bundle is removed");
}
