use portcullis_policy::SshMode;
use portcullis_proto::api::{SessionAuthorization, Target};

use super::{for_session, gateway_known_hosts, known_hosts};

fn target() -> Target {
    serde_json::from_value(serde_json::json!({
        "id": "t_1", "name": "web", "address": "web-01.lan:22", "zone": null, "service": null,
        "vmid": null, "tags": [], "pool": null, "max_session_secs": 60, "connection_limit": 0,
        "created_at": 0, "updated_at": 0, "ssh_host_keys": ["ssh-ed25519 AAAA1"],
    }))
    .unwrap()
}

fn authorization(extra: serde_json::Value) -> SessionAuthorization {
    let mut value = serde_json::json!({
        "session_id": "s_1", "target_id": "t_1", "target_name": "web", "worker_id": "w_1",
        "worker_addr": "127.0.0.1:1", "worker_key_fingerprint": "00", "expires_at": 1,
        "connection_limit": 0, "grant": "g", "endpoint": "127.0.0.1:22",
        "ssh_principals": ["deploy"],
    });
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn host_ca() -> String {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    key.public_key().to_openssh().unwrap()
}

#[test]
fn known_hosts_lists_pinned_keys_and_host_cas() {
    let mut target = target();
    target.ssh_host_keys.clear();
    assert!(known_hosts(&target).is_none());
    target.ssh_host_keys = vec!["ssh-ed25519 AAAA1".into()];
    let (alias, text) = known_hosts(&target).unwrap();
    assert_eq!(alias, "portcullis.web");
    assert_eq!(text, "portcullis.web ssh-ed25519 AAAA1\n");
    target.ssh_host_cas = vec!["ssh-ed25519 AAAA2".into()];
    let (alias, text) = known_hosts(&target).unwrap();
    assert_eq!(alias, "web-01.lan");
    assert!(
        text.contains("@cert-authority web-01.lan ssh-ed25519 AAAA2\n"),
        "{text}"
    );
}

#[test]
fn certificate_mode_shows_the_certificate_and_checks_the_target() {
    let auth = authorization(
        serde_json::json!({"ssh_certificate": "ssh-ed25519-cert-v01@openssh.com AAAA"}),
    );
    let trust = for_session(&target(), &auth).unwrap();
    assert_eq!(trust.mode, SshMode::Certificate);
    assert_eq!(trust.alias, "portcullis.web");
    assert_eq!(trust.known_hosts, "portcullis.web ssh-ed25519 AAAA1\n");
    assert!(trust.certificate.is_some());

    let err = for_session(&target(), &authorization(serde_json::json!({}))).unwrap_err();
    assert!(err.to_string().contains("no SSH certificate"), "{err}");
}

#[test]
fn gateway_mode_trusts_the_gateway_ca_for_the_gateway_name_only_and_holds_no_certificate() {
    let ca = host_ca();
    let auth = authorization(serde_json::json!({
        "ssh_mode": "gateway",
        "gateway_host_ca": format!("{ca} a comment\n"),
        // A certificate sent anyway is not used.
        "ssh_certificate": "ssh-ed25519-cert-v01@openssh.com AAAA",
    }));
    let trust = for_session(&target(), &auth).unwrap();
    assert_eq!(trust.mode, SshMode::Gateway);
    assert_eq!(trust.alias, "portcullis-gateway");
    assert_eq!(trust.certificate, None);
    // Exactly one line, scoped to the gateway's name, never `*`; the comment is dropped.
    assert_eq!(
        trust.known_hosts,
        format!("@cert-authority portcullis-gateway {}\n", ca.trim())
    );
    assert!(!trust.known_hosts.contains("web"), "{}", trust.known_hosts);
}

#[test]
fn gateway_mode_without_a_valid_ca_is_refused() {
    let auth = authorization(serde_json::json!({"ssh_mode": "gateway"}));
    let err = for_session(&target(), &auth).unwrap_err();
    assert!(err.to_string().contains("no gateway host CA"), "{err}");
    assert!(gateway_known_hosts("ssh-ed25519 AAAA\n* ssh-ed25519 AAAA").is_err());
    assert!(gateway_known_hosts("not a key").is_err());
}
