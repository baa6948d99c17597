//! The example configuration files in config/ are valid: users copy them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

#[test]
fn example_controller_config_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/controller.toml"
    ))
    .unwrap();
    let config =
        portcullis_controller::Config::parse(&text, "config/controller.toml", |_| None).unwrap();
    assert_eq!(config.api_listen.port(), 9200);
    assert_eq!(config.worker_lost_after.as_secs(), 30);
    let oidc = config.oidc.expect("the example configures OIDC login");
    assert_eq!(oidc.groups_claim, "groups");
    assert_eq!(oidc.login_timeout.as_secs(), 600);
    assert!(!oidc.device_flow, "the device flow is off unless enabled");
}

#[test]
fn a_misspelt_key_is_refused_naming_it() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/controller.toml"
    ))
    .unwrap();
    let broken = text.replace("sweep_interval", "sweep_intervall");
    let err = portcullis_controller::Config::parse(&broken, "c.toml", |_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sweep_intervall"), "{err}");
}

#[test]
fn the_commented_vault_example_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/controller.toml"
    ))
    .unwrap();
    // Uncomment the [vault] block (token file login) and switch the backend to it.
    let mut out = String::new();
    let mut in_vault = false;
    for line in text.lines() {
        if line == "# [vault]" {
            in_vault = true;
        }
        match line.strip_prefix("# ") {
            Some(rest) if in_vault && !rest.starts_with('#') && !rest.starts_with("token_env") => {
                out.push_str(rest)
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let out = out.replace("backend = \"local-ca\"", "backend = \"vault\"");
    let config = portcullis_controller::Config::parse(&out, "config/controller.toml", |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    let portcullis_controller::config::SshBackend::Vault(vault) = config.ssh_backend else {
        panic!("the backend is not vault")
    };
    assert_eq!(vault.token_role, "portcullis-session");
    assert_eq!(vault.ssh_role.as_deref(), Some("portcullis"));
    assert!(matches!(
        vault.auth,
        portcullis_controller::config::VaultAuth::TokenFile(_)
    ));
}

#[test]
fn the_commented_catalog_example_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/controller.toml"
    ))
    .unwrap();
    // Uncomment the [[catalog.proxmox]] block, up to the first line that is not part of it.
    let mut out = String::new();
    let mut in_catalog = false;
    for line in text.lines() {
        if line == "# [[catalog.proxmox]]" {
            in_catalog = true;
        } else if !line.starts_with("# ") {
            in_catalog = false;
        }
        match line.strip_prefix("# ") {
            Some(rest) if in_catalog && !rest.starts_with('#') => out.push_str(rest),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    let config = portcullis_controller::Config::parse(&out, "config/controller.toml", |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(config.catalog.len(), 1, "{out}");
    let cluster = &config.catalog[0];
    assert_eq!(cluster.name, "homelab");
    assert_eq!(cluster.urls.len(), 2);
    assert_eq!(cluster.interval.as_secs(), 300);
    assert_eq!(
        cluster.default_services["PROXMOX-MGMT"],
        Vec::<String>::new()
    );
}

#[test]
fn the_commented_local_auth_example_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/controller.toml"
    ))
    .unwrap();
    // Uncomment the [auth.local] block, up to the blank line that ends it.
    let mut out = String::new();
    let mut in_block = false;
    let mut found = 0;
    for line in text.lines() {
        if line == "# [auth.local]" {
            in_block = true;
        } else if line.is_empty() {
            in_block = false;
        }
        match line.strip_prefix("# ") {
            Some(rest) if in_block => {
                found += 1;
                out.push_str(rest)
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(found > 10, "the [auth.local] example is gone");
    portcullis_controller::Config::parse(&out, "config/controller.toml", |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
}

#[test]
fn the_example_listens_on_loopback_and_its_commented_api_certificate_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/controller.toml"
    ))
    .unwrap();
    let config =
        portcullis_controller::Config::parse(&text, "config/controller.toml", |_| None).unwrap();
    assert!(config.api_listen.ip().is_loopback());
    assert!(config.cluster_listen.ip().is_loopback());
    assert_eq!(config.api_certificate, None);
    let out = text
        .replace("# tls_cert_file = ", "tls_cert_file = ")
        .replace("# tls_key_file = ", "tls_key_file = ")
        .replace("listen = \"127.0.0.1:9200\"", "listen = \"0.0.0.0:9200\"");
    let config = portcullis_controller::Config::parse(&out, "config/controller.toml", |_| None)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(config.api_listen.to_string(), "0.0.0.0:9200");
    let files = config
        .api_certificate
        .expect("the example's certificate files");
    assert_eq!(files.cert, std::path::Path::new("/etc/portcullis/api.crt"));
    assert_eq!(files.key, std::path::Path::new("/etc/portcullis/api.key"));
}
