use serde_json::{json, Value};

use super::*;

fn summary() -> FailureSummary {
    FailureSummary {
        count: 3,
        first_at: "2026-11-30T06:40:01.113Z".into(),
        last_at: "2026-11-30T06:40:01.512Z".into(),
        window_secs: 10.0,
        reasons: [("rate limited".to_owned(), 3)].into_iter().collect(),
        attempted_name: Some("edge-2".into()),
        sources: None,
    }
}

/// One event of every type, so that a type added without a test case fails below.
fn one_of_each() -> Vec<Event> {
    let revocation = CredentialRevocation {
        credential_id: "vc_1".into(),
        token_accessor: Some("acc".into()),
        lease_ids: vec!["db/creds/x/1".into()],
        attempts: Some(1),
        outcome: "revoked".into(),
    };
    vec![
        Event::LoginSucceeded {
            details: TokenGranted {
                token_id: "at_1".into(),
                issuer: "https://idp".into(),
                expires_at: 1_795_445_811,
            },
        },
        Event::LoginFailed {
            reason: "access_denied".into(),
            details: LoginFailure::Login(LoginRef {
                login_id: "lg_1".into(),
                mode: Some("loopback".into()),
            }),
        },
        Event::LoginStarted {
            details: LoginStarted {
                login_id: "lg_1".into(),
                mode: "device".into(),
                issuer: "https://idp".into(),
            },
        },
        Event::LoggedOut {
            details: TokenRef {
                token_id: "at_1".into(),
            },
        },
        Event::UserTokensRevoked {
            details: UserTokensRevoked {
                user_id: "u_1".into(),
                issuer: "https://idp".into(),
                subject: "sub".into(),
                token_ids: vec!["at_1".into()],
            },
        },
        Event::TokenIssued {
            details: TokenIssued {
                user: "root".into(),
                user_id: "u_1".into(),
                issuer: "portcullis-local".into(),
                groups: vec!["admins".into()],
                amr: vec!["local".into()],
                token_id: "at_2".into(),
                expires_at: 1,
            },
        },
        Event::LocalUserCreated {
            details: LocalUserCreated {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
                groups: vec!["admins".into()],
                password_source: "generated".into(),
            },
        },
        Event::LocalUserReset {
            details: LocalUserReset {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
                password_source: "file".into(),
                totp_cleared: true,
            },
        },
        Event::LocalUserDisabled {
            details: LocalUserDisabled {
                user: LocalUserRef {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
            },
                token_ids: vec!["t_1".into()],
            },
        },
        Event::LocalPasswordChanged {
            details: LocalPasswordChanged {
                user: LocalUserRef {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
            },
                replaced: "bootstrap".into(),
            },
        },
        Event::TotpEnrolled {
            details: TotpEnrolled {
                user: LocalUserRef {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
            },
                recovery_codes: 10,
            },
        },
        Event::RecoveryCodeUsed {
            details: RecoveryCodeUsed {
                user: LocalUserRef {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
            },
                remaining: 9,
            },
        },
        Event::ControllerInitialised {
            details: ControllerInitialised {
                master_key: "created".into(),
                store: "sqlite".into(),
                admin: LocalUserRef {
                user: "alice".into(),
                user_id: "u_2".into(),
                issuer: "local:".into(),
            },
                groups: vec!["admins".into()],
                bootstrap_expires_at: 1_700_086_400,
                bootstrap_delivery: "file".into(),
            },
        },
        Event::BackupCreated {
            details: BackupCreated {
                store: "sqlite".into(),
                schema_version: 15,
                audit_sequence: 41,
                manifest_sha256: "ab".repeat(32),
            },
        },
        Event::ServiceAccountCreated {
            details: ServiceAccountCreated {
                account: "terraform-ci".into(),
                user_id: "u_3".into(),
                issuer: "service:".into(),
                groups: vec!["automation".into()],
                key_fingerprint: "SHA256:abc".into(),
            },
        },
        Event::ServiceKeyRevoked {
            details: ServiceKeyRevoked {
                account: "terraform-ci".into(),
                user_id: "u_3".into(),
                key_fingerprint: "SHA256:abc".into(),
                token_ids: vec!["t_9".into()],
            },
        },
        Event::TokenRejected {
            reason: "empty bearer token".into(),
            details: summary(),
        },
        Event::PermissionDenied {
            reason: "missing permission targets:admin".into(),
            details: PermissionDenied {
                permission: "targets:admin".into(),
                method: "DELETE".into(),
                path: "/v1/targets/t_1".into(),
            },
        },
        Event::SessionAuthorized {
            reason: "allowed".into(),
            policy_hash: "ab".into(),
            details: SessionAuthorized {
                worker_id: "w_1".into(),
                endpoint: "127.0.0.1:22".into(),
                expires_at: 2,
                connection_limit: 0,
                grant_key_id: "k_1".into(),
                ssh_certificate: Some(SshCertificate {
                    serial: u64::MAX.to_string(),
                    key_id: "s_1".into(),
                    ca_key_id: "k_2".into(),
                    principals: vec!["debian".into()],
                    valid_before: 3,
                }),
                vault_credential_id: None,
                source_zone: Some("MGMT".into()),
                target_zone: Some("DMZ".into()),
                cells: vec!["MGMT -> DMZ: allow [ssh]".into()],
                ssh_mode: Some("gateway".into()),
                parent_session: None,
                destination: None,
                access_request: Some("ar_1".into()),
                step_up: Some("su_1".into()),
            },
        },
        Event::SessionDenied {
            reason: "no role".into(),
            policy_hash: Some("ab".into()),
            details: SessionDenied {
                endpoint: None,
                decision: Some(DeniedAt {
                    source_zone: Some("MGMT".into()),
                    target_zone: Some("DMZ".into()),
                    service: Some("ssh".into()),
                    cells: vec![],
                    role_rule: None,
                }),
                parent_session: Some("s_0".into()),
                destination: Some("db.internal:5432".into()),
            },
        },
        Event::SessionLimitReached {
            reason: "too many".into(),
            details: LimitReached {
                limit: "sessions.per_user.max_live".into(),
                value: 100,
                live: Some(100),
            },
        },
        Event::SessionActivated,
        Event::SessionTerminated {
            reason: "canceled".into(),
            details: SessionTerminated {
                ssh_certificates_revoked: vec!["18446744073709551615".into()],
                vault_revocations_queued: vec![],
            },
        },
        Event::ConnectionOpened {
            details: ConnectionOpened {
                connection_id: "c_1".into(),
                client_addr: "127.0.0.1".into(),
                first: Some(true),
                endpoint: None,
            },
        },
        Event::ConnectionRefused {
            reason: "session ended: canceled".into(),
            details: ConnectionRefusal::Connection(ConnectionRef {
                connection_id: "c_1".into(),
                client_addr: "127.0.0.1".into(),
            }),
        },
        Event::ConnectionClosed {
            reason: "closed".into(),
            details: ConnectionClosed {
                connection_id: "c_1".into(),
                bytes_up: 5,
                bytes_down: 6,
            },
        },
        Event::TargetCreated {
            details: TargetNamed {
                name: "web-01".into(),
                address: "10.0.0.1:22".into(),
            },
        },
        Event::TargetUpdated {
            details: TargetNamed {
                name: "web-01".into(),
                address: "10.0.0.2:22".into(),
            },
        },
        Event::TargetDeleted {
            details: TargetName {
                name: "web-01".into(),
            },
        },
        Event::WorkerJoinTokenCreated {
            details: JoinTokenCreated {
                join_token_id: "jt_1".into(),
                expires_at: 4,
            },
        },
        Event::WorkerJoined {
            details: WorkerJoined {
                worker_id: "w_1".into(),
                name: "edge".into(),
                proxy_addr: "127.0.0.1:9202".into(),
                peer: "127.0.0.1".into(),
            },
        },
        Event::WorkerJoinFailed {
            reason: "rate limited".into(),
            details: summary(),
        },
        Event::WorkerDeleted {
            details: WorkerNamed {
                worker_id: "w_1".into(),
                name: "edge".into(),
            },
        },
        Event::WorkerCertificateRenewed {
            details: Expiry { expires_at: 5 },
        },
        Event::KeyCreated {
            details: KeyPurpose {
                key_id: "k_1".into(),
                purpose: "ssh-ca".into(),
            },
        },
        Event::KeyRotated {
            details: KeyPurpose {
                key_id: "k_1".into(),
                purpose: "grant".into(),
            },
        },
        Event::KeyActivated {
            details: KeyPurpose {
                key_id: "k_2".into(),
                purpose: "tls-ca".into(),
            },
        },
        Event::KeyRetired {
            details: KeyRef {
                key_id: "k_1".into(),
            },
        },
        Event::PolicyReloaded {
            policy_hash: "ab".into(),
            details: Some(PolicyChangeSummary {
                previous_policy_hash: "cd".into(),
                allowed: 1,
                denied: 2,
                changed: 0,
                names_added: 0,
                names_removed: 1,
                items_changed: 0,
                cells_changed: 1,
                first_changes: vec!["role ops: A -> B ssh: allow -> deny".into()],
            }),
        },
        Event::PolicyReloadFailed {
            reason: "cannot parse".into(),
        },
        Event::CredentialMinted {
            details: CredentialMinted {
                credential_id: "vc_1".into(),
                token_accessor: "acc".into(),
                ssh_certificate: Some(VaultSshCertificate {
                    serial: "7".into(),
                    key_id: "s_1".into(),
                    mount: Some("ssh".into()),
                    valid_before: Some(6),
                }),
                leases: vec![Lease {
                    path: "db/creds/x".into(),
                    lease_id: "db/creds/x/1".into(),
                    lease_duration_secs: 60,
                }],
            },
        },
        Event::CredentialMintFailed {
            reason: "Vault is sealed".into(),
        },
        Event::CredentialRevoked {
            details: revocation.clone(),
        },
        Event::CredentialRevokeFailed {
            reason: "connection refused".into(),
            details: revocation,
        },
        Event::GatewayCredentialIssued {
            details: GatewayCredential {
                key_fingerprint: "SHA256:abc".into(),
                ssh_certificate: SshCertificate {
                    serial: "9".into(),
                    key_id: "s_1".into(),
                    ca_key_id: "k_2".into(),
                    principals: vec!["debian".into()],
                    valid_before: 3,
                },
            },
        },
        Event::GatewayCredentialRequested {
            details: GatewayCredentialRequested {
                credential_id: "vc_2".into(),
                key_fingerprint: "SHA256:abc".into(),
            },
        },
        Event::SessionSecretsRead {
            details: SessionSecretsRead {
                paths: vec!["database/creds/readonly".into()],
                lease_ids: vec!["database/creds/readonly/abc".into()],
            },
        },
        Event::AuditVerificationReset {
            details: AuditVerificationReset {
                verified_up_to: Some(41),
            },
        },
        Event::SshChannelRefused {
            reason: "ssh.forward_remote is not granted to the session's roles".into(),
            details: SshChannelRefused {
                connection_id: "c_1".into(),
                channel: "tcpip-forward".into(),
                destination: Some("0.0.0.0:8080".into()),
                login: "debian".into(),
            },
        },
        Event::RecordingCheckpoint {
            details: sealed(false),
        },
        Event::RecordingFinished {
            details: sealed(true),
        },
        Event::RecordingFailed {
            details: RecordingFailed {
                recording_id: "c_1".into(),
                connection_id: "c_1".into(),
                cause: "size_cap".into(),
                message: "the recording reached its cap of 1 MiB".into(),
                action: "closed_channels".into(),
            },
        },
        Event::RecordingRead {
            details: RecordingRead {
                recording_id: Some("c_1".into()),
                what: "chunks".into(),
                from: Some(0),
            },
        },
        Event::RecordingDeleted {
            reason: "age".into(),
            details: RecordingDeleted {
                recording_id: "c_1".into(),
                chunks: 3,
                bytes: 1024,
            },
        },
        Event::CatalogTargetAdded {
            details: guest(vec![]),
        },
        Event::CatalogTargetChanged {
            details: CatalogTarget {
                previous_address: Some("10.40.0.7:22".into()),
                previous_zone: Some("WORKLOADS".into()),
                ..guest(vec!["address".into()])
            },
        },
        Event::CatalogTargetRemoved {
            reason: "gone".into(),
            details: guest(vec![]),
        },
        Event::CatalogGuestRefused {
            reason: "the target's tag `dmz` puts it in zone DMZ, but its address 10.40.0.9 is in zone WORKLOADS".into(),
            details: CatalogTarget {
                available: false,
                ..guest(vec![])
            },
        },
        Event::CatalogSynced {
            details: CatalogSynced {
                cluster: "homelab".into(),
                url: "https://10.20.0.11:8006/".into(),
                guests: 14,
                nodes: 3,
                added: 1,
                changed: 1,
                removed: 1,
                refused: 1,
                unchanged: 10,
                sessions_ended: 1,
            },
        },
        Event::CatalogSyncFailed {
            reason: "no Proxmox API answered".into(),
            details: CatalogSyncFailed {
                cluster: "homelab".into(),
                kept_targets: 13,
                last_success_at: Some(1_795_000_000),
            },
        },
        Event::PveTokenMinted {
            details: pve_token(),
        },
        Event::PveTokenMintFailed {
            reason: "Proxmox answered 500: user 'pc-alice@pve' does not exist".into(),
            details: pve_token(),
        },
        Event::PveTokenRevoked {
            details: PveTokenRevocation {
                cluster: "homelab".into(),
                token_id: "pc-alice@pve!pc-s1".into(),
                attempts: Some(1),
                outcome: "revoked".into(),
            },
        },
        Event::PveTokenRevokeFailed {
            reason: "no Proxmox API answered".into(),
            details: PveTokenRevocation {
                cluster: "homelab".into(),
                token_id: "pc-alice@pve!pc-s1".into(),
                attempts: Some(2),
                outcome: "retrying".into(),
            },
        },
        Event::PveRequest {
            details: PveRequest {
                connection_id: "c-1".into(),
                method: "POST".into(),
                path: "/api2/json/nodes/pve1/qemu".into(),
                status: 200,
                bytes_up: 120,
                bytes_down: 80,
                millis: 12,
                refused: None,
            },
        },
        Event::AccessRequested {
            details: access_requested(false),
        },
        Event::AccessApproved {
            details: AccessApproved {
                request_id: "ar_1".into(),
                role: "web-oncall".into(),
                requester: "u_ada".into(),
                approval_reason: Some("ticket 42".into()),
                approvals_needed: 0,
                is_final: true,
                expires_at: Some(1_795_003_600),
            },
        },
        Event::AccessDenied {
            reason: Some("not during the freeze".into()),
            details: AccessRef {
                request_id: "ar_1".into(),
                role: "web-oncall".into(),
                requester: "u_ada".into(),
            },
        },
        Event::AccessRevoked {
            reason: None,
            details: access_ended(),
        },
        Event::AccessExpired {
            details: access_ended(),
        },
        Event::BreakGlass {
            reason: "prod is down".into(),
            details: access_requested(true),
        },
        Event::RunStarted {
            details: RunStarted {
                request_id: "ar_1".into(),
                command: vec!["ansible-playbook".into(), "site.yml".into()],
                targets: vec!["web-1".into()],
                run_key_fingerprint: "ab".repeat(32),
                keepalive_secs: 10,
            },
        },
        Event::RunFinished {
            details: RunFinished {
                request_id: "ar_1".into(),
                outcome: "signaled".into(),
                exit_status: None,
                signal: Some(15),
                sessions: vec!["s_1".into()],
            },
        },
        Event::StepUpRequired {
            reason: "role `admin` grants `ssh` in DMZ, but requires MFA (amr mfa)".into(),
            details: StepUpRequired {
                challenge_id: "su_1".into(),
                target_id: "t_1".into(),
                target_name: "web-01".into(),
                role: "admin".into(),
                amr: vec!["mfa".into()],
                acr: vec!["gold".into()],
                expires_at: 1_795_000_300,
            },
        },
        Event::StepUpProven {
            details: StepUpProven {
                challenge_id: "su_1".into(),
                target_name: "web-01".into(),
                method: "oidc".into(),
                amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
                acr: Some("gold".into()),
                auth_time: 1_795_000_010,
            },
        },
        Event::StepUpFailed {
            reason: "the step-up proof was already used".into(),
            details: StepUpRef {
                challenge_id: Some("su_1".into()),
                target_name: Some("web-01".into()),
            },
        },
    ]
}

fn access_requested(break_glass: bool) -> AccessRequested {
    AccessRequested {
        request_id: "ar_1".into(),
        role: "web-oncall".into(),
        targets: vec!["web-1".into()],
        zone: None,
        duration_secs: 3600,
        request_reason: Some("deploy".into()),
        approvals_needed: u32::from(!break_glass),
        break_glass,
        preapproved: false,
        expires_at: 1_795_003_600,
        cells: vec!["CORP -> WORKLOADS: allow [ssh]".into()],
        run_command: None,
    }
}

fn access_ended() -> AccessEnded {
    AccessEnded {
        request_id: "ar_1".into(),
        role: "web-oncall".into(),
        requester: "u_ada".into(),
        was: "approved".into(),
        sessions_ended: vec!["s_1".into()],
    }
}

fn pve_token() -> PveToken {
    PveToken {
        cluster: "homelab".into(),
        token_id: "pc-alice@pve!pc-s1".into(),
        roles: vec!["PVEVMUser".into()],
        paths: vec!["/vms/4000".into()],
        expires_at: 1_795_000_000,
        privsep: true,
    }
}

/// A discovered guest as the catalog's events carry it.
fn guest(changed: Vec<String>) -> CatalogTarget {
    CatalogTarget {
        cluster: "homelab".into(),
        source_key: "qemu/100".into(),
        name: "web-01".into(),
        vmid: Some(100),
        node: Some("pve1".into()),
        address: Some("10.40.0.9:22".into()),
        address_origin: Some("cloud-init".into()),
        zone: Some("WORKLOADS".into()),
        service: Some("ssh".into()),
        available: true,
        changed,
        previous_address: None,
        previous_zone: None,
    }
}

fn sealed(complete: bool) -> RecordingSealed {
    RecordingSealed {
        recording_id: "c_1".into(),
        connection_id: "c_1".into(),
        chunks: 3,
        head_hash: "ab".repeat(32),
        bytes: 1024,
        complete,
    }
}

#[test]
fn every_kind_has_a_case_and_round_trips_through_the_stored_body() {
    let events = one_of_each();
    let kinds: Vec<Kind> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds, Kind::ALL, "one case per kind, in Kind's order");
    for event in events {
        let audit = AuditEvent::new(Actor::system(), event).session("s_1");
        let body = Value::Object(audit.body("e_1", 7, "2026-11-30T00:00:00.000Z", chain::GENESIS));
        assert_eq!(body["type"], audit.kind().as_str());
        assert!(body["details"].is_object(), "{body}");
        for member in ["target", "session", "decision", "reason", "policy_hash"] {
            assert!(
                body.get(member).is_some(),
                "{member} is always present: {body}"
            );
        }
        let back = AuditEvent::from_body(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(back, audit);
    }
}

#[test]
fn a_workers_summed_refusals_round_trip_as_a_summary_and_the_controllers_as_one_connection() {
    let summed = |message: Option<&str>| Event::ConnectionRefused {
        reason: "session_ended".into(),
        details: ConnectionRefusal::Summary(RefusalSummary {
            count: 300,
            first_at: "2026-11-30T06:40:01.113Z".into(),
            last_at: "2026-11-30T06:40:01.512Z".into(),
            client_addr: "127.0.0.1".into(),
            message: message.map(str::to_owned),
            summary_id: "r_1".into(),
        }),
    };
    for event in [
        summed(Some("the session has ended (canceled)")),
        summed(None),
    ] {
        let audit = AuditEvent::new(Actor::worker("w_1"), event);
        let body = Value::Object(audit.body("e_1", 7, "2026-11-30T00:00:00.000Z", chain::GENESIS));
        assert_eq!(body["details"]["count"], 300, "{body}");
        assert_eq!(AuditEvent::from_body(&body).unwrap(), audit);
    }
    let one = json!({"type": "connection_refused", "actor": {"source": "worker:w_1"},
        "reason": "session ended: canceled",
        "details": {"connection_id": "c_1", "client_addr": "127.0.0.1"}});
    assert!(matches!(
        AuditEvent::from_body(&one).unwrap().event,
        Event::ConnectionRefused {
            details: ConnectionRefusal::Connection(_),
            ..
        }
    ));
}

#[test]
fn the_decision_follows_from_the_type() {
    let body = |event: Event| {
        AuditEvent::new(Actor::system(), event).body("e", 1, "t", chain::GENESIS)["decision"]
            .clone()
    };
    let events = one_of_each();
    let of = |kind: Kind| events.iter().find(|e| e.kind() == kind).cloned().unwrap();
    assert_eq!(body(of(Kind::SessionAuthorized)), json!("allow"));
    assert_eq!(body(of(Kind::SessionDenied)), json!("deny"));
    // A refused login of ours records its reason without a decision, as before; the summed
    // failures of an address are refusals.
    assert_eq!(body(events[1].clone()), Value::Null);
    assert_eq!(
        body(Event::LoginFailed {
            reason: "rate limited".into(),
            details: LoginFailure::Summary(summary()),
        }),
        json!("deny")
    );
    assert_eq!(body(Event::SessionActivated), Value::Null);
}

#[test]
fn kinds_parse_from_their_names_and_nothing_else() {
    for kind in Kind::ALL {
        assert_eq!(kind.as_str().parse::<Kind>().ok(), Some(*kind));
        assert_eq!(serde_json::to_value(kind).ok(), Some(json!(kind.as_str())));
    }
    assert!("session_exploded".parse::<Kind>().is_err());
}

/// docs/audit.md's examples are events of this type: each one parses (the placeholders `...`
/// in ids aside, they are taken as written).
#[test]
fn the_examples_in_the_audit_doc_are_events_of_this_type() {
    let doc = include_str!("../../docs/audit.md");
    let mut seen = 0;
    for line in doc
        .lines()
        .filter(|l| l.starts_with("{\"type\":") && l.ends_with('}'))
    {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Err(e) = AuditEvent::from_body(&value) {
            panic!("docs/audit.md example does not match the event type: {e}\n{line}");
        }
        seen += 1;
    }
    assert!(seen >= 23, "only {seen} examples found in docs/audit.md");
}

#[test]
fn a_body_with_an_unknown_type_or_missing_details_is_refused() {
    let unknown = json!({"type": "session_exploded", "actor": {}, "details": {}});
    assert!(AuditEvent::from_body(&unknown).is_err());
    let missing = json!({"type": "target_created", "actor": {}, "details": {"name": "x"}});
    assert!(AuditEvent::from_body(&missing).is_err());
}
