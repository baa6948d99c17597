//! The store suite for the catalog: `catalog_clusters` and the targets' listing by source, on
//! SQLite and, when the suite's cluster is there, PostgreSQL (as `suite_tests.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;

use super::suite_tests::stores;
use crate::store::catalog::{self, ClusterRecord};
use crate::store::targets::{self, SourceFilter, TargetRecord};
use crate::store::Write;

fn target(id: &str, name: &str, source: Option<&str>) -> TargetRecord {
    TargetRecord {
        id: id.into(),
        name: name.into(),
        address: "10.0.0.5:22".into(),
        zone: Some("WORKLOADS".into()),
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
        source: source.map(str::to_owned),
        source_key: source.map(|_| format!("qemu/{id}")),
        available: true,
        discovered: None,
        proxmox_cluster: None,
        created_at: 1,
        updated_at: 1,
    }
}

#[tokio::test]
async fn a_failure_keeps_what_the_last_good_sync_left_and_a_success_clears_the_error() {
    for (store, _dir) in stores().await {
        let mut conn = store.conn().await.unwrap();
        assert_eq!(catalog::get(&mut conn, "lab").await.unwrap(), None);
        // A first sync that fails creates the row with only the attempt and its error.
        catalog::record_failure(
            Write::audited(&mut conn),
            "lab",
            100,
            "no Proxmox API answered",
        )
        .await
        .unwrap();
        let row = catalog::get(&mut conn, "lab").await.unwrap().unwrap();
        assert_eq!(row.last_attempt_at, Some(100));
        assert_eq!(row.last_success_at, None);
        assert_eq!(row.last_error.as_deref(), Some("no Proxmox API answered"));
        assert!(row.refused.is_empty());
        let good = ClusterRecord {
            cluster: "lab".into(),
            last_attempt_at: Some(200),
            last_success_at: Some(200),
            last_error: Some("ignored: a success clears it".into()),
            last_url: Some("https://10.20.0.11:8006/".into()),
            guests: 7,
            nodes: 2,
            refused: BTreeMap::from([("qemu/105".into(), "tag says DMZ".into())]),
        };
        catalog::record_success(Write::audited(&mut conn), &good)
            .await
            .unwrap();
        let row = catalog::get(&mut conn, "lab").await.unwrap().unwrap();
        assert_eq!(row.last_error, None);
        assert_eq!(row.guests, 7);
        assert_eq!(row.refused["qemu/105"], "tag says DMZ");
        // A later failure: the attempt and error change, the last good sync's facts stay.
        catalog::record_failure(Write::audited(&mut conn), "lab", 300, "HTTP 401")
            .await
            .unwrap();
        let row = catalog::get(&mut conn, "lab").await.unwrap().unwrap();
        assert_eq!(
            row,
            ClusterRecord {
                last_attempt_at: Some(300),
                last_error: Some("HTTP 401".into()),
                last_success_at: Some(200),
                ..good.clone()
            }
        );
    }
}

#[tokio::test]
async fn targets_list_by_source() {
    for (store, _dir) in stores().await {
        let mut conn = store.conn().await.unwrap();
        for t in [
            target("t1", "hand", None),
            target("t2", "lab-web", Some("lab")),
            target("t3", "home-db", Some("home")),
        ] {
            targets::insert(Write::audited(&mut conn), &t)
                .await
                .unwrap();
        }
        let cases = [
            (SourceFilter::Manual, vec!["hand"]),
            (SourceFilter::Discovered, vec!["home-db", "lab-web"]),
            (SourceFilter::Cluster("lab"), vec!["lab-web"]),
            (SourceFilter::Cluster("nope"), vec![]),
        ];
        for (filter, want) in cases {
            let got: Vec<String> = targets::list_by_source(&mut conn, filter)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name)
                .collect();
            assert_eq!(got, want, "{filter:?}");
        }
    }
}
