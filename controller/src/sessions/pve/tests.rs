//! The pure parts of per-session Proxmox tokens: which targets inject, and the token a
//! decision plans (user in the realm, paths within the configured ones, the grant's claim).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_policy::{Constraints, Decision, Outcome, ProxmoxGrant};

use super::*;
use crate::catalog::config::{ServerTrust, TokenSource};

fn sessions(paths: &[&str]) -> ProxmoxSessions {
    ProxmoxSessions {
        realm: "pve".into(),
        token: TokenSource::File("/etc/s.token".into()),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        mint_timeout: Duration::from_secs(30),
    }
}

fn cluster(name: &str, with_sessions: bool) -> ProxmoxCluster {
    ProxmoxCluster {
        name: name.into(),
        urls: vec![url::Url::parse("https://192.0.2.10:8006/").unwrap()],
        token: TokenSource::File("/etc/d.token".into()),
        trust: ServerTrust::Fingerprint([1; 32]),
        interval: Duration::from_secs(300),
        timeout: Duration::from_secs(30),
        node_targets: true,
        guest_agent: true,
        sdn: true,
        name_suffix: String::new(),
        service_tag_prefix: String::new(),
        default_services: BTreeMap::new(),
        sessions: with_sessions.then(|| sessions(&["/vms"])),
    }
}

fn target() -> TargetRecord {
    TargetRecord {
        id: "t_1".into(),
        name: "pve-1".into(),
        address: "192.0.2.10:8006".into(),
        zone: Some("MGMT".into()),
        service: Some("proxmox-api".into()),
        vmid: None,
        tags: vec![],
        pool: None,
        max_session_secs: 3600,
        connection_limit: 0,
        ssh_host_keys: vec![],
        ssh_host_cas: vec![],
        vault_ssh_mount: None,
        vault_ssh_role: None,
        vault_secrets: vec![],
        source: None,
        source_key: None,
        available: true,
        discovered: None,
        proxmox_cluster: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn decision(grant: Option<ProxmoxGrant>) -> Decision {
    Decision {
        outcome: Outcome::Allow,
        reason: "allowed".into(),
        source_zone: None,
        target_zone: None,
        service: Some("proxmox-api".into()),
        cells: vec![],
        roles: vec!["tf".into()],
        role_rule: None,
        constraints: Constraints::default(),
        proxmox: grant,
        policy_hash: "h".into(),
        step_up: None,
    }
}

fn grant(paths: &[&str]) -> ProxmoxGrant {
    ProxmoxGrant {
        user: "pc-alice".into(),
        roles: vec!["PVEVMAdmin".into()],
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        access_writes: false,
    }
}

#[test]
fn a_target_injects_when_its_cluster_has_a_sessions_table() {
    let clusters = [cluster("lab", true), cluster("plain", false)];
    assert!(injecting(&target(), &clusters).unwrap().is_none());
    let mut t = target();
    t.proxmox_cluster = Some("lab".into());
    assert_eq!(injecting(&t, &clusters).unwrap().unwrap().0, "lab");
    // Naming a cluster without sessions, or none configured, is refused, never tunnelled raw.
    t.proxmox_cluster = Some("plain".into());
    let err = injecting(&t, &clusters).unwrap_err().to_string();
    assert!(err.contains("[catalog.proxmox.sessions]"), "{err}");
    t.proxmox_cluster = Some("gone".into());
    assert!(injecting(&t, &clusters).is_err());
}

#[test]
fn a_discovered_nodes_api_target_injects_but_not_its_guests_or_other_services() {
    let clusters = [cluster("lab", true), cluster("plain", false)];
    let mut node = target();
    node.source = Some("lab".into());
    node.source_key = Some("node/pve1".into());
    assert_eq!(injecting(&node, &clusters).unwrap().unwrap().0, "lab");
    node.source = Some("plain".into());
    assert!(injecting(&node, &clusters).unwrap().is_none());
    let mut guest = target();
    guest.source = Some("lab".into());
    guest.source_key = Some("qemu/100".into());
    assert!(injecting(&guest, &clusters).unwrap().is_none());
    let mut web_ui = target();
    web_ui.source = Some("lab".into());
    web_ui.source_key = Some("node/pve1".into());
    web_ui.service = Some("https".into());
    assert!(injecting(&web_ui, &clusters).unwrap().is_none());
}

#[test]
fn the_token_acts_as_the_policy_user_in_the_configured_realm() {
    let s = sessions(&["/vms", "/pool/tf"]);
    let facts = PveFacts {
        cluster: "lab",
        sessions: &s,
        local_secret_sha256: Some("ab"),
    };
    let mint = plan_mint(
        &facts,
        &decision(Some(grant(&["/vms/100", "/pool/tf"]))),
        "s_0123-abcd",
        1_900_000_000,
    )
    .unwrap();
    assert_eq!(mint.userid, "pc-alice@pve");
    assert_eq!(mint.token_name, "pc-s0123abcd");
    assert_eq!(mint.token_id(), "pc-alice@pve!pc-s0123abcd");
    assert_eq!(mint.expires_at, 1_900_000_000);
    let claims = mint.claims();
    assert_eq!(claims.tok, "pc-alice@pve!pc-s0123abcd");
    assert_eq!(claims.lsh.as_deref(), Some("ab"));
    assert!(!claims.aw);
    let row = mint.intent("s_0123-abcd", 5);
    assert_eq!(row.state, TokenState::Intent);
    assert!(row.secret.is_none());
    assert_eq!(row.token_id(), claims.tok);
    let session = mint.session();
    assert_eq!(session.token_id, claims.tok);
    assert_eq!(
        session.paths,
        vec!["/vms/100".to_owned(), "/pool/tf".to_owned()]
    );
    assert!(mint.details().privsep);
}

#[test]
fn no_identity_or_a_path_outside_the_configured_ones_is_denied() {
    let s = sessions(&["/vms"]);
    let facts = PveFacts {
        cluster: "lab",
        sessions: &s,
        local_secret_sha256: None,
    };
    let err = plan_mint(&facts, &decision(None), "s_1", 1).unwrap_err();
    assert!(err.contains("no role names a Proxmox identity"), "{err}");
    for outside in ["/", "/vmsx", "/storage/local", "/pool/tf"] {
        let err = plan_mint(
            &facts,
            &decision(Some(grant(&["/vms/1", outside]))),
            "s_1",
            1,
        )
        .unwrap_err();
        assert!(
            err.contains(outside) && err.contains("outside"),
            "{outside}: {err}"
        );
    }
}

#[test]
fn the_comment_names_the_session_and_user_in_printable_characters() {
    assert_eq!(
        comment("s_1", "alice\n\u{1b}[2J"),
        "portcullis session s_1 of alice[2J"
    );
}
