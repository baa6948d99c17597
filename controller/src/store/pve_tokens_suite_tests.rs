//! The store suite for sessions' Proxmox API tokens, on SQLite and, when the suite's cluster
//! is there, PostgreSQL (as `suite_tests.rs`): intent → live → revoking (secret wiped) → gone,
//! the retry schedule, abandoned intents, and targets' `proxmox_cluster`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::{stores, w};
use crate::store::pve_tokens::{self as rows, TokenRecord, TokenState};
use crate::store::targets;

fn intent(session_id: &str, created_at: i64) -> TokenRecord {
    TokenRecord {
        session_id: session_id.into(),
        cluster: "lab".into(),
        userid: "pc-alice@pve".into(),
        token_name: portcullis_proto::pve::token_name_for(session_id),
        state: TokenState::Intent,
        secret: None,
        roles: vec!["PVEVMAdmin".into()],
        paths: vec!["/vms/100".into(), "/pool/tf".into()],
        expires_at: 1_900_000_000,
        attempts: 0,
        next_attempt_at: None,
        last_error: None,
        created_at,
        updated_at: created_at,
    }
}

#[tokio::test]
async fn a_token_goes_from_intent_to_gone_and_its_secret_is_wiped_at_the_end() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        rows::insert_intent(w(&mut conn), &intent("s_1", 100))
            .await
            .unwrap();
        rows::insert_intent(w(&mut conn), &intent("s_2", 100))
            .await
            .unwrap();
        let read = rows::get(&mut conn, "s_1").await.unwrap().unwrap();
        assert_eq!(read, intent("s_1", 100), "{dialect:?}");
        assert_eq!(read.token_id(), "pc-alice@pve!pc-s1");
        // Abandoned intents are those older than the cut-off.
        assert!(rows::abandoned_intents(&mut conn, 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            rows::abandoned_intents(&mut conn, 101).await.unwrap().len(),
            2
        );
        // Live with its sealed secret, once.
        assert!(rows::set_live(w(&mut conn), "s_1", b"sealed-bytes", 110)
            .await
            .unwrap());
        assert!(!rows::set_live(w(&mut conn), "s_1", b"other", 111)
            .await
            .unwrap());
        let live = rows::get(&mut conn, "s_1").await.unwrap().unwrap();
        assert_eq!(live.state, TokenState::Live);
        assert_eq!(
            live.secret.as_deref(),
            Some(&b"sealed-bytes"[..]),
            "{dialect:?}"
        );
        assert!(!format!("{live:?}").contains("sealed-bytes"));
        assert_eq!(
            rows::abandoned_intents(&mut conn, 200).await.unwrap().len(),
            1
        );
        // The end queues the deletion and wipes the secret, once.
        let queued = rows::request_revocation(&mut conn, "s_1", 120, 120)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(queued.state, TokenState::Revoking);
        assert!(queued.secret.is_none(), "{dialect:?}");
        assert!(rows::request_revocation(&mut conn, "s_1", 121, 121)
            .await
            .unwrap()
            .is_none());
        let stored = rows::get(&mut conn, "s_1").await.unwrap().unwrap();
        assert!(stored.secret.is_none(), "{dialect:?}");
        // A set_live after the end changes nothing.
        assert!(!rows::set_live(w(&mut conn), "s_1", b"late", 122)
            .await
            .unwrap());
        // A failed attempt pushes the next one out.
        assert_eq!(
            rows::due_revocations(&mut conn, 120).await.unwrap().len(),
            1
        );
        rows::set_attempt_failed(&mut conn, "s_1", "unreachable", 130, 120)
            .await
            .unwrap();
        assert!(rows::due_revocations(&mut conn, 129)
            .await
            .unwrap()
            .is_empty());
        let due = rows::due_revocations(&mut conn, 130).await.unwrap();
        assert_eq!(due[0].attempts, 1, "{dialect:?}");
        assert_eq!(due[0].last_error.as_deref(), Some("unreachable"));
        assert!(rows::set_gone(w(&mut conn), "s_1", 131).await.unwrap());
        assert!(!rows::set_gone(w(&mut conn), "s_1", 132).await.unwrap());
        assert!(rows::due_revocations(&mut conn, 1000)
            .await
            .unwrap()
            .is_empty());
        // A token made after its session ended is queued again.
        rows::requeue(&mut conn, "s_1", 140).await.unwrap();
        assert_eq!(
            rows::due_revocations(&mut conn, 140).await.unwrap().len(),
            1
        );
        // An intent whose session ended is queued as it is.
        let queued = rows::request_revocation(&mut conn, "s_2", 150, 155)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(queued.token_name, "pc-s2");
    }
}

#[tokio::test]
async fn a_targets_proxmox_cluster_round_trips() {
    for (store, _dir) in stores().await {
        let mut conn = store.conn().await.unwrap();
        let mut t = super::suite_tests::target("t_pve", "pve-1");
        t.proxmox_cluster = Some("lab".into());
        targets::insert(w(&mut conn), &t).await.unwrap();
        assert_eq!(targets::find(&mut conn, "pve-1").await.unwrap().unwrap(), t);
        t.proxmox_cluster = None;
        assert!(targets::update(w(&mut conn), &t).await.unwrap());
        assert_eq!(
            targets::find(&mut conn, "t_pve")
                .await
                .unwrap()
                .unwrap()
                .proxmox_cluster,
            None
        );
    }
}
