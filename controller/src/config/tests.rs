use super::*;
use crate::secret::ExposeSecret as _;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", |_| None)
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n").unwrap();
    assert_eq!(c.api_listen.port(), 9200);
    assert_eq!(c.token_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(c.per_user, PerUserLimits::default());
    let c = parse(
        "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n\
         [sessions.per_user]\nmax_live = 0\nauthorize_per_minute = 5\n",
    )
    .unwrap();
    assert_eq!(c.per_user.max_live, 0);
    assert_eq!(c.per_user.authorize_per_minute, 5);
}

#[test]
fn dev_login_is_refused_with_its_line_and_what_to_do() {
    for value in ["true", "false"] {
        let err = parse(&format!(
            "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n[auth]\ndev_login = {value}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("test.toml line 6")
                && err.contains("`auth.dev_login` is no longer a config key")
                && err.contains("portcullis dev")
                && err.contains("portcullis controller issue-token"),
            "{err}"
        );
    }
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = parse("[store]\nurl = \"sqlite://x.db\"\nmax_conections = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_conections") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_key() {
    let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
    let err = parse(&format!("{base}[api]\nlisten = \"localhost\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("api.listen"), "{err}");
    let err = parse(&format!("{base}[sessions]\nsweep_interval = \"soon\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sessions.sweep_interval"), "{err}");
    let err = parse(&format!("{base}[sessions]\nsweep_interval = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("greater than zero"), "{err}");
    let err = parse(&format!("{base}[sessions]\nsweep_interval = 1e300\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sessions.sweep_interval") && err.contains("too long"),
        "{err}"
    );
    let c = parse(&format!("{base}[sessions]\nsweep_interval = 0.25\n")).unwrap();
    assert_eq!(c.sweep_interval, Duration::from_millis(250));
    let err = parse("[keys]\nmaster_key_file = \"m\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.url"), "{err}");
}

#[test]
fn cluster_handshake_limits_have_defaults_and_name_bad_keys() {
    let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
    let c = parse(base).unwrap();
    assert_eq!(
        c.cluster_handshakes,
        crate::link::gate::HandshakeLimits::default()
    );
    let c = parse(&format!(
        "{base}[cluster]\nhandshake_timeout = \"3s\"\nfirst_frame_timeout = 0.5\n\
         max_handshakes = 8\nmax_handshakes_per_source = 2\n"
    ))
    .unwrap();
    let l = c.cluster_handshakes;
    assert_eq!(l.handshake_timeout, Duration::from_secs(3));
    assert_eq!(l.first_frame_timeout, Duration::from_millis(500));
    assert_eq!((l.places.total, l.places.per_source), (8, 2));
    for (lines, key) in [
        ("handshake_timeout = 0", "cluster.handshake_timeout"),
        (
            "first_frame_timeout = \"never\"",
            "cluster.first_frame_timeout",
        ),
        ("max_handshakes = 0", "cluster.max_handshakes"),
        (
            "max_handshakes = 4\nmax_handshakes_per_source = 5",
            "cluster.max_handshakes_per_source",
        ),
        (
            "max_handshakes_per_source = 0",
            "cluster.max_handshakes_per_source",
        ),
    ] {
        let err = parse(&format!("{base}[cluster]\n{lines}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{lines}: {err}");
    }
}

#[test]
fn env_overrides_store_and_master_key() {
    let c = Config::parse("", "t", |k| match k {
        "PORTCULLIS_DATABASE_URL" => Some("postgres://db/x".into()),
        "PORTCULLIS_MASTER_KEY" => Some("00".repeat(32)),
        _ => None,
    })
    .unwrap();
    assert!(c.store_url.expose_secret().starts_with("postgres://"));
    assert!(matches!(c.master_key, MasterKeySource::Env(_)));
}

#[test]
fn vault_backend_is_validated() {
    let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
    let c = parse(base).unwrap();
    assert!(matches!(c.ssh_backend, SshBackend::LocalCa));
    let err = parse(&format!("{base}[ssh]\nbackend = \"vault\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[vault]"), "{err}");
    let err = parse(&format!("{base}[ssh]\nbackend = \"hsm\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssh.backend"), "{err}");
    let vault = "[vault]\naddress = \"https://v:8200\"\ntoken_role = \"ps\"\nssh_role = \"r\"\n";
    let err = parse(&format!("{base}[ssh]\nbackend = \"vault\"\n{vault}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("PORTCULLIS_VAULT_TOKEN"), "{err}");
    let c = parse(&format!(
        "{base}[ssh]\nbackend = \"vault\"\n{vault}approle_role_id = \"id\"\napprole_secret_id_file = \"s\"\n"
    ))
    .unwrap();
    let SshBackend::Vault(v) = c.ssh_backend else {
        panic!("not vault")
    };
    assert!(matches!(v.auth, VaultAuth::AppRole { ref mount, .. } if mount == "approle"));
    assert_eq!(v.ssh_mount, "ssh");
    let err = parse(&format!(
        "{base}[ssh]\nbackend = \"vault\"\n[vault]\naddress = \"http://vault.example\"\ntoken_role = \"ps\"\ntoken_file = \"t\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("https://"), "{err}");
    let err = parse(&format!(
        "{base}[ssh]\nbackend = \"vault\"\n{vault}token_file = \"t\"\nssh_mount = \"../sys\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("vault.ssh_mount"), "{err}");
}

#[test]
fn recordings_default_to_beside_the_store_kept_forever_and_parse_their_limits() {
    let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
    let c = parse(base).unwrap();
    let r = &c.recordings;
    assert!(r.store_url.is_none());
    assert_eq!((r.retention, r.max_total_bytes), (None, None));
    assert_eq!(r.checkpoint_chunks, 64);
    assert_eq!(r.checkpoint_interval, Duration::from_secs(300));
    let c = parse(&format!(
        "{base}[recordings]\nstore_url = \"postgres://db/rec\"\nretention = \"90d\"\n\
         max_total_bytes = 1000\nmax_bytes_per_recording = 10\ncheckpoint_chunks = 8\n\
         checkpoint_interval = \"1m\"\n"
    ))
    .unwrap();
    let r = &c.recordings;
    assert_eq!(
        r.store_url.as_ref().map(|u| u.expose_secret().to_owned()),
        Some("postgres://db/rec".to_owned())
    );
    assert_eq!(r.retention, Some(Duration::from_secs(90 * 24 * 3600)));
    assert_eq!(
        (r.max_total_bytes, r.max_bytes_per_recording),
        (Some(1000), 10)
    );
    assert_eq!(
        (r.checkpoint_chunks, r.checkpoint_interval),
        (8, Duration::from_secs(60))
    );
    for (bad, key) in [
        ("store_url = \"mysql://x\"", "recordings.store_url"),
        ("retention = \"0s\"", "recordings.retention"),
        ("checkpoint_chunks = 0", "recordings.checkpoint_chunks"),
        ("max_total_bytes = 0", "recordings.max_total_bytes"),
    ] {
        let err = parse(&format!("{base}[recordings]\n{bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
}

#[test]
fn listeners_default_to_loopback() {
    let c = parse("[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n").unwrap();
    assert!(c.api_listen.ip().is_loopback(), "{}", c.api_listen);
    assert!(c.cluster_listen.ip().is_loopback(), "{}", c.cluster_listen);
    assert_eq!(c.api_certificate, None);
}

#[test]
fn the_api_certificate_takes_both_files_or_neither() {
    let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n[api]\n";
    let c = parse(&format!(
        "{base}tls_cert_file = \"/etc/p/api.crt\"\ntls_key_file = \"/etc/p/api.key\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.api_certificate,
        Some(CertificateFiles {
            cert: "/etc/p/api.crt".into(),
            key: "/etc/p/api.key".into(),
        })
    );
    let err = parse(&format!("{base}tls_cert_file = \"/etc/p/api.crt\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`api.tls_key_file`") && err.contains("set both"),
        "{err}"
    );
    let err = parse(&format!("{base}tls_key_file = \"/etc/p/api.key\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`api.tls_cert_file`") && err.contains("set both"),
        "{err}"
    );
}

#[test]
fn api_trusted_proxies_are_networks_empty_by_default_and_a_bad_one_is_named() {
    let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
    assert!(parse(base).unwrap().api_trusted_proxies.is_empty());
    let c = parse(&format!(
        "{base}[api]\ntrusted_proxies = [\"10.0.0.5/32\", \"fd00::/8\"]\n"
    ))
    .unwrap();
    assert!(c.api_trusted_proxies.trusts("10.0.0.5".parse().unwrap()));
    assert!(c.api_trusted_proxies.trusts("fd00::1".parse().unwrap()));
    assert!(!c.api_trusted_proxies.trusts("10.0.0.6".parse().unwrap()));
    let err = parse(&format!(
        "{base}[api]\ntrusted_proxies = [\"lb.example.net\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("api.trusted_proxies") && err.contains("lb.example.net"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_named_once_with_its_cause() {
    let err = Config::load_with_env(std::path::Path::new("/nonexistent/controller.toml"), |_| {
        None
    })
    .unwrap_err();
    // The io error is in the message and not repeated as a source, so a printed chain says
    // it once.
    assert!(std::error::Error::source(&err).is_none());
    let text = err.to_string();
    assert_eq!(text.matches("No such file").count(), 1, "{text}");
    assert!(
        text.contains("/nonexistent/controller.toml") && text.contains("--config"),
        "{text}"
    );
}
