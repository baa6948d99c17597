//! The store suite for Vault credentials (as `suite_tests.rs`): from the revocation intent
//! to revoked, once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::sessions_suite_tests::{insert_alices_session, session};
use super::suite_tests::{backends, w};
use crate::store;
use crate::store::sessions::SessionState;

#[tokio::test]
async fn vault_credentials_go_from_intent_to_revoked_once() {
    use store::vault_credentials as vc;
    for b in backends().await {
        let name = b.name;
        let mut conn = b.store.conn().await.unwrap();
        let mut s = session(0);
        s.state = SessionState::Minting;
        insert_alices_session(&mut conn, &s).await;
        vc::insert_intent(w(&mut conn), "vc_1", "s_1", 100)
            .await
            .unwrap();
        vc::insert_intent(w(&mut conn), "vc_2", "s_other", 100)
            .await
            .unwrap();
        // A minting session is not usable yet.
        assert!(
            store::connections::admit_first(w(&mut conn), "s_1", "w_1", "c_1", "127.0.0.1", 110)
                .await
                .unwrap()
                == store::connections::FirstAdmission::Refused,
            "{name}"
        );
        // Abandoned mints are those older than the cut-off.
        assert!(vc::abandoned_mints(&mut conn, 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(vc::abandoned_mints(&mut conn, 101).await.unwrap().len(), 2);
        assert_eq!(
            vc::set_accessor(&mut conn, "vc_1", "acc-1").await.unwrap(),
            Some("minting".to_string()),
            "{name}"
        );
        assert!(
            vc::set_minted(w(&mut conn), "vc_1", &["database/creds/r/abc".into()])
                .await
                .unwrap()
        );
        assert!(store::sessions::finish_minting(w(&mut conn), "s_1")
            .await
            .unwrap());
        assert!(!store::sessions::finish_minting(w(&mut conn), "s_1")
            .await
            .unwrap());
        // Ending the session queues exactly its own credentials.
        let queued = vc::request_revocation(&mut conn, "s_1", 120).await.unwrap();
        assert_eq!(queued, vec!["vc_1".to_string()], "{name}");
        assert!(vc::request_revocation(&mut conn, "s_1", 121)
            .await
            .unwrap()
            .is_empty());
        let due = vc::due_revocations(&mut conn, 120).await.unwrap();
        assert_eq!(due.len(), 1, "{name}");
        assert_eq!(due[0].token_accessor.as_deref(), Some("acc-1"));
        assert_eq!(due[0].lease_ids, vec!["database/creds/r/abc".to_string()]);
        // A failed attempt pushes the next one out.
        vc::set_attempt_failed(&mut conn, "vc_1", "unreachable", 130)
            .await
            .unwrap();
        assert!(vc::due_revocations(&mut conn, 129)
            .await
            .unwrap()
            .is_empty());
        let due = vc::due_revocations(&mut conn, 130).await.unwrap();
        assert_eq!(due[0].attempts, 1, "{name}");
        assert!(vc::set_revoked(w(&mut conn), "vc_1", "revoked", 131)
            .await
            .unwrap());
        assert!(!vc::set_revoked(w(&mut conn), "vc_1", "revoked", 132)
            .await
            .unwrap());
        let rec = vc::get(&mut conn, "vc_1").await.unwrap().unwrap();
        assert_eq!(
            (rec.state.as_str(), rec.revoked_at, rec.outcome.as_deref()),
            ("revoked", Some(131), Some("revoked")),
            "{name}"
        );
        assert!(vc::due_revocations(&mut conn, 1000)
            .await
            .unwrap()
            .is_empty());
        // A session that ended while minting: the late accessor sees `revoking`.
        vc::request_revocation(&mut conn, "s_other", 140)
            .await
            .unwrap();
        assert_eq!(
            vc::set_accessor(&mut conn, "vc_2", "acc-2").await.unwrap(),
            Some("revoking".to_string())
        );
        assert!(!vc::set_minted(w(&mut conn), "vc_2", &[]).await.unwrap());
    }
}
