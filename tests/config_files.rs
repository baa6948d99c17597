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
    assert!(!config.dev_login);
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
