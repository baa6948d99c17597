//! The decision on a forward a gateway session asks for, on a small policy, without I/O.

use std::net::SocketAddr;

use portcullis_policy::{Policy, SshAccess, SshMode, SshRights};

use super::*;

const NOW: u64 = 1_700_000_000;

/// Clients in OFFICE reach SERVERS (ssh, postgres) through the broker; DB has no cell from
/// OFFICE (only from ADMIN). Role `dev` grants both services in SERVERS and postgres in DB,
/// with a 5-minute limit.
const POLICY: &str = r#"
[settings]
broker_zone = "BROKER"

[[zone]]
name = "OFFICE"
trust = "high"
cidrs = ["10.1.0.0/16"]

[[zone]]
name = "BROKER"
trust = "high"
cidrs = ["10.9.0.0/16"]

[[zone]]
name = "SERVERS"
trust = "medium"
cidrs = ["10.2.0.0/16"]

[[zone]]
name = "DB"
trust = "medium"
cidrs = ["10.3.0.0/16"]

[[zone]]
name = "ADMIN"
trust = "high"
cidrs = ["10.4.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "postgres"
ports = [5432]

[[cell]]
from = "OFFICE"
to = "SERVERS"
access = "broker-only"
services = ["ssh", "postgres"]

[[cell]]
from = "BROKER"
to = "SERVERS"
access = "allow"
services = ["ssh", "postgres"]

[[cell]]
from = "BROKER"
to = "DB"
access = "allow"
services = ["postgres"]

[[cell]]
from = "ADMIN"
to = "DB"
access = "broker-only"
services = ["postgres"]

[[role]]
name = "dev"
groups = ["dev"]

[[role.grant]]
zones = ["SERVERS"]
services = ["ssh", "postgres"]
logins = ["{{preferred_username}}"]

[[role.grant]]
zones = ["DB"]
services = ["postgres"]

[role.constraints]
max_session_secs = 300
connection_limit = 2
"#;

fn user() -> UserRecord {
    UserRecord {
        id: "u_1".into(),
        issuer: "https://idp.example".into(),
        subject: "sub-1".into(),
        username: "alice".into(),
        email: None,
        name: None,
        groups: vec!["dev".into()],
        amr: vec![],
        acr: None,
        auth_time: None,
        updated_at: 0,
    }
}

fn parent() -> SessionRecord {
    SessionRecord {
        id: "s_gw".into(),
        user_id: "u_1".into(),
        target_id: "t_web".into(),
        worker_id: "w_1".into(),
        state: SessionState::Active,
        termination_reason: None,
        client_addr: "10.1.0.7".into(),
        client_key_hash: "ck".into(),
        endpoint: "10.2.0.10:22".into(),
        connection_limit: 0,
        connections_count: 1,
        policy_hash: "h".into(),
        created_at: clock::to_i64(NOW - 100),
        expires_at: clock::to_i64(NOW + 3600),
        activated_at: Some(clock::to_i64(NOW - 90)),
        terminated_at: None,
        ssh_mode: SshMode::Gateway,
        parent_session_id: None,
    }
}

/// The decisions on the parent session (with `forward_local` as given) and the forward to
/// `endpoint`.
fn decisions(policy: &Policy, endpoint: &str, forward_local: bool) -> (Decision, Decision) {
    let user = user();
    let source = "10.1.0.7".parse().unwrap();
    let target = crate::store::targets::TargetRecord {
        id: "t_web".into(),
        name: "web".into(),
        address: "10.2.0.10:22".into(),
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
    let at = "10.2.0.10:22".parse().unwrap();
    let request = crate::authz::session_request(source, &user, &target, at);
    let mut parent = portcullis_policy::evaluate(policy, &request, NOW);
    assert!(parent.is_allowed(), "{parent:?}");
    // The policy crate fills `constraints.ssh` from the policy file; here it is set.
    parent.constraints.ssh = SshAccess {
        mode: SshMode::Gateway,
        rights: SshRights {
            forward_local,
            ..SshRights::default()
        },
    };
    let request = crate::authz::forward_request(source, &user, endpoint.parse().unwrap());
    (parent, portcullis_policy::evaluate(policy, &request, NOW))
}

fn facts<'a>(
    parent: &'a SessionRecord,
    user: &'a UserRecord,
    destination: &'a str,
    endpoint: &str,
    decisions: Option<&'a (Decision, Decision)>,
) -> Facts<'a> {
    Facts {
        now: NOW,
        parent,
        user,
        destination,
        endpoint: endpoint.parse::<SocketAddr>().unwrap(),
        parent_decision: decisions.map(|d| &d.0),
        decision: decisions.map(|d| &d.1),
        session_id: "s_fwd".into(),
    }
}

#[test]
fn an_allowed_forward_is_a_new_active_session_of_the_user_under_the_gateway_session() {
    let policy = Policy::parse(POLICY).unwrap();
    let (parent, user) = (parent(), user());
    let both = decisions(&policy, "10.2.0.20:5432", true);
    let plan = decide(&facts(
        &parent,
        &user,
        "pg.internal:5432",
        "10.2.0.20:5432",
        Some(&both),
    ))
    .unwrap();
    let record = &plan.record;
    assert_eq!(record.id, "s_fwd");
    assert_eq!(record.parent_session_id.as_deref(), Some("s_gw"));
    assert_eq!(record.state, SessionState::Active);
    assert_eq!(
        (
            record.user_id.as_str(),
            record.worker_id.as_str(),
            record.client_addr.as_str()
        ),
        ("u_1", "w_1", "10.1.0.7")
    );
    assert_eq!(record.endpoint, "10.2.0.20:5432");
    // The role's five minutes, well before the parent's hour; its connection limit.
    assert_eq!(record.expires_at, clock::to_i64(NOW + 300));
    assert_eq!(record.connection_limit, 2);
    assert_eq!(record.policy_hash, policy.hash());

    let Event::SessionAuthorized { details, .. } = &plan.event.event else {
        panic!("not session_authorized: {:?}", plan.event);
    };
    assert_eq!(details.parent_session.as_deref(), Some("s_gw"));
    assert_eq!(details.destination.as_deref(), Some("pg.internal:5432"));
    assert_eq!(details.endpoint, "10.2.0.20:5432");
    assert_eq!(details.target_zone.as_deref(), Some("SERVERS"));
    assert!(!details.cells.is_empty());
    assert_eq!(plan.event.session.as_deref(), Some("s_fwd"));
    assert_eq!(plan.event.actor.username.as_deref(), Some("alice"));
    assert_eq!(plan.event.actor.source.as_deref(), Some("10.1.0.7"));

    // Never later than the parent.
    let mut short = parent.clone();
    short.expires_at = clock::to_i64(NOW + 60);
    let plan = decide(&facts(
        &short,
        &user,
        "pg:5432",
        "10.2.0.20:5432",
        Some(&both),
    ))
    .unwrap();
    assert_eq!(plan.record.expires_at, clock::to_i64(NOW + 60));
}

#[test]
fn a_forward_the_matrix_denies_is_refused_naming_the_cell_and_audited_on_the_gateway_session() {
    let policy = Policy::parse(POLICY).unwrap();
    let (parent, user) = (parent(), user());
    // OFFICE -> DB has no cell: the user's own source zone refuses it, though the broker's
    // leg would allow it.
    let both = decisions(&policy, "10.3.0.5:5432", true);
    let refusal = decide(&facts(
        &parent,
        &user,
        "db.internal:5432",
        "10.3.0.5:5432",
        Some(&both),
    ))
    .unwrap_err();
    assert!(
        refusal
            .reason
            .starts_with("forward to db.internal:5432 denied: "),
        "{}",
        refusal.reason
    );
    assert!(
        refusal.reason.contains("OFFICE -> DB"),
        "{}",
        refusal.reason
    );
    let Event::SessionDenied {
        details,
        policy_hash,
        ..
    } = &refusal.event.event
    else {
        panic!("not session_denied: {:?}", refusal.event);
    };
    assert_eq!(policy_hash.as_deref(), Some(policy.hash()));
    assert_eq!(details.parent_session.as_deref(), Some("s_gw"));
    assert_eq!(details.destination.as_deref(), Some("db.internal:5432"));
    assert_eq!(details.endpoint.as_deref(), Some("10.3.0.5:5432"));
    let at = details.decision.as_ref().expect("how far the policy got");
    assert_eq!(at.target_zone.as_deref(), Some("DB"));
    assert_eq!(refusal.event.session.as_deref(), Some("s_gw"));
}

#[test]
fn without_forward_local_or_a_policy_every_forward_is_refused() {
    let policy = Policy::parse(POLICY).unwrap();
    let (parent, user) = (parent(), user());
    let both = decisions(&policy, "10.2.0.20:5432", false);
    let refusal = decide(&facts(
        &parent,
        &user,
        "pg:5432",
        "10.2.0.20:5432",
        Some(&both),
    ))
    .unwrap_err();
    assert!(
        refusal
            .reason
            .starts_with("ssh.forward_local is not granted to the session's roles"),
        "{}",
        refusal.reason
    );
    assert!(matches!(refusal.event.event, Event::SessionDenied { .. }));

    let refusal = decide(&facts(&parent, &user, "pg:5432", "10.2.0.20:5432", None)).unwrap_err();
    assert!(
        refusal.reason.contains("no policy is loaded"),
        "{}",
        refusal.reason
    );

    // A parent the policy no longer allows (here: the user left the group) asks in vain.
    let mut former = user.clone();
    former.groups = vec![];
    let (mut parent_decision, forward) = decisions(&policy, "10.2.0.20:5432", true);
    parent_decision.outcome = portcullis_policy::Outcome::Deny;
    let both = (parent_decision, forward);
    let refusal = decide(&facts(
        &parent,
        &former,
        "pg:5432",
        "10.2.0.20:5432",
        Some(&both),
    ))
    .unwrap_err();
    assert!(
        refusal
            .reason
            .starts_with("the gateway session is no longer allowed"),
        "{}",
        refusal.reason
    );
}

#[test]
fn the_workers_own_loopback_and_unroutable_addresses_are_never_vetted() {
    let policy = Policy::parse(POLICY).unwrap();
    let (parent, user) = (parent(), user());
    for endpoint in [
        "127.0.0.1:5432",
        "127.8.9.1:22",
        "[::1]:22",
        "[::ffff:127.0.0.1]:22",
        "0.0.0.0:22",
        "[::]:22",
        "224.0.0.1:22",
    ] {
        let both = decisions(&policy, "10.2.0.20:5432", true);
        let refusal = decide(&facts(
            &parent,
            &user,
            "sneaky.example:22",
            endpoint,
            Some(&both),
        ))
        .unwrap_err();
        assert!(
            refusal.reason.contains("never dials"),
            "{endpoint}: {}",
            refusal.reason
        );
        assert!(matches!(refusal.event.event, Event::SessionDenied { .. }));
    }
}

#[test]
fn only_a_live_gateway_session_of_this_worker_may_ask() {
    let ok = parent();
    assert_eq!(check_parent(Some(&ok), "w_1", NOW), Ok(&ok));
    assert_eq!(check_parent(None, "w_1", NOW), Err(ParentRefused::Unknown));
    assert_eq!(
        check_parent(Some(&ok), "w_2", NOW),
        Err(ParentRefused::OtherWorker)
    );
    let mut ended = parent();
    ended.state = SessionState::Terminated;
    assert_eq!(
        check_parent(Some(&ended), "w_1", NOW),
        Err(ParentRefused::Ended)
    );
    let mut expired = parent();
    expired.expires_at = clock::to_i64(NOW);
    assert_eq!(
        check_parent(Some(&expired), "w_1", NOW),
        Err(ParentRefused::Ended)
    );
    let mut certificate = parent();
    certificate.ssh_mode = SshMode::Certificate;
    assert_eq!(
        check_parent(Some(&certificate), "w_1", NOW),
        Err(ParentRefused::NotGateway)
    );
    let mut forward = parent();
    forward.parent_session_id = Some("s_0".into());
    assert_eq!(
        check_parent(Some(&forward), "w_1", NOW),
        Err(ParentRefused::NotGateway)
    );
}
