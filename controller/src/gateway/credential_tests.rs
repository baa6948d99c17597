//! The pure checks of a gateway credential request: the grant, the session, the Vault place.

use portcullis_crypto::ed25519::SigningKey;
use portcullis_policy::SshRights;
use portcullis_proto::grant::{GatewayClaims, GrantClaims, GrantKey, GRANT_ISSUER};

use super::*;

const NOW: u64 = 1_700_000_000;

fn claims(gw: Option<GatewayClaims>) -> GrantClaims {
    GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: GrantClaims::audience_for("w_1"),
        sub: "u_1".into(),
        sid: "s_1".into(),
        tid: "t_1".into(),
        ckh: "00".into(),
        src: "127.0.0.1".into(),
        dst: "127.0.0.2:22".into(),
        lim: 0,
        iat: NOW,
        exp: NOW + 600,
        gw,
        pve: None,
    }
}

fn gateway() -> GatewayClaims {
    GatewayClaims {
        key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy9kvxOzR9cK82Y/ZGA67h2GTxNCKoOvISANSHgTAVI"
            .into(),
        logins: vec!["alice".into()],
        rights: SshRights::default(),
        rec: None,
    }
}

fn signed(claims: &GrantClaims) -> (String, Vec<GrantKey>) {
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    let pair = SigningKey::from_pkcs8(&pkcs8).unwrap();
    let grant = portcullis_proto::grant::sign(claims, "k_1", &pkcs8).unwrap();
    let keys = vec![GrantKey {
        kid: "k_1".into(),
        public_key: portcullis_proto::keys::b64(pair.public_key()),
    }];
    (grant, keys)
}

#[test]
fn only_the_controllers_own_gateway_grant_for_this_worker_verifies() {
    let (grant, keys) = signed(&claims(Some(gateway())));
    let (verified, gw) = verify(&grant, &keys, "w_1", NOW + 1).unwrap();
    assert_eq!((verified.sid.as_str(), gw), ("s_1", gateway()));

    let refused = verify(&grant, &keys, "w_2", NOW + 1).unwrap_err();
    assert!(
        matches!(refused, Refused::Grant(_)),
        "another worker: {refused}"
    );
    let refused = verify(&grant, &keys, "w_1", NOW + 600).unwrap_err();
    assert!(matches!(refused, Refused::Grant(_)), "expired: {refused}");
    let (_, other_keys) = signed(&claims(Some(gateway())));
    assert!(matches!(
        verify(&grant, &other_keys, "w_1", NOW + 1),
        Err(Refused::Grant(_))
    ));

    let (grant, keys) = signed(&claims(None));
    let refused = verify(&grant, &keys, "w_1", NOW + 1).unwrap_err();
    assert!(matches!(refused, Refused::NotGateway));
    assert!(
        refused.to_string().contains("not in gateway mode"),
        "{refused}"
    );
}

fn session(state: SessionState, worker: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id: "s_1".into(),
        user_id: "u_1".into(),
        target_id: "t_1".into(),
        worker_id: worker.into(),
        state,
        termination_reason: None,
        client_addr: "127.0.0.1".into(),
        client_key_hash: "00".into(),
        endpoint: "127.0.0.2:22".into(),
        connection_limit: 0,
        connections_count: 0,
        policy_hash: "h".into(),
        created_at: 0,
        expires_at,
        activated_at: None,
        terminated_at: None,
        ssh_mode: portcullis_policy::SshMode::Gateway,
        parent_session_id: None,
    }
}

#[test]
fn the_session_must_be_live_unexpired_and_carried_by_this_worker() {
    let live = i64::try_from(NOW).unwrap() + 10;
    for state in [SessionState::Pending, SessionState::Active] {
        check_session(Some(&session(state, "w_1", live)), "w_1", NOW).unwrap();
    }
    let refusal = |s: Option<SessionRecord>| check_session(s.as_ref(), "w_1", NOW).unwrap_err();
    assert!(matches!(refusal(None), Refused::UnknownSession));
    assert!(matches!(
        refusal(Some(session(SessionState::Terminated, "w_1", live))),
        Refused::Ended
    ));
    assert!(matches!(
        refusal(Some(session(SessionState::Active, "w_1", live - 10))),
        Refused::Ended
    ));
    assert!(matches!(
        refusal(Some(session(SessionState::Minting, "w_1", live))),
        Refused::Minting
    ));
    assert!(matches!(
        refusal(Some(session(SessionState::Active, "w_2", live))),
        Refused::OtherWorker
    ));
}

#[test]
fn the_vault_place_is_the_targets_own_or_the_controllers_default() {
    let mut target = TargetRecord {
        id: "t_1".into(),
        name: "db".into(),
        address: "127.0.0.2:22".into(),
        zone: None,
        service: None,
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
    };
    assert_eq!(
        vault_ssh_place(&target, "ssh", Some("portcullis")).unwrap(),
        ("ssh".to_owned(), "portcullis".to_owned())
    );
    let refused = vault_ssh_place(&target, "ssh", None).unwrap_err();
    assert!(
        refused.to_string().contains("--vault-ssh-role"),
        "{refused}"
    );
    target.vault_ssh_mount = Some("ssh-prod".into());
    target.vault_ssh_role = Some("prod".into());
    assert_eq!(
        vault_ssh_place(&target, "ssh", Some("portcullis")).unwrap(),
        ("ssh-prod".to_owned(), "prod".to_owned())
    );
}

#[test]
fn vaults_certificate_lives_the_configured_ttl_within_the_session() {
    let five_minutes = std::time::Duration::from_secs(300);
    assert_eq!(vault_certificate_ttl(five_minutes, 3600), 300);
    assert_eq!(vault_certificate_ttl(five_minutes, 60), 60);
    assert_eq!(vault_certificate_ttl(five_minutes, 0), 1);
}
