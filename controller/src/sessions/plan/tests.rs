//! The plan of authorize-session on a small policy, without a store, a clock or a key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_policy::{Decision, Policy};
use portcullis_proto::grant::{GrantClaims, GRANT_ISSUER};

use super::*;
use crate::api::extract::Principal;
use crate::audit::{event, AuditEvent, Event};
use crate::sessions::error::SessionError;
use crate::sessions::limits::RateCheck;
use crate::store::sessions::SessionState;
use crate::store::targets::TargetRecord;
use crate::store::users::UserRecord;
use crate::store::workers::WorkerRecord;

const NOW: u64 = 1_700_000_000;
const SSH_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy9kvxOzR9cK82Y/ZGA67h2GTxNCKoOvISANSHgTAVI";

/// LOCAL (the clients, the broker and the targets) may reach itself for `ssh`; FAR has no
/// cell. `ssh` members get a login and limits, `tcp` members neither.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
trust = "high"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "FAR"
trust = "low"
cidrs = ["10.0.0.0/8"]

[[service]]
name = "ssh"
ports = [22]

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["ssh"]

[[role]]
name = "ssh-users"
groups = ["ssh"]

[[role.grant]]
zones = ["LOCAL"]
services = ["ssh"]
logins = ["{{preferred_username}}"]

[role.constraints]
max_session_secs = 600
connection_limit = 4

[[role]]
name = "tcp-users"
groups = ["tcp"]

[[role.grant]]
zones = ["LOCAL"]
services = ["ssh"]
"#;

/// The facts of one request, owned; [`World::facts`] lends them to the plan.
struct World {
    principal: Principal,
    target: TargetRecord,
    worker: Option<WorkerRecord>,
    policy: Policy,
    max_live: u32,
    live_sessions: Option<i64>,
    ssh_key: Option<&'static str>,
    /// The Vault backend's default SSH mount and role.
    vault: Option<(&'static str, Option<&'static str>)>,
}

impl World {
    fn new(groups: &[&str]) -> World {
        World {
            principal: Principal {
                user: UserRecord {
                    id: "u_1".into(),
                    issuer: "https://idp.example".into(),
                    subject: "sub-1".into(),
                    username: "alice".into(),
                    email: None,
                    name: None,
                    groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                    amr: vec![],
                    acr: None,
                    auth_time: None,
                    updated_at: 0,
                },
                token_id: "k_1".into(),
                token_expires_at: 0,
                permissions: BTreeSet::new(),
                peer: "127.0.0.1:50000".parse().unwrap(),
            },
            target: TargetRecord {
                id: "t_1".into(),
                name: "db".into(),
                address: "127.0.0.2:22".into(),
                zone: None,
                service: Some("ssh".into()),
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
            },
            worker: Some(WorkerRecord {
                id: "w_1".into(),
                name: "w1".into(),
                proxy_addr: "127.0.0.1:9443".into(),
                key_fingerprint: "ab".repeat(32),
                state: "active".into(),
                created_at: 0,
                last_seen_at: Some(0),
                cert_expires_at: 0,
                draining_since: None,
                stopped_at: None,
            }),
            policy: Policy::parse(POLICY).unwrap(),
            max_live: 0,
            live_sessions: None,
            ssh_key: None,
            vault: None,
        }
    }

    fn endpoint(&self) -> SocketAddr {
        self.target.address.parse().unwrap()
    }

    fn decide(&self) -> Result<Decision, Refusal> {
        decide(
            &self.principal,
            &self.target,
            self.endpoint(),
            Some(&self.policy),
            NOW,
        )
    }

    fn facts<'a>(&'a self, decision: &'a Decision) -> Facts<'a> {
        Facts {
            now: NOW,
            principal: &self.principal,
            target: &self.target,
            endpoint: self.endpoint(),
            decision,
            live_sessions: self.live_sessions,
            worker: self.worker.as_ref(),
            client_spki: b"the client's key",
            ssh_public_key: self.ssh_key,
            settings: Settings {
                max_live: self.max_live,
                ssh_certificate_ttl: Duration::from_secs(300),
                vault: self.vault.map(|(ssh_mount, ssh_role)| VaultDefaults {
                    ssh_mount,
                    ssh_role,
                }),
            },
            keys: KeyIds {
                grant: "key_grant",
                ssh_ca: signs_embedded_certificate(
                    self.ssh_key,
                    ssh_mode(self.ssh_key, decision),
                    self.vault.is_some(),
                )
                .then_some("key_ssh_ca"),
            },
            ids: NewIds {
                session: "s_1".into(),
                credential: "c_1".into(),
                serial: 42,
            },
            pve: None,
            access: None,
            step_up: None,
        }
    }

    /// The plan of an allowed request.
    fn plan(&self) -> Result<Plan, Refusal> {
        let decision = self.decide().expect("the policy allows this request");
        plan(&self.facts(&decision))
    }
}

fn refused<T: std::fmt::Debug>(step: Result<T, Refusal>) -> Refusal {
    step.expect_err("the request is refused")
}

#[test]
fn an_allowed_session_is_planned_with_its_claims_row_certificate_and_event() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    let decision = world.decide().unwrap();
    let plan = plan(&world.facts(&decision)).unwrap();

    // The target allows an hour, the role 600 s; the target no connection limit, the role 4.
    let claims = GrantClaims {
        iss: GRANT_ISSUER.into(),
        aud: "worker:w_1".into(),
        sub: "u_1".into(),
        sid: "s_1".into(),
        tid: "t_1".into(),
        ckh: portcullis_proto::keys::spki_fingerprint(b"the client's key"),
        src: "127.0.0.1".into(),
        dst: "127.0.0.2:22".into(),
        lim: 4,
        iat: NOW,
        exp: NOW + 600,
        gw: None,
        pve: None,
    };
    assert_eq!(plan.claims, claims);
    assert_eq!(plan.logins, ["alice"]);
    assert_eq!(
        plan.certificate,
        Some(Certificate {
            user_key: SSH_KEY.into(),
            serial: 42,
            ca_key_id: "key_ssh_ca".into(),
            valid_after: NOW - 60,
            valid_before: NOW + 300,
        })
    );
    assert_eq!(plan.vault, None);
    let record = &plan.record;
    assert_eq!(record.state, SessionState::Pending);
    assert_eq!(
        (
            record.id.as_str(),
            record.worker_id.as_str(),
            record.endpoint.as_str()
        ),
        ("s_1", "w_1", "127.0.0.2:22")
    );
    assert_eq!(
        (record.expires_at, record.connection_limit),
        (1_700_000_600, 4)
    );
    assert_eq!(record.policy_hash, world.policy.hash());

    assert!(!decision.cells.is_empty(), "{decision:?}");
    let authorized = Event::SessionAuthorized {
        reason: decision.reason.clone(),
        policy_hash: world.policy.hash().to_owned(),
        details: event::SessionAuthorized {
            worker_id: "w_1".into(),
            endpoint: "127.0.0.2:22".into(),
            expires_at: NOW + 600,
            connection_limit: 4,
            grant_key_id: "key_grant".into(),
            ssh_certificate: Some(event::SshCertificate {
                serial: "42".into(),
                key_id: "s_1".into(),
                ca_key_id: "key_ssh_ca".into(),
                principals: vec!["alice".into()],
                valid_before: NOW + 300,
            }),
            vault_credential_id: None,
            source_zone: Some("LOCAL".into()),
            target_zone: Some("LOCAL".into()),
            cells: decision.cells.clone(),
            ssh_mode: Some("certificate".into()),
            parent_session: None,
            destination: None,
            access_request: None,
            step_up: None,
        },
    };
    let expected = AuditEvent::new(world.principal.actor(), authorized)
        .session("s_1")
        .target("t_1");
    assert_eq!(plan.event, expected);
}

#[test]
fn the_matrix_refuses_and_the_event_records_how_far_the_policy_got() {
    let mut world = World::new(&["ssh"]);
    world.target.address = "10.0.0.5:22".into();
    let refusal = refused(world.decide());
    let reason = "the matrix has no cell LOCAL -> FAR: denied by default";
    assert!(
        matches!(&refusal.error, SessionError::Denied { reason: r, admitting_cell: None } if r == reason),
        "{:?}",
        refusal.error
    );
    assert_eq!(
        refusal.error.to_string(),
        format!("session denied: {reason}")
    );
    let Some(AuditEvent {
        event:
            Event::SessionDenied {
                policy_hash,
                details,
                ..
            },
        target,
        ..
    }) = refusal.event.clone().map(|e| *e)
    else {
        panic!("no session_denied event: {:?}", refusal.event);
    };
    assert_eq!(policy_hash.as_deref(), Some(world.policy.hash()));
    assert_eq!(target.as_deref(), Some("t_1"));
    assert_eq!(details.endpoint.as_deref(), Some("10.0.0.5:22"));
    let at = details.decision.expect("the decision's facts");
    assert_eq!(
        (
            at.source_zone.as_deref(),
            at.target_zone.as_deref(),
            at.service.as_deref()
        ),
        (Some("LOCAL"), Some("FAR"), Some("ssh"))
    );
    assert_eq!(at.cells.len(), 1, "{:?}", at.cells);
    assert_eq!(at.role_rule, None);
}

#[test]
fn a_refusal_by_the_role_check_names_the_cell_that_admitted_it() {
    let world = World::new(&["nobody"]);
    let refusal = refused(world.decide());
    let Some(AuditEvent {
        event: Event::SessionDenied { details, .. },
        ..
    }) = refusal.event.as_deref()
    else {
        panic!("no session_denied event: {:?}", refusal.event);
    };
    let at = details.decision.as_ref().expect("the decision's facts");
    assert!(at.role_rule.is_some(), "{at:?}");
    let cell = at.cells.first().expect("the cells checked");
    let SessionError::Denied {
        reason,
        admitting_cell,
    } = &refusal.error
    else {
        panic!("not a denial: {:?}", refusal.error);
    };
    assert_eq!(admitting_cell.as_ref(), Some(cell));
    assert_eq!(
        refusal.error.to_string(),
        format!(
            "session denied: {reason} (checked against the matrix cell {cell}, which admits \
             it; the role check refused it)"
        )
    );
}

#[test]
fn without_a_policy_or_at_an_unroutable_address_everything_is_denied() {
    let world = World::new(&["ssh"]);
    let refusal = refused(decide(
        &world.principal,
        &world.target,
        world.endpoint(),
        None,
        NOW,
    ));
    assert_eq!(
        refusal.error.to_string(),
        "session denied: no policy is loaded: everything is denied"
    );
    let denied = Event::SessionDenied {
        reason: "no policy is loaded: everything is denied".into(),
        policy_hash: None,
        details: event::SessionDenied {
            endpoint: Some("127.0.0.2:22".into()),
            decision: None,
            parent_session: None,
            destination: None,
        },
    };
    let expected = AuditEvent::new(world.principal.actor(), denied).target("t_1");
    assert_eq!(refusal.event.as_deref(), Some(&expected));

    for address in ["0.0.0.0:22", "224.0.0.1:22"] {
        let refusal = refused(decide(
            &world.principal,
            &world.target,
            address.parse().unwrap(),
            Some(&world.policy),
            NOW,
        ));
        let ip = address.trim_end_matches(":22");
        assert_eq!(
            refusal.error.to_string(),
            format!(
                "session denied: the target resolves to {ip}, which is never a session endpoint"
            )
        );
        assert!(refusal.event.is_some());
    }
}

/// "Sign only after every check": the SSH login check refuses before a plan exists, and only
/// a plan is signed (`issue::sign` takes one), so this denial never reaches a key.
#[test]
fn an_ssh_key_without_a_granted_login_is_denied_before_anything_is_planned_to_sign() {
    let mut world = World::new(&["tcp"]);
    world.ssh_key = Some(SSH_KEY);
    let refusal = refused(world.plan());
    assert_eq!(
        refusal.error.to_string(),
        "session denied: the policy grants no SSH login (principal) on this target"
    );
    let Some(AuditEvent {
        event:
            Event::SessionDenied {
                reason,
                policy_hash,
                details,
            },
        ..
    }) = refusal.event.clone().map(|e| *e)
    else {
        panic!("no session_denied event: {:?}", refusal.event);
    };
    assert_eq!(
        reason,
        "the policy grants no SSH login (principal) on this target"
    );
    assert_eq!(policy_hash.as_deref(), Some(world.policy.hash()));
    assert!(details.decision.is_some_and(|at| at.role_rule.is_none()));

    // Without an SSH key the same user gets a plain TCP session.
    world.ssh_key = None;
    let plan = world.plan().unwrap();
    assert!(plan.logins.is_empty());
    assert_eq!(plan.certificate, None);
}

#[test]
fn the_rate_limit_audits_only_the_first_refusal_of_a_minute() {
    let world = World::new(&["ssh"]);
    let (who, target) = (&world.principal, &world.target);
    assert!(check_rate(who, target, RateCheck::Within, 5).is_ok());

    let first = RateCheck::Exceeded {
        first: true,
        retry_after: 40,
    };
    let refusal = refused(check_rate(who, target, first, 5));
    assert!(matches!(
        refusal.error,
        SessionError::RateLimited {
            per_minute: 5,
            retry_after: 40
        }
    ));
    let reached = Event::SessionLimitReached {
        reason: "more than 5 authorize-session requests in a minute".into(),
        details: event::LimitReached {
            limit: "sessions.per_user.authorize_per_minute".into(),
            value: 5,
            live: None,
        },
    };
    let expected = AuditEvent::new(who.actor(), reached).target("t_1");
    assert_eq!(refusal.event.as_deref(), Some(&expected));

    let again = RateCheck::Exceeded {
        first: false,
        retry_after: 39,
    };
    let refusal = refused(check_rate(who, target, again, 5));
    assert!(matches!(refusal.error, SessionError::RateLimited { .. }));
    assert_eq!(refusal.event, None);
}

#[test]
fn the_live_session_limit_refuses_at_the_maximum_and_before_the_worker_check() {
    let mut world = World::new(&["ssh"]);
    world.max_live = 3;
    world.live_sessions = Some(2);
    assert!(world.plan().is_ok());

    world.live_sessions = Some(3);
    world.worker = None;
    let refusal = refused(world.plan());
    assert!(matches!(
        refusal.error,
        SessionError::TooManyLive {
            max_live: 3,
            live: 3
        }
    ));
    let reached = Event::SessionLimitReached {
        reason: "3 live sessions, the most one user may hold is 3".into(),
        details: event::LimitReached {
            limit: "sessions.per_user.max_live".into(),
            value: 3,
            live: Some(3),
        },
    };
    let expected = AuditEvent::new(world.principal.actor(), reached).target("t_1");
    assert_eq!(refusal.event.as_deref(), Some(&expected));

    // 0 is no limit.
    world.max_live = 0;
    world.worker = World::new(&[]).worker;
    assert!(world.plan().is_ok());
}

#[test]
fn without_a_live_worker_the_request_fails_unaudited() {
    let mut world = World::new(&["ssh"]);
    world.worker = None;
    let refusal = refused(world.plan());
    assert!(matches!(refusal.error, SessionError::NoWorker));
    assert_eq!(refusal.event, None);
}

#[test]
fn expiry_and_connection_limit_take_the_narrower_of_target_and_policy() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    world.target.max_session_secs = 100;
    world.target.connection_limit = 2;
    let plan = world.plan().unwrap();
    assert_eq!((plan.claims.exp, plan.claims.lim), (NOW + 100, 2));
    // The certificate lives no longer than the session.
    assert_eq!(plan.certificate.map(|c| c.valid_before), Some(NOW + 100));

    world.target.max_session_secs = 0;
    assert_eq!(
        world.plan().unwrap().claims.exp,
        NOW + 1,
        "at least a second"
    );

    // A role without constraints leaves the target's.
    let mut world = World::new(&["tcp"]);
    world.target.connection_limit = 0;
    let plan = world.plan().unwrap();
    assert_eq!((plan.claims.exp, plan.claims.lim), (NOW + 3600, 0));
    world.target.connection_limit = 7;
    assert_eq!(world.plan().unwrap().claims.lim, 7);
}

#[test]
fn with_vault_the_plan_mints_instead_of_signing_a_certificate() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    world.vault = Some(("ssh", Some("portcullis")));
    let plan = world.plan().unwrap();
    assert_eq!(plan.certificate, None);
    assert_eq!(
        plan.vault,
        Some(VaultMint {
            credential_id: "c_1".into(),
            session_ttl: Duration::from_secs(600),
            ssh: Some(VaultSsh {
                mount: "ssh".into(),
                role: "portcullis".into(),
                public_key: SSH_KEY.into(),
                ttl_secs: 300,
            }),
            secrets: vec![],
        })
    );
    assert_eq!(plan.record.state, SessionState::Minting);
    let Event::SessionAuthorized { details, .. } = &plan.event.event else {
        panic!("not session_authorized: {:?}", plan.event);
    };
    assert_eq!(details.vault_credential_id.as_deref(), Some("c_1"));
    assert_eq!(details.ssh_certificate, None);

    // The target's own mount and role win.
    world.target.vault_ssh_mount = Some("ssh-prod".into());
    world.target.vault_ssh_role = Some("prod".into());
    let ssh = world.plan().unwrap().vault.and_then(|v| v.ssh).unwrap();
    assert_eq!(
        (ssh.mount.as_str(), ssh.role.as_str()),
        ("ssh-prod", "prod")
    );

    // Nothing to mint: no Vault row, a pending session.
    world.ssh_key = None;
    let plan = world.plan().unwrap();
    assert_eq!(plan.vault, None);
    assert_eq!(plan.record.state, SessionState::Pending);
}

#[test]
fn vault_settings_that_cannot_serve_the_target_refuse_before_a_plan() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    world.vault = Some(("ssh", None));
    let refusal = refused(world.plan());
    assert_eq!(
        refusal.error.to_string(),
        "no Vault SSH role for target db: set vault.ssh_role in the controller config or \
         `portcullis targets update db --vault-ssh-role ROLE`"
    );
    assert_eq!(refusal.event, None);

    let mut world = World::new(&["ssh"]);
    world.target.vault_secrets = vec!["database/creds/ro".into()];
    let refusal = refused(world.plan());
    assert!(matches!(
        refusal.error,
        SessionError::VaultNotConfigured { .. }
    ));
    assert_eq!(refusal.event, None);
}

#[test]
fn a_malformed_ssh_key_is_refused_with_or_without_vault() {
    for vault in [None, Some(("ssh", Some("portcullis")))] {
        let mut world = World::new(&["ssh"]);
        world.ssh_key = Some("ssh-ed25519 not-base64");
        world.vault = vault;
        let refusal = refused(world.plan());
        assert!(
            matches!(refusal.error, SessionError::BadSshKey(_)),
            "{:?}",
            refusal.error
        );
        assert_eq!(refusal.event, None);
    }
}

fn signer(key: &crate::keys::ActiveKey) -> portcullis_crypto::ed25519::SigningKey {
    use crate::secret::ExposeSecret as _;
    portcullis_crypto::ed25519::SigningKey::from_pkcs8(key.pkcs8.expose_secret()).unwrap()
}

fn key(id: &str) -> crate::keys::ActiveKey {
    use portcullis_crypto::ed25519::SigningKey;
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    let pair = SigningKey::from_pkcs8(&pkcs8).unwrap();
    crate::keys::ActiveKey {
        id: id.into(),
        pkcs8: std::sync::Arc::new(crate::secret::SecretBytes::from(pkcs8.to_vec())),
        public_key: pair.public_key().to_vec(),
        certificate: None,
    }
}

/// Signing takes the plan and signs what its event records: the grant verifies with the
/// grant key for the chosen worker, the certificate carries the planned serial, principals
/// and validity.
#[test]
fn a_plan_signs_to_the_grant_and_certificate_its_event_records() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    let plan = world.plan().unwrap();
    let (grant_key, ca) = (key("key_grant"), key("key_ssh_ca"));
    let keys = crate::sessions::issue::Keys {
        grant: &grant_key,
        grant_signer: &signer(&grant_key),
        ssh_ca: Some(&ca),
    };
    let signed = crate::sessions::issue::sign(&plan, keys, &[]).unwrap();

    let verifying = [portcullis_proto::grant::GrantKey {
        kid: "key_grant".into(),
        public_key: portcullis_proto::keys::b64(&grant_key.public_key),
    }];
    let claims = portcullis_proto::grant::verify(&signed.grant, &verifying, "w_1", NOW + 1);
    assert_eq!(claims.unwrap(), plan.claims);

    let text = signed.ssh_certificate.expect("a certificate");
    let cert = ssh_key::Certificate::from_openssh(&text).unwrap();
    let Event::SessionAuthorized { details, .. } = &plan.event.event else {
        panic!("not session_authorized: {:?}", plan.event);
    };
    let recorded = details
        .ssh_certificate
        .as_ref()
        .expect("the event names it");
    assert_eq!(cert.serial().to_string(), recorded.serial);
    assert_eq!(cert.key_id(), recorded.key_id);
    assert_eq!(cert.valid_principals(), recorded.principals.as_slice());
    assert_eq!(cert.valid_before(), recorded.valid_before);

    // A certificate to sign without the CA's key is an error, not a session without one.
    let keys = crate::sessions::issue::Keys {
        grant: &grant_key,
        grant_signer: &signer(&grant_key),
        ssh_ca: None,
    };
    assert!(matches!(
        crate::sessions::issue::sign(&plan, keys, &[]),
        Err(SessionError::Signing(_))
    ));
}

/// The decision of an allowed request, with the policy's SSH mode set to the gateway and
/// `rights` (the policy crate fills `constraints.ssh` from the policy file).
fn gateway_decision(world: &World, rights: portcullis_policy::SshRights) -> Decision {
    let mut decision = world.decide().expect("the policy allows this request");
    decision.constraints.ssh = portcullis_policy::SshAccess {
        mode: SshMode::Gateway,
        rights,
    };
    decision
}

#[test]
fn in_gateway_mode_the_grant_carries_the_key_logins_and_rights_and_nothing_is_certified() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    let rights = portcullis_policy::SshRights {
        forward_local: true,
        ..portcullis_policy::SshRights::default()
    };
    let decision = gateway_decision(&world, rights);
    let facts = world.facts(&decision);
    assert_eq!(facts.keys.ssh_ca, None, "the user CA is not even loaded");
    let plan = plan(&facts).unwrap();
    assert_eq!(plan.ssh_mode, SshMode::Gateway);
    assert_eq!(plan.certificate, None);
    assert_eq!(plan.vault, None);
    assert_eq!(plan.logins, ["alice"]);
    assert_eq!(
        plan.claims.gw,
        Some(GatewayClaims {
            key: SSH_KEY.into(),
            logins: vec!["alice".into()],
            rights,
            rec: None,
        })
    );
    assert_eq!(plan.record.ssh_mode, SshMode::Gateway);
    assert_eq!(plan.record.state, SessionState::Pending);
    let Event::SessionAuthorized { details, .. } = &plan.event.event else {
        panic!("not session_authorized: {:?}", plan.event);
    };
    assert_eq!(details.ssh_mode.as_deref(), Some("gateway"));
    assert_eq!(details.ssh_certificate, None);

    // The key is bound without its comment.
    world.ssh_key = Some(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMy9kvxOzR9cK82Y/ZGA67h2GTxNCKoOvISANSHgTAVI alice@laptop",
    );
    let plan = plan_with(&world, &decision);
    assert_eq!(plan.claims.gw.map(|gw| gw.key).as_deref(), Some(SSH_KEY));

    // Signing gives the grant alone: no certificate, and no user CA needed.
    let grant_key = key("key_grant");
    let keys = crate::sessions::issue::Keys {
        grant: &grant_key,
        grant_signer: &signer(&grant_key),
        ssh_ca: None,
    };
    let plan = plan_with(&world, &decision);
    let signed = crate::sessions::issue::sign(&plan, keys, &[]).unwrap();
    assert_eq!(signed.ssh_certificate, None);
    let verifying = [portcullis_proto::grant::GrantKey {
        kid: "key_grant".into(),
        public_key: portcullis_proto::keys::b64(&grant_key.public_key),
    }];
    let claims = portcullis_proto::grant::verify(&signed.grant, &verifying, "w_1", NOW + 1);
    assert_eq!(claims.unwrap().gw, plan.claims.gw);

    // Without an SSH key the policy's gateway mode does not apply: a plain session.
    world.ssh_key = None;
    let plan = plan_with(&world, &decision);
    assert_eq!(
        (plan.ssh_mode, plan.claims.gw),
        (SshMode::Certificate, None)
    );
    let Event::SessionAuthorized { details, .. } = &plan.event.event else {
        panic!("not session_authorized: {:?}", plan.event);
    };
    assert_eq!(details.ssh_mode, None);
}

fn plan_with(world: &World, decision: &Decision) -> Plan {
    plan(&world.facts(decision)).unwrap()
}

#[test]
fn in_gateway_mode_with_vault_nothing_is_signed_for_the_user_but_secrets_are_read() {
    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some(SSH_KEY);
    world.vault = Some(("ssh", Some("portcullis")));
    let decision = gateway_decision(&world, portcullis_policy::SshRights::default());
    let planned = plan_with(&world, &decision);
    assert_eq!((planned.certificate, planned.vault), (None, None));
    assert_eq!(planned.record.state, SessionState::Pending);
    assert!(planned.claims.gw.is_some());

    world.target.vault_secrets = vec!["database/creds/ro".into()];
    let planned = plan_with(&world, &decision);
    let vault = planned.vault.expect("the target's secrets are read");
    assert_eq!(vault.ssh, None, "no certificate for the user's key");
    assert_eq!(vault.secrets, ["database/creds/ro"]);
    assert_eq!(planned.record.state, SessionState::Minting);

    // The gateway's own login will need the Vault role: refused now if there is none.
    world.vault = Some(("ssh", None));
    let refusal = refused(plan(&world.facts(&decision)));
    assert!(matches!(refusal.error, SessionError::NoVaultSshRole { .. }));
}

#[test]
fn a_gateway_session_without_a_login_or_with_a_malformed_key_is_refused() {
    let mut world = World::new(&["tcp"]);
    world.ssh_key = Some(SSH_KEY);
    let decision = gateway_decision(&world, portcullis_policy::SshRights::default());
    let refusal = refused(plan(&world.facts(&decision)));
    assert_eq!(
        refusal.error.to_string(),
        "session denied: the policy grants no SSH login (principal) on this target"
    );
    assert!(matches!(
        refusal.event.as_deref().map(|e| &e.event),
        Some(Event::SessionDenied { .. })
    ));

    let mut world = World::new(&["ssh"]);
    world.ssh_key = Some("ssh-ed25519 not-base64");
    let decision = gateway_decision(&world, portcullis_policy::SshRights::default());
    let refusal = refused(plan(&world.facts(&decision)));
    assert!(
        matches!(refusal.error, SessionError::BadSshKey(_)),
        "{:?}",
        refusal.error
    );
    assert_eq!(refusal.event, None);
}
