//! The sync's writes, on a controller with an in-memory SQLite store: each change of a
//! hand-built plan writes its row and exactly one event; a failed sync writes only the
//! cluster's row and one event; a dry run writes nothing; a target that goes or leaves the
//! user's zones ends its live sessions. (Discovery is real I/O: the sync against a fake
//! Proxmox is `tests/catalog.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;

use portcullis_proto::catalog::FieldChange;

use super::*;
use crate::audit::Actor;
use crate::catalog::plan::Seen;
use crate::catalog::{AddressOrigin, FoundAddress, Guest, GuestType, Node};
use crate::config::Config;
use crate::store::audit::{self as audit_rows, Filter};
use crate::store::sessions::{self as session_rows, SessionRecord, SessionState};
use crate::store::targets::TargetRecord;
use crate::store::users::{self as user_rows, UserRecord};
use crate::{Controller, Options};

/// A cluster whose token file does not exist: every real sync of it fails.
const CLUSTER: &str = r#"
[[catalog.proxmox]]
name = "lab"
urls = ["https://127.0.0.1:1"]
token_file = "/nonexistent/portcullis-test/proxmox.token"
ca_file = "/nonexistent/portcullis-test/pve-root-ca.pem"
"#;

struct Harness {
    state: AppState,
    _controller: Controller,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, crate::catalog::TEST_POLICY).unwrap();
        let text = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n\
             [policy]\nfile = \"{}\"\n{CLUSTER}",
            policy.display()
        );
        static DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://catalog-sync-test-{n}?mode=memory&cache=shared");
        let config = Config::parse(&text, "test.toml", |key| match key {
            "PORTCULLIS_DATABASE_URL" => Some(url.clone()),
            "PORTCULLIS_MASTER_KEY" => Some("ab".repeat(32)),
            _ => None,
        })
        .unwrap();
        let options = Options {
            dev_login: false,
            clock: crate::clock::system(),
        };
        let controller = Controller::start_with(config, options).await.unwrap();
        Harness {
            state: controller.state().clone(),
            _controller: controller,
            _dir: dir,
        }
    }

    fn cluster(&self) -> &ProxmoxCluster {
        &self.state.config.catalog[0]
    }

    fn policy(&self) -> Arc<Policy> {
        self.state.policy().unwrap()
    }

    /// The sequence number of the newest audit event.
    async fn last_seq(&self) -> u64 {
        let mut conn = self.state.store.conn().await.unwrap();
        let events = audit_rows::list(&mut conn, &Filter::default(), 1)
            .await
            .unwrap();
        events.first().map_or(0, |e| e.columns.seq)
    }

    /// The events after `seq`, oldest first: (type, body as JSON).
    async fn events_after(&self, seq: u64) -> Vec<(String, serde_json::Value)> {
        let mut conn = self.state.store.conn().await.unwrap();
        let mut events: Vec<_> = audit_rows::list(&mut conn, &Filter::default(), 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.columns.seq > seq)
            .map(|e| {
                let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
                (e.columns.kind, body)
            })
            .collect();
        events.reverse();
        events
    }

    async fn targets(&self) -> Vec<TargetRecord> {
        let mut conn = self.state.store.conn().await.unwrap();
        target_rows::list(&mut conn).await.unwrap()
    }

    async fn cluster_row(&self) -> Option<ClusterRecord> {
        let mut conn = self.state.store.conn().await.unwrap();
        cluster_rows::get(&mut conn, "lab").await.unwrap()
    }

    /// Applies `plan` as a sync that found [`discovery`]'s guests.
    async fn apply(&self, plan: &Plan) -> u32 {
        apply(
            &self.state,
            &discovery(),
            plan,
            &self.policy(),
            Actor::system(),
        )
        .await
        .unwrap()
    }

    /// A live session of the ops user ada from 127.0.0.1 to `target` at its address.
    async fn live_session(&self, target: &TargetRecord) -> String {
        let now = clock::to_i64(self.state.clock.unix_secs());
        let user = UserRecord {
            id: "u_ada".into(),
            issuer: "https://idp".into(),
            subject: "ada".into(),
            username: "ada".into(),
            email: None,
            name: None,
            groups: vec!["ops".into()],
            amr: vec!["mfa".into()],
            acr: None,
            auth_time: Some(now),
            updated_at: now,
        };
        let id = crate::ids::new_id(crate::ids::IdKind::Session);
        let session = SessionRecord {
            id: id.clone(),
            user_id: user.id.clone(),
            target_id: target.id.clone(),
            worker_id: "w_1".into(),
            state: SessionState::Active,
            termination_reason: None,
            client_addr: "127.0.0.1".into(),
            client_key_hash: "00".into(),
            endpoint: target.address.clone(),
            connection_limit: 0,
            connections_count: 0,
            policy_hash: self.policy().hash().to_owned(),
            created_at: now,
            expires_at: now + 3600,
            activated_at: Some(now),
            terminated_at: None,
            ssh_mode: portcullis_policy::SshMode::Certificate,
            parent_session_id: None,
        };
        let mut tx = self.state.begin_audited().await.unwrap();
        user_rows::upsert(tx.write(), &user).await.unwrap();
        session_rows::insert(tx.write(), &session, None, &Default::default())
            .await
            .unwrap();
        let setup = Event::PolicyReloaded {
            policy_hash: "test set-up".into(),
            details: None,
        };
        tx.commit(AuditEvent::new(Actor::system(), setup))
            .await
            .unwrap();
        id
    }

    async fn session_state(&self, id: &str) -> SessionState {
        let mut conn = self.state.store.conn().await.unwrap();
        session_rows::get(&mut conn, id)
            .await
            .unwrap()
            .unwrap()
            .state
    }
}

/// What a sync of `lab` found: two guests and a node (the counts of `catalog_synced`).
fn discovery() -> Discovery {
    let guest = |vmid: u32, name: &str, ip: &str| Guest {
        guest_type: GuestType::Qemu,
        vmid,
        name: name.into(),
        node: "pve1".into(),
        status: "running".into(),
        template: false,
        tags: vec![],
        pool: None,
        addresses: vec![FoundAddress {
            ip: ip.parse().unwrap(),
            origin: AddressOrigin::CloudInit,
            interface: Some("net0".into()),
        }],
    };
    Discovery {
        cluster: "lab".into(),
        url: "https://127.0.0.1:1/".into(),
        nodes: vec![Node {
            name: "pve1".into(),
            address: None,
            online: true,
        }],
        guests: vec![
            guest(100, "web", "192.0.2.5"),
            guest(101, "db", "192.0.2.6"),
        ],
        notes: vec![],
    }
}

/// A discovered target of `lab` as a sync would write it.
fn discovered(vmid: u32, name: &str, address: &str, zone: &str) -> TargetRecord {
    let seen = Seen {
        name: name.into(),
        address: address.into(),
        zone: zone.into(),
        service: Some("ssh".into()),
        vmid: Some(vmid),
        tags: vec![],
        pool: None,
        node: Some("pve1".into()),
        guest_type: "qemu".into(),
        status: "running".into(),
        address_origin: Some("cloud-init".into()),
        available: true,
        seen_at: 1,
    };
    TargetRecord {
        id: format!("tgt_test{vmid}"),
        name: name.into(),
        address: address.into(),
        zone: Some(zone.into()),
        service: Some("ssh".into()),
        vmid: Some(vmid),
        tags: vec![],
        pool: None,
        max_session_secs: 3600,
        connection_limit: 0,
        ssh_host_keys: vec![],
        ssh_host_cas: vec![],
        vault_ssh_mount: None,
        vault_ssh_role: None,
        vault_secrets: vec![],
        source: Some("lab".into()),
        source_key: Some(format!("qemu/{vmid}")),
        available: true,
        discovered: Some(serde_json::to_string(&seen).unwrap()),
        proxmox_cluster: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn adding(targets: &[&TargetRecord]) -> Plan {
    Plan {
        changes: targets.iter().map(|t| Change::Add((*t).clone())).collect(),
        ..Plan::default()
    }
}

fn moved(before: &TargetRecord, address: &str, zone: &str) -> Change {
    let after = TargetRecord {
        address: address.into(),
        zone: Some(zone.into()),
        ..before.clone()
    };
    Change::Update {
        before: before.clone(),
        after,
        fields: vec![
            FieldChange {
                field: "address".into(),
                before: Some(before.address.clone()),
                after: Some(address.into()),
            },
            FieldChange {
                field: "zone".into(),
                before: before.zone.clone(),
                after: Some(zone.into()),
            },
        ],
    }
}

fn kinds(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(kind, _)| kind.as_str()).collect()
}

#[tokio::test]
async fn each_change_writes_its_row_and_exactly_one_event() {
    let h = Harness::start().await;
    let web = discovered(100, "web", "192.0.2.5:22", "LAB");
    let db = discovered(101, "db", "192.0.2.6:22", "LAB");
    let old = discovered(102, "old", "192.0.2.7:22", "LAB");
    h.apply(&adding(&[&db, &old])).await;
    let before = h.last_seq().await;
    let plan = Plan {
        changes: vec![
            Change::Add(web.clone()),
            moved(&db, "192.0.2.16:22", "LAB"),
            Change::Remove {
                target: old.clone(),
                reason: "gone".into(),
            },
            Change::Refuse {
                key: "qemu/105".into(),
                name: "intruder".into(),
                reason: "its tag `dmz` places it in DMZ, its address 192.0.2.9 in LAB".into(),
                vmid: Some(105),
                node: Some("pve1".into()),
                address: Some("192.0.2.9:22".into()),
                address_origin: Some("cloud-init".into()),
            },
        ],
        unchanged: 3,
        refused: BTreeMap::from([("qemu/105".into(), "its tag `dmz`...".into())]),
    };
    let ended = h.apply(&plan).await;
    assert_eq!(ended, 0);
    let events = h.events_after(before).await;
    assert_eq!(
        kinds(&events),
        [
            "catalog_target_added",
            "catalog_target_changed",
            "catalog_target_removed",
            "catalog_guest_refused",
            "catalog_synced"
        ]
    );
    // Each names its target and what the sync saw.
    let (_, added) = &events[0];
    assert_eq!(added["target"], web.id.as_str(), "{added}");
    assert_eq!(added["details"]["source_key"], "qemu/100", "{added}");
    assert_eq!(added["details"]["address_origin"], "cloud-init", "{added}");
    assert_eq!(added["details"]["node"], "pve1", "{added}");
    let (_, changed) = &events[1];
    assert_eq!(
        changed["details"]["changed"],
        serde_json::json!(["address", "zone"])
    );
    assert_eq!(changed["details"]["previous_address"], "192.0.2.6:22");
    assert_eq!(changed["details"]["address"], "192.0.2.16:22");
    let (_, removed) = &events[2];
    assert_eq!(removed["reason"], "gone", "{removed}");
    assert_eq!(removed["target"], old.id.as_str(), "{removed}");
    let (_, refused) = &events[3];
    assert_eq!(refused["details"]["source_key"], "qemu/105", "{refused}");
    assert!(
        refused.get("target").is_none_or(|t| t.is_null()),
        "{refused}"
    );
    let (_, synced) = &events[4];
    let counts = &synced["details"];
    assert_eq!(
        (
            &counts["added"],
            &counts["changed"],
            &counts["removed"],
            &counts["refused"],
            &counts["unchanged"],
            &counts["guests"],
            &counts["nodes"]
        ),
        (
            &1.into(),
            &1.into(),
            &1.into(),
            &1.into(),
            &3.into(),
            &2.into(),
            &1.into()
        ),
        "{synced}"
    );
    // The rows: added, changed, removed.
    let names: Vec<(String, String)> = h
        .targets()
        .await
        .into_iter()
        .map(|t| (t.name, t.address))
        .collect();
    assert_eq!(
        names,
        [
            ("db".to_owned(), "192.0.2.16:22".to_owned()),
            ("web".to_owned(), "192.0.2.5:22".to_owned())
        ]
    );
    let row = h.cluster_row().await.unwrap();
    assert_eq!((row.guests, row.nodes), (2, 1));
    assert_eq!(row.last_error, None);
    assert!(row.last_success_at.is_some());
    assert_eq!(row.refused.keys().collect::<Vec<_>>(), ["qemu/105"]);
}

#[tokio::test]
async fn a_refusal_of_a_guest_whose_target_goes_names_that_target() {
    let h = Harness::start().await;
    let web = discovered(100, "web", "192.0.2.5:22", "LAB");
    h.apply(&adding(&[&web])).await;
    let before = h.last_seq().await;
    let plan = Plan {
        changes: vec![
            Change::Remove {
                target: web.clone(),
                reason: "refused".into(),
            },
            Change::Refuse {
                key: "qemu/100".into(),
                name: "web".into(),
                reason: "its pool places it in OFFICE".into(),
                vmid: Some(100),
                node: None,
                address: None,
                address_origin: None,
            },
        ],
        ..Plan::default()
    };
    h.apply(&plan).await;
    let events = h.events_after(before).await;
    assert_eq!(
        kinds(&events),
        [
            "catalog_target_removed",
            "catalog_guest_refused",
            "catalog_synced"
        ]
    );
    assert_eq!(events[1].1["target"], web.id.as_str(), "{}", events[1].1);
}

#[tokio::test]
async fn a_failed_sync_writes_only_the_cluster_row_and_one_event_and_keeps_the_targets() {
    let h = Harness::start().await;
    let web = discovered(100, "web", "192.0.2.5:22", "LAB");
    h.apply(&adding(&[&web])).await;
    let good = h.cluster_row().await.unwrap();
    let targets = h.targets().await;
    let before = h.last_seq().await;
    // The real sync: the token file does not exist.
    let report = sync_cluster(&h.state, h.cluster(), false, Actor::system())
        .await
        .unwrap();
    assert_eq!(report.outcome, "failed", "{report:?}");
    let error = report.error.clone().unwrap();
    assert!(!error.is_empty());
    assert!(report.changes.is_empty());
    let events = h.events_after(before).await;
    assert_eq!(kinds(&events), ["catalog_sync_failed"]);
    let failed = &events[0].1;
    assert_eq!(failed["reason"], error.as_str(), "{failed}");
    assert_eq!(failed["details"]["kept_targets"], 1, "{failed}");
    assert_eq!(
        failed["details"]["last_success_at"],
        good.last_success_at.unwrap(),
        "{failed}"
    );
    assert_eq!(
        h.targets().await,
        targets,
        "a failed sync changes no target"
    );
    let row = h.cluster_row().await.unwrap();
    assert_eq!(row.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(row.last_success_at, good.last_success_at);
    assert_eq!(row.guests, good.guests);
}

#[tokio::test]
async fn a_dry_run_writes_and_audits_nothing() {
    let h = Harness::start().await;
    let before = h.last_seq().await;
    // A discovery that failed, and one that found guests: neither is written.
    let report = sync_cluster(&h.state, h.cluster(), true, Actor::system())
        .await
        .unwrap();
    assert_eq!(report.outcome, "failed", "{report:?}");
    let report = settle(
        &h.state,
        h.cluster(),
        Ok(discovery()),
        true,
        Actor::system(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, "ok", "{report:?}");
    assert_eq!((report.guests, report.nodes), (2, 1));
    assert_eq!(report.sessions_ended, 0);
    assert!(h.events_after(before).await.is_empty());
    assert!(h.targets().await.is_empty());
    assert_eq!(h.cluster_row().await, None);
}

#[tokio::test]
async fn a_removed_target_ends_its_live_session() {
    let h = Harness::start().await;
    let web = discovered(100, "web", "192.0.2.5:22", "LAB");
    let db = discovered(101, "db", "192.0.2.6:22", "LAB");
    h.apply(&adding(&[&web, &db])).await;
    let to_web = h.live_session(&web).await;
    let to_db = h.live_session(&db).await;
    let before = h.last_seq().await;
    let plan = Plan {
        changes: vec![Change::Remove {
            target: web.clone(),
            reason: "gone".into(),
        }],
        ..Plan::default()
    };
    assert_eq!(h.apply(&plan).await, 1);
    assert_eq!(h.session_state(&to_web).await, SessionState::Terminated);
    assert_eq!(h.session_state(&to_db).await, SessionState::Active);
    let events = h.events_after(before).await;
    assert_eq!(
        kinds(&events),
        [
            "catalog_target_removed",
            "session_terminated",
            "catalog_synced"
        ]
    );
    assert_eq!(events[2].1["details"]["sessions_ended"], 1);
}

#[tokio::test]
async fn a_target_moved_to_another_address_ends_its_sessions_even_within_a_reachable_zone() {
    let h = Harness::start().await;
    let web = discovered(100, "web", "192.0.2.5:22", "LAB");
    let db = discovered(101, "db", "192.0.2.6:22", "LAB");
    h.apply(&adding(&[&web, &db])).await;
    let to_web = h.live_session(&web).await;
    let to_db = h.live_session(&db).await;
    let unrelated = discovered(102, "cache", "192.0.2.7:22", "LAB");
    h.apply(&adding(&[&unrelated])).await;
    let to_unrelated = h.live_session(&unrelated).await;
    // web moves to OFFICE, which ops may not reach; db's address changes within LAB, which
    // ops still reaches: its old address may be another guest's by now, so its session
    // ends too. A target whose address stays keeps its session.
    let plan = Plan {
        changes: vec![
            moved(&web, "198.51.100.5:22", "OFFICE"),
            moved(&db, "192.0.2.26:22", "LAB"),
        ],
        ..Plan::default()
    };
    assert_eq!(h.apply(&plan).await, 2);
    assert_eq!(h.session_state(&to_web).await, SessionState::Terminated);
    assert_eq!(h.session_state(&to_db).await, SessionState::Terminated);
    assert_eq!(h.session_state(&to_unrelated).await, SessionState::Active);
}

#[tokio::test]
async fn a_sync_of_a_cluster_already_syncing_here_is_busy() {
    let h = Harness::start().await;
    let _held = h.state.catalog_syncs.enter("lab").unwrap();
    let before = h.last_seq().await;
    let report = sync_cluster(&h.state, h.cluster(), false, Actor::system())
        .await
        .unwrap();
    assert_eq!(report.outcome, "busy");
    assert!(h.events_after(before).await.is_empty());
    drop(_held);
    assert!(h.state.catalog_syncs.enter("lab").is_some());
}

#[test]
fn a_round_is_skipped_when_the_last_good_sync_is_younger_than_half_the_interval() {
    let five_minutes = Duration::from_secs(300);
    assert!(!is_recent(None, 1000, five_minutes));
    assert!(is_recent(Some(1000 - 149), 1000, five_minutes));
    assert!(!is_recent(Some(1000 - 150), 1000, five_minutes));
    assert!(!is_recent(Some(1000 - 600), 1000, five_minutes));
}

#[tokio::test]
async fn without_a_policy_a_sync_fails_and_changes_nothing() {
    let h = Harness::start().await;
    let web = discovered(100, "web", "192.0.2.5:22", "LAB");
    h.apply(&adding(&[&web])).await;
    let before = h.last_seq().await;
    h.state.policy_tx.send_replace(None);
    let report = settle(
        &h.state,
        h.cluster(),
        Ok(discovery()),
        false,
        Actor::system(),
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, "failed", "{report:?}");
    assert_eq!(
        report.error.as_deref(),
        Some("no policy is loaded: zones cannot be placed")
    );
    let events = h.events_after(before).await;
    assert_eq!(kinds(&events), ["catalog_sync_failed"]);
    assert_eq!(h.targets().await, [web]);
}
