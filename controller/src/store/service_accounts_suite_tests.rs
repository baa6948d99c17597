//! The store suite for service accounts, on SQLite and, when the suite's cluster is there,
//! PostgreSQL (as `suite_tests.rs`): created beside a `users` row, found by name, one key per
//! account, an assertion's `jti` accepted once and forgotten after it expires, and revoking a
//! key revokes exactly the tokens it obtained, while a token of a revoked key is refused even
//! if its row was not marked.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::{stores, w};
use crate::store::service_accounts::{self as rows, ServiceAccountRecord};
use crate::store::tokens::{self, LoginAttributes, TokenRecord};
use crate::store::users::{self, UserRecord};
use crate::store::StoreError;

const ISSUER: &str = "service:";

fn user(id: &str, name: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        issuer: ISSUER.into(),
        subject: name.into(),
        username: name.into(),
        email: None,
        name: None,
        groups: vec!["ci".into()],
        amr: vec!["svc".into()],
        acr: None,
        auth_time: None,
        updated_at: 100,
    }
}

fn account(user_id: &str, fingerprint: &str) -> ServiceAccountRecord {
    ServiceAccountRecord {
        user_id: user_id.into(),
        public_key: format!("ssh-ed25519 AAAA{fingerprint} ci"),
        key_fingerprint: fingerprint.into(),
        key_revoked_at: None,
        created_at: 100,
    }
}

async fn create(conn: &mut sqlx::AnyConnection, id: &str, name: &str, fingerprint: &str) {
    users::upsert(w(conn), &user(id, name)).await.unwrap();
    rows::insert(w(conn), &account(id, fingerprint))
        .await
        .unwrap();
}

/// A token of `user_id`, bound to `fingerprint` when given; its secret's hash is `hash`.
async fn token(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    user_id: &str,
    hash: u8,
    fingerprint: Option<&str>,
) {
    tokens::insert(
        w(conn),
        &TokenRecord {
            id: id.into(),
            user_id: user_id.into(),
            token_hash: vec![hash; 32],
            created_at: 100,
            expires_at: 10_000,
            login: Some(LoginAttributes {
                groups: vec!["ci".into()],
                amr: vec!["svc".into()],
                acr: None,
                auth_time: Some(100),
            }),
        },
    )
    .await
    .unwrap();
    if let Some(fingerprint) = fingerprint {
        rows::bind_token(w(conn), id, user_id, fingerprint)
            .await
            .unwrap();
    }
}

async fn valid(conn: &mut sqlx::AnyConnection, hash: u8) -> bool {
    tokens::authenticate(conn, &[hash; 32], 200)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn an_account_is_found_by_name_and_listed_and_a_key_belongs_to_one_account() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_tf", "terraform-ci", "fp-tf").await;
        create(&mut conn, "u_an", "ansible-ci", "fp-an").await;
        // A user of another issuer with the same name is not a service account.
        users::upsert(
            w(&mut conn),
            &UserRecord {
                issuer: "local:".into(),
                ..user("u_local_tf", "terraform-ci")
            },
        )
        .await
        .unwrap();

        let found = rows::by_name(&mut conn, ISSUER, "terraform-ci")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.user.id, "u_tf", "{dialect:?}");
        assert_eq!(found.user.groups, vec!["ci"]);
        assert_eq!(found.account, account("u_tf", "fp-tf"));
        assert!(rows::by_name(&mut conn, ISSUER, "nobody")
            .await
            .unwrap()
            .is_none());
        let names: Vec<String> = rows::list(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.user.subject)
            .collect();
        assert_eq!(names, vec!["ansible-ci", "terraform-ci"], "{dialect:?}");

        // The same key for a second account, or a second key row for one account: refused.
        users::upsert(w(&mut conn), &user("u_other", "other"))
            .await
            .unwrap();
        let err = rows::insert(w(&mut conn), &account("u_other", "fp-tf"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{dialect:?}: {err}");
        let err = rows::insert(w(&mut conn), &account("u_tf", "fp-new"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{dialect:?}: {err}");
    }
}

#[tokio::test]
async fn an_assertion_is_accepted_once_and_forgotten_after_it_expires() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_tf", "terraform-ci", "fp-tf").await;
        assert!(
            rows::remember_assertion(w(&mut conn), "jti-1", "u_tf", 160, 100)
                .await
                .unwrap(),
            "{dialect:?}"
        );
        assert!(
            !rows::remember_assertion(w(&mut conn), "jti-1", "u_tf", 160, 120)
                .await
                .unwrap(),
            "{dialect:?}: a replay within its life is refused"
        );
        assert!(
            rows::remember_assertion(w(&mut conn), "jti-2", "u_tf", 200, 120)
                .await
                .unwrap()
        );
        // At 160 the first has expired: it is pruned (the verifier refuses it as expired).
        assert!(
            rows::remember_assertion(w(&mut conn), "jti-3", "u_tf", 260, 160)
                .await
                .unwrap()
        );
        let left: Vec<String> =
            sqlx::query_scalar("SELECT jti FROM service_assertions ORDER BY jti")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
        assert_eq!(left, vec!["jti-2", "jti-3"], "{dialect:?}");
    }
}

#[tokio::test]
async fn revoking_a_key_revokes_exactly_the_tokens_it_obtained() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_tf", "terraform-ci", "fp-tf").await;
        create(&mut conn, "u_an", "ansible-ci", "fp-an").await;
        token(&mut conn, "t_tf1", "u_tf", 1, Some("fp-tf")).await;
        token(&mut conn, "t_tf2", "u_tf", 2, Some("fp-tf")).await;
        token(&mut conn, "t_an", "u_an", 3, Some("fp-an")).await;
        for hash in 1..=3 {
            assert!(valid(&mut conn, hash).await, "{dialect:?}: token {hash}");
        }

        let revoked = rows::revoke_key(w(&mut conn), "u_tf", 150)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked, vec!["t_tf1", "t_tf2"], "{dialect:?}");
        assert!(!valid(&mut conn, 1).await, "{dialect:?}");
        assert!(!valid(&mut conn, 2).await, "{dialect:?}");
        assert!(
            valid(&mut conn, 3).await,
            "{dialect:?}: another key's token"
        );
        let found = rows::by_name(&mut conn, ISSUER, "terraform-ci")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.account.key_revoked_at, Some(150));
        // Twice: nothing more to revoke.
        assert_eq!(
            rows::revoke_key(w(&mut conn), "u_tf", 160).await.unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn a_token_of_a_revoked_key_is_refused_even_if_its_row_was_missed() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_tf", "terraform-ci", "fp-tf").await;
        token(&mut conn, "t_tf", "u_tf", 1, Some("fp-tf")).await;
        sqlx::query("UPDATE service_accounts SET key_revoked_at = 150 WHERE user_id = 'u_tf'")
            .execute(&mut *conn)
            .await
            .unwrap();
        let live: Option<i64> =
            sqlx::query_scalar("SELECT revoked_at FROM api_tokens WHERE id = 't_tf'")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(live, None, "{dialect:?}: the row itself is not marked");
        assert!(!valid(&mut conn, 1).await, "{dialect:?}");
        // A token bound to a key the account no longer holds is refused too.
        token(&mut conn, "t_old", "u_tf", 2, Some("fp-replaced")).await;
        sqlx::query("UPDATE service_accounts SET key_revoked_at = NULL WHERE user_id = 'u_tf'")
            .execute(&mut *conn)
            .await
            .unwrap();
        assert!(valid(&mut conn, 1).await, "{dialect:?}");
        assert!(!valid(&mut conn, 2).await, "{dialect:?}");
    }
}
