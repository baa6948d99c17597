//! The store suite for web console sessions (as `suite_tests.rs`), on SQLite and, when the
//! suite's PostgreSQL is there, PostgreSQL: idle and absolute ends, the token they hang on,
//! and the deletions of logout, `users revoke` and a login's pruning.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::{backends, user, w};
use crate::store;
use crate::store::console_sessions::{self as rows, NewConsoleSession};

#[tokio::test]
async fn console_sessions_end_when_idle_expired_revoked_or_deleted() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let ada = store::users::upsert(w(&mut conn), &user("ada", &["admins"]))
            .await
            .unwrap();
        for (token, hash) in [("at_1", 1u8), ("at_2", 2)] {
            store::tokens::insert(
                w(&mut conn),
                &store::tokens::TokenRecord {
                    id: token.into(),
                    user_id: ada.id.clone(),
                    token_hash: vec![hash + 100; 32],
                    created_at: 100,
                    expires_at: 10_000,
                    login: None,
                },
            )
            .await
            .unwrap();
            rows::insert(
                w(&mut conn),
                &NewConsoleSession {
                    id_hash: vec![hash; 32],
                    token_id: token.into(),
                    user_id: ada.id.clone(),
                    csrf_token: format!("csrf-{hash}"),
                    created_at: 100,
                    idle_timeout: 60,
                    expires_at: 1_000,
                },
            )
            .await
            .unwrap();
        }
        let live = rows::authenticate(&mut conn, &[1; 32], 150)
            .await
            .unwrap()
            .expect("live");
        assert_eq!(
            (
                live.user.username.as_str(),
                live.token_id.as_str(),
                live.csrf_token.as_str()
            ),
            ("ada", "at_1", "csrf-1"),
            "{}",
            b.name
        );
        // Idle: 60 s after the last request.
        assert!(rows::authenticate(&mut conn, &[1; 32], 161)
            .await
            .unwrap()
            .is_none());
        rows::touch(&mut conn, &[1; 32], 150).await.unwrap();
        assert!(rows::authenticate(&mut conn, &[1; 32], 200)
            .await
            .unwrap()
            .is_some());
        // Absolute: at expires_at, whatever the activity.
        rows::touch(&mut conn, &[1; 32], 990).await.unwrap();
        assert!(rows::authenticate(&mut conn, &[1; 32], 1_000)
            .await
            .unwrap()
            .is_none());
        // The token revoked: the session is over.
        rows::touch(&mut conn, &[2; 32], 500).await.unwrap();
        assert!(rows::authenticate(&mut conn, &[2; 32], 510)
            .await
            .unwrap()
            .is_some());
        store::tokens::revoke(w(&mut conn), "at_2", 520)
            .await
            .unwrap();
        assert!(rows::authenticate(&mut conn, &[2; 32], 530)
            .await
            .unwrap()
            .is_none());
        // Deletions.
        assert_eq!(
            rows::delete_over(w(&mut conn), 540).await.unwrap(),
            0,
            "{}",
            b.name
        );
        assert!(rows::delete_of_token(w(&mut conn), "at_2").await.unwrap());
        assert!(!rows::delete_of_token(w(&mut conn), "at_2").await.unwrap());
        assert_eq!(
            rows::delete_over(w(&mut conn), 1_000).await.unwrap(),
            1,
            "{}",
            b.name
        );
        assert_eq!(
            rows::delete_of_user(w(&mut conn), &ada.id).await.unwrap(),
            0
        );
    }
}
