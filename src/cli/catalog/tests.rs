#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_proto::api::Target;
use portcullis_proto::catalog::{
    CatalogChange, CatalogStatus, ClusterStatus, ClusterSync, FieldChange, SyncReport, TargetSource,
};

use super::render;

fn change(kind: &str, name: &str) -> CatalogChange {
    CatalogChange {
        kind: kind.into(),
        key: "qemu/100".into(),
        name: name.into(),
        fields: Vec::new(),
        reason: None,
        address: None,
        zone: None,
    }
}

fn synced(cluster: &str, changes: Vec<CatalogChange>) -> ClusterSync {
    ClusterSync {
        cluster: cluster.into(),
        outcome: "ok".into(),
        error: None,
        url: Some("https://10.20.0.11:8006".into()),
        guests: 14,
        nodes: 3,
        changes,
        unchanged: 10,
        sessions_ended: 0,
        notes: Vec::new(),
    }
}

#[test]
fn each_kind_of_change_is_one_line_a_reviewer_reads() {
    let added = CatalogChange {
        address: Some("10.40.0.5:22".into()),
        zone: Some("WORKLOADS".into()),
        ..change("added", "web-01")
    };
    assert_eq!(
        render::change_line(&added),
        "+ web-01  qemu/100  10.40.0.5:22  WORKLOADS"
    );
    let changed = CatalogChange {
        fields: vec![
            FieldChange {
                field: "address".into(),
                before: Some("10.40.0.7:22".into()),
                after: Some("10.40.0.9:22".into()),
            },
            FieldChange {
                field: "zone".into(),
                before: Some("WORKLOADS".into()),
                after: None,
            },
        ],
        ..change("changed", "db-01")
    };
    assert_eq!(
        render::change_line(&changed),
        "~ db-01  address 10.40.0.7:22 -> 10.40.0.9:22, zone WORKLOADS -> -"
    );
    assert_eq!(
        render::change_line(&CatalogChange {
            reason: Some("gone".into()),
            ..change("removed", "old-vm")
        }),
        "- old-vm  gone"
    );
    assert_eq!(
        render::change_line(&CatalogChange {
            reason: Some("tag dmz disagrees with zone WORKLOADS of 10.40.0.8".into()),
            ..change("refused", "bad-vm")
        }),
        "! bad-vm  qemu/100  refused: tag dmz disagrees with zone WORKLOADS of 10.40.0.8"
    );
}

#[test]
fn a_guest_name_cannot_drive_the_terminal() {
    let evil = change("removed", "vm\u{1b}]52;c;cm0gLXJm\u{7}\nx");
    let line = render::change_line(&evil);
    assert!(
        portcullis_proto::text::first_unsafe(&line).is_none(),
        "{line:?}"
    );
}

#[test]
fn the_report_counts_the_changes_and_says_a_dry_run_changed_nothing() {
    let report = SyncReport {
        dry_run: true,
        clusters: vec![synced(
            "homelab",
            vec![
                change("added", "a"),
                change("added", "b"),
                change("refused", "c"),
            ],
        )],
    };
    let text = render::sync_report(&report);
    assert!(
        text.starts_with("Cluster homelab (https://10.20.0.11:8006): 14 guests, 3 nodes\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  2 would be added, 0 would be changed, 0 would be removed, 1 refused, 10 unchanged\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("Dry run: nothing was changed. Run without --dry-run to apply.\n"));
    assert!(render::all_synced(&report));

    let mut applied = report.clone();
    applied.dry_run = false;
    applied.clusters[0].sessions_ended = 2;
    applied.clusters[0].notes = vec!["qemu/105: the guest agent is not running".into()];
    let text = render::sync_report(&applied);
    assert!(!text.contains("Dry run"), "{text}");
    assert!(text.contains("2 added,"), "{text}");
    assert!(text.contains("; 2 live sessions ended\n"), "{text}");
    assert!(
        text.contains("  note: qemu/105: the guest agent is not running\n"),
        "{text}"
    );
}

#[test]
fn a_failed_cluster_says_why_and_that_its_last_good_catalog_stays() {
    let failed = ClusterSync {
        outcome: "failed".into(),
        error: Some("no API URL answered: https://10.20.0.11:8006: connection refused".into()),
        ..synced("lab", Vec::new())
    };
    let busy = ClusterSync {
        outcome: "busy".into(),
        ..synced("other", Vec::new())
    };
    let report = SyncReport {
        dry_run: false,
        clusters: vec![synced("homelab", Vec::new()), failed],
    };
    let text = render::sync_report(&report);
    assert!(
        text.contains("Cluster lab: the sync failed: no API URL answered: https://10.20.0.11:8006: connection refused\n  The last good catalog stays in use"),
        "{text}"
    );
    assert!(!render::all_synced(&report));
    let report = SyncReport {
        dry_run: false,
        clusters: vec![busy],
    };
    assert!(render::sync_report(&report).contains("another controller is syncing it now"));
    assert!(!render::all_synced(&report));
}

fn target(name: &str, available: bool, status: &str) -> Target {
    Target {
        id: format!("t_{name}"),
        name: name.into(),
        address: "10.40.0.5:22".into(),
        zone: Some("WORKLOADS".into()),
        service: Some("ssh".into()),
        vmid: Some(100),
        tags: vec!["web".into()],
        pool: None,
        max_session_secs: 3600,
        connection_limit: 0,
        ssh_host_keys: Vec::new(),
        ssh_host_cas: Vec::new(),
        vault_ssh_mount: None,
        vault_ssh_role: None,
        vault_secrets: Vec::new(),
        proxmox_cluster: None,
        created_at: 0,
        updated_at: 0,
        warnings: Vec::new(),
        source: Some(TargetSource {
            kind: "proxmox".into(),
            cluster: "homelab".into(),
            key: "qemu/100".into(),
            node: Some("pve1".into()),
            guest_type: "qemu".into(),
            status: status.into(),
            address_origin: Some("cloud-init".into()),
            overrides: vec!["service".into()],
            seen_at: 0,
        }),
        available,
    }
}

fn status(stale: bool) -> ClusterStatus {
    ClusterStatus {
        cluster: "homelab".into(),
        urls: vec![
            "https://10.20.0.11:8006".into(),
            "https://10.20.0.12:8006".into(),
        ],
        interval_secs: 300,
        last_attempt_at: Some(60),
        last_success_at: Some(0),
        last_error: stale.then(|| "401 authentication failure".into()),
        stale,
        guests: 2,
        nodes: 1,
        refused: [(
            "qemu/104".to_owned(),
            "tag dmz disagrees with the address's zone WORKLOADS".to_owned(),
        )]
        .into(),
        targets: vec![
            target("web-01", true, "running"),
            target("tpl", false, "template"),
        ],
    }
}

#[test]
fn the_list_shows_the_sync_the_targets_and_the_refusals() {
    let text = render::catalog_status(&CatalogStatus {
        clusters: vec![status(false)],
    });
    for expected in [
        "Cluster homelab\n",
        "URLs:",
        "https://10.20.0.11:8006, https://10.20.0.12:8006",
        "Sync interval:  5m",
        "Last sync:      1970-01-01T00:01:00Z",
        "Last success:   1970-01-01T00:00:00Z",
        "NAME    KEY       NODE  ADDRESS       ZONE       SERVICE  AVAILABLE      ORIGIN      OVERRIDES\n",
        "web-01  qemu/100  pve1  10.40.0.5:22  WORKLOADS  ssh      yes            cloud-init  service\n",
        "tpl     qemu/100  pve1  10.40.0.5:22  WORKLOADS  ssh      no (template)  cloud-init  service\n",
        "qemu/104  tag dmz disagrees with the address's zone WORKLOADS\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn a_stale_cluster_is_flagged_with_its_error() {
    let text = render::catalog_status(&CatalogStatus {
        clusters: vec![status(true)],
    });
    assert!(
        text.contains("warning: the last sync failed: 401 authentication failure\n"),
        "{text}"
    );
    assert!(text.contains("last good sync's (stale)"), "{text}");
    assert!(render::catalog_status(&CatalogStatus { clusters: vec![] })
        .starts_with("No Proxmox cluster is configured"));
}
