//! The store suite for OIDC logins (as `suite_tests.rs`): single use, and tokens that keep
//! the login they came from.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::{backends, user, w};
use crate::store;

#[tokio::test]
async fn oidc_logins_are_single_use_and_tokens_keep_their_login() {
    use store::oidc_logins::{self as logins, PendingLogin};
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let login = PendingLogin {
            id: "lg_1".into(),
            mode: logins::CODE.into(),
            state_hash: Some(vec![7; 32]),
            sealed: vec![1, 2, 3],
            cli_secret_hash: vec![9; 32],
            redirect_port: None,
            source: "127.0.0.1".into(),
            created_at: 100,
            expires_at: 700,
            callback_at: None,
            identity: None,
            code_hash: None,
            failed_attempts: 0,
            error: None,
            redeemed_at: None,
        };
        logins::insert(w(&mut conn), &login).await.unwrap();
        let found = logins::by_state(&mut conn, &[7; 32])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, login, "{}", b.name);
        assert!(logins::use_state(&mut conn, "lg_1", 200).await.unwrap());
        assert!(
            !logins::use_state(&mut conn, "lg_1", 201).await.unwrap(),
            "{}: state reused",
            b.name
        );
        logins::complete(&mut conn, "lg_1", "{}", &[5; 32])
            .await
            .unwrap();
        assert_eq!(logins::count_failure(&mut conn, "lg_1").await.unwrap(), 1);
        assert!(
            !logins::redeem(&mut conn, "lg_1", 800).await.unwrap(),
            "{}: expired",
            b.name
        );
        assert!(logins::redeem(&mut conn, "lg_1", 300).await.unwrap());
        assert!(
            !logins::redeem(&mut conn, "lg_1", 301).await.unwrap(),
            "{}: redeemed twice",
            b.name
        );
        let after = logins::get(&mut conn, "lg_1").await.unwrap().unwrap();
        assert_eq!((after.identity, after.code_hash), (None, Some(vec![5; 32])));
        logins::fail(w(&mut conn), "lg_1", "nope").await.unwrap();
        // An expired login's state is refused.
        let mut late = login.clone();
        late.id = "lg_2".into();
        late.state_hash = Some(vec![8; 32]);
        logins::insert(w(&mut conn), &late).await.unwrap();
        assert!(
            !logins::use_state(&mut conn, "lg_2", 700).await.unwrap(),
            "{}: expired state",
            b.name
        );
        assert_eq!(logins::prune(&mut conn, 700 + 3601).await.unwrap(), 2);

        // A token keeps the groups and amr of its own login, not the user's latest.
        let alice = store::users::upsert(w(&mut conn), &user("alice-oidc", &["lab"]))
            .await
            .unwrap();
        let mut token = store::tokens::TokenRecord {
            id: "at_o1".into(),
            user_id: alice.id.clone(),
            token_hash: vec![3; 32],
            created_at: 100,
            expires_at: 1000,
            login: Some(store::tokens::LoginAttributes {
                groups: vec!["old".into()],
                amr: vec!["pwd".into()],
                acr: Some("bronze".into()),
                auth_time: Some(90),
            }),
        };
        store::tokens::insert(w(&mut conn), &token).await.unwrap();
        token.id = "at_o2".into();
        token.token_hash = vec![4; 32];
        token.login = None;
        store::tokens::insert(w(&mut conn), &token).await.unwrap();
        let (u, _, _) = store::tokens::authenticate(&mut conn, &[3; 32], 150)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.groups, u.amr, u.acr, u.auth_time),
            (
                vec!["old".to_string()],
                vec!["pwd".to_string()],
                Some("bronze".into()),
                Some(90)
            ),
            "{}",
            b.name
        );
        let (u, _, _) = store::tokens::authenticate(&mut conn, &[4; 32], 150)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            u.groups,
            vec!["lab".to_string()],
            "{}: no login attributes: the user's",
            b.name
        );
        let mut revoked = store::tokens::revoke_user(w(&mut conn), &alice.id, 150)
            .await
            .unwrap();
        revoked.sort();
        assert_eq!(
            revoked,
            vec!["at_o1".to_string(), "at_o2".to_string()],
            "{}",
            b.name
        );
        assert!(store::tokens::authenticate(&mut conn, &[3; 32], 151)
            .await
            .unwrap()
            .is_none());
        let users = store::users::by_subject(&mut conn, "alice-oidc", None)
            .await
            .unwrap();
        assert_eq!(users.len(), 1);
        assert!(
            store::users::by_subject(&mut conn, "alice-oidc", Some("https://other"))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
