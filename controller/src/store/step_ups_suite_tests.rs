//! The store suite for step-up challenges (as `suite_tests.rs`): answered once, spent once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::{backends, user, w};
use crate::store;
use crate::store::step_ups::{self, Proven, StepUpRecord};

#[tokio::test]
async fn a_step_up_challenge_is_answered_once_and_spent_once() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let alice = store::users::upsert(w(&mut conn), &user("alice", &["admins"]))
            .await
            .unwrap();
        let challenge = StepUpRecord {
            id: "su_1".into(),
            user_id: alice.id.clone(),
            target_id: "t_1".into(),
            target_name: "web-01".into(),
            client_key_hash: vec![3; 32],
            role: "admin".into(),
            amr: vec!["mfa".into(), "otp".into()],
            acr: vec!["gold".into()],
            nonce: "n0nce".into(),
            created_at: 100,
            expires_at: 400,
            login_id: None,
            failed_attempts: 0,
            proof_hash: None,
            proven: None,
            used_at: None,
            session_id: None,
        };
        step_ups::insert(w(&mut conn), &challenge).await.unwrap();
        let found = step_ups::get(&mut conn, "su_1").await.unwrap().unwrap();
        assert_eq!(found, challenge, "{}", b.name);
        assert!(step_ups::attach_login(&mut conn, "su_1", "lg_1", 150)
            .await
            .unwrap());
        assert!(
            !step_ups::attach_login(&mut conn, "su_1", "lg_other", 151)
                .await
                .unwrap(),
            "{}: a second login took the challenge",
            b.name
        );
        let by_login = step_ups::by_login(&mut conn, "lg_1").await.unwrap();
        assert_eq!(by_login.map(|c| c.id).as_deref(), Some("su_1"));
        assert_eq!(step_ups::count_failure(&mut conn, "su_1").await.unwrap(), 1);
        // Not spendable before it is proven.
        assert!(!step_ups::spend(w(&mut conn), "su_1", "s_1", 160)
            .await
            .unwrap());
        let proven = Proven {
            at: 170,
            method: "oidc".into(),
            amr: vec!["pwd".into(), "otp".into()],
            acr: Some("gold".into()),
            auth_time: 165,
        };
        assert!(step_ups::prove(w(&mut conn), "su_1", &[8; 32], &proven)
            .await
            .unwrap());
        assert!(
            !step_ups::prove(w(&mut conn), "su_1", &[9; 32], &proven)
                .await
                .unwrap(),
            "{}: answered twice",
            b.name
        );
        let found = step_ups::get(&mut conn, "su_1").await.unwrap().unwrap();
        assert_eq!(found.proven, Some(proven));
        assert_eq!(found.proof_hash, Some(vec![8; 32]));
        assert!(step_ups::spend(w(&mut conn), "su_1", "s_1", 180)
            .await
            .unwrap());
        assert!(
            !step_ups::spend(w(&mut conn), "su_1", "s_2", 181)
                .await
                .unwrap(),
            "{}: spent twice",
            b.name
        );
        let found = step_ups::get(&mut conn, "su_1").await.unwrap().unwrap();
        assert_eq!(
            (found.used_at, found.session_id.as_deref()),
            (Some(180), Some("s_1"))
        );
        // Expired: neither answered nor attached.
        let mut late = challenge.clone();
        late.id = "su_2".into();
        step_ups::insert(w(&mut conn), &late).await.unwrap();
        assert!(!step_ups::attach_login(&mut conn, "su_2", "lg_2", 400)
            .await
            .unwrap());
        assert!(!step_ups::prove(
            w(&mut conn),
            "su_2",
            &[8; 32],
            &Proven {
                at: 401,
                ..found.proven.clone().unwrap()
            }
        )
        .await
        .unwrap());
        assert_eq!(step_ups::prune(&mut conn, 400 + 86_401).await.unwrap(), 2);
    }
}
