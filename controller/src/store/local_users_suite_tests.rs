//! The store suite for local users' credentials, on SQLite and, when the suite's cluster is
//! there, PostgreSQL (as `suite_tests.rs`): created beside a `users` row, found by name,
//! TOTP steps accepted once and never backwards, recovery codes used once, reset clears TOTP
//! and codes, disable, and the sealed secret never in `Debug`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use super::suite_tests::{stores, w};
use crate::store::local_users::{self as rows, LocalUserRecord};
use crate::store::users::{self, UserRecord};

const ISSUER: &str = "local:";

fn user(id: &str, name: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        issuer: ISSUER.into(),
        subject: name.into(),
        username: name.into(),
        email: None,
        name: None,
        groups: vec!["admins".into()],
        amr: vec![],
        acr: None,
        auth_time: None,
        updated_at: 100,
    }
}

fn local(user_id: &str) -> LocalUserRecord {
    LocalUserRecord {
        user_id: user_id.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        must_change_password: true,
        password_expires_at: Some(100 + 86_400),
        totp_secret: None,
        totp_last_step: None,
        disabled_at: None,
        created_at: 100,
        updated_at: 100,
    }
}

async fn create(conn: &mut sqlx::AnyConnection, id: &str, name: &str) {
    users::upsert(w(conn), &user(id, name)).await.unwrap();
    rows::insert(w(conn), &local(id)).await.unwrap();
}

#[tokio::test]
async fn a_local_user_is_found_by_name_and_listed_with_its_users_row() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_bob", "bob").await;
        create(&mut conn, "u_alice", "alice").await;
        // A user of another issuer with the same name is not a local user.
        users::upsert(
            w(&mut conn),
            &UserRecord {
                issuer: "https://idp.example".into(),
                ..user("u_oidc_alice", "alice")
            },
        )
        .await
        .unwrap();

        let alice = rows::by_name(&mut conn, ISSUER, "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(alice.user, user("u_alice", "alice"), "{dialect:?}");
        assert_eq!(alice.local, local("u_alice"), "{dialect:?}");
        assert!(rows::by_name(&mut conn, ISSUER, "carol")
            .await
            .unwrap()
            .is_none());
        assert!(rows::by_name(&mut conn, "https://idp.example", "alice")
            .await
            .unwrap()
            .is_none());

        let names: Vec<_> = rows::list(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.user.username)
            .collect();
        assert_eq!(names, ["alice", "bob"], "{dialect:?}");

        // A second set of credentials for the same user is refused.
        assert!(rows::insert(w(&mut conn), &local("u_alice")).await.is_err());
        // Credentials for a user that does not exist are refused (the foreign key).
        assert!(rows::insert(w(&mut conn), &local("u_nobody"))
            .await
            .is_err());
    }
}

#[tokio::test]
async fn a_totp_step_is_accepted_once_and_never_an_earlier_one() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_alice", "alice").await;
        // Not enrolled: no step is accepted.
        assert!(!rows::accept_totp_step(w(&mut conn), "u_alice", 10, 200)
            .await
            .unwrap());

        let hashes = vec!["aa".to_owned(), "bb".to_owned()];
        assert!(
            rows::enrol_totp(w(&mut conn), "u_alice", b"sealed", 10, &hashes, 200)
                .await
                .unwrap()
        );
        let enrolled = rows::by_name(&mut conn, ISSUER, "alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(enrolled.local.totp_secret.as_deref(), Some(&b"sealed"[..]));
        assert_eq!(enrolled.local.totp_last_step, Some(10), "{dialect:?}");

        // The enrolment's own step is used; the next is accepted once.
        assert!(!rows::accept_totp_step(w(&mut conn), "u_alice", 10, 201)
            .await
            .unwrap());
        assert!(rows::accept_totp_step(w(&mut conn), "u_alice", 11, 201)
            .await
            .unwrap());
        assert!(!rows::accept_totp_step(w(&mut conn), "u_alice", 11, 202)
            .await
            .unwrap());
        // A later step, then an earlier one (within the skew) is refused.
        assert!(rows::accept_totp_step(w(&mut conn), "u_alice", 13, 203)
            .await
            .unwrap());
        assert!(!rows::accept_totp_step(w(&mut conn), "u_alice", 12, 203)
            .await
            .unwrap());
        // Unknown user.
        assert!(!rows::accept_totp_step(w(&mut conn), "u_nobody", 99, 203)
            .await
            .unwrap());
    }
}

#[tokio::test]
async fn recovery_codes_are_used_once_and_replaced_at_enrolment() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_alice", "alice").await;
        create(&mut conn, "u_bob", "bob").await;
        let first = vec!["aa".to_owned(), "bb".to_owned()];
        rows::enrol_totp(w(&mut conn), "u_alice", b"s", 1, &first, 200)
            .await
            .unwrap();
        rows::enrol_totp(w(&mut conn), "u_bob", b"s", 1, &["cc".to_owned()], 200)
            .await
            .unwrap();

        assert!(rows::use_recovery_code(w(&mut conn), "u_alice", "aa", 300)
            .await
            .unwrap());
        assert!(!rows::use_recovery_code(w(&mut conn), "u_alice", "aa", 301)
            .await
            .unwrap());
        // Another user's code is not this user's.
        assert!(!rows::use_recovery_code(w(&mut conn), "u_alice", "cc", 301)
            .await
            .unwrap());
        let codes = rows::recovery_codes(&mut conn, "u_alice").await.unwrap();
        assert_eq!(
            codes,
            vec![
                rows::RecoveryCodeRow {
                    code_hash: "aa".into(),
                    used_at: Some(300)
                },
                rows::RecoveryCodeRow {
                    code_hash: "bb".into(),
                    used_at: None
                },
            ],
            "{dialect:?}"
        );

        // A second enrolment (a racing login's) is refused and changes nothing; after a
        // reset, enrolling again replaces the codes.
        assert!(
            !rows::enrol_totp(w(&mut conn), "u_alice", b"t", 5, &["dd".to_owned()], 400)
                .await
                .unwrap()
        );
        assert_eq!(
            rows::recovery_codes(&mut conn, "u_alice")
                .await
                .unwrap()
                .len(),
            2,
            "{dialect:?}"
        );
        assert!(
            rows::reset(w(&mut conn), "u_alice", "$argon2id$new", false, 400)
                .await
                .unwrap()
        );
        assert!(
            rows::enrol_totp(w(&mut conn), "u_alice", b"t", 5, &["dd".to_owned()], 400)
                .await
                .unwrap()
        );
        let codes = rows::recovery_codes(&mut conn, "u_alice").await.unwrap();
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].code_hash, "dd");
        assert_eq!(
            rows::recovery_codes(&mut conn, "u_bob")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn reset_sets_a_password_and_clears_totp_and_recovery_codes() {
    for (store, _dir) in stores().await {
        let dialect = store.dialect();
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_alice", "alice").await;
        let created = rows::by_name(&mut conn, ISSUER, "alice")
            .await
            .unwrap()
            .unwrap()
            .local;
        assert_eq!(
            created.password_expires_at,
            Some(100 + 86_400),
            "{dialect:?}"
        );
        rows::enrol_totp(w(&mut conn), "u_alice", b"s", 7, &["aa".to_owned()], 200)
            .await
            .unwrap();
        assert!(
            rows::set_password(w(&mut conn), "u_alice", "$argon2id$own", false, 250)
                .await
                .unwrap()
        );
        let changed = rows::by_name(&mut conn, ISSUER, "alice")
            .await
            .unwrap()
            .unwrap()
            .local;
        assert_eq!(
            changed.password_expires_at, None,
            "a changed password never expires"
        );
        assert!(
            rows::reset(w(&mut conn), "u_alice", "$argon2id$new", true, 300)
                .await
                .unwrap()
        );
        let after = rows::by_name(&mut conn, ISSUER, "alice")
            .await
            .unwrap()
            .unwrap()
            .local;
        assert_eq!(after.password_hash, "$argon2id$new", "{dialect:?}");
        assert!(after.must_change_password);
        assert_eq!(after.totp_secret, None);
        assert_eq!(after.totp_last_step, None);
        assert_eq!(after.updated_at, 300);
        assert_eq!(after.created_at, 100);
        assert!(rows::recovery_codes(&mut conn, "u_alice")
            .await
            .unwrap()
            .is_empty());
        assert!(
            !rows::reset(w(&mut conn), "u_nobody", "$argon2id$x", true, 300)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn a_user_is_disabled_and_enabled_again() {
    for (store, _dir) in stores().await {
        let mut conn = store.conn().await.unwrap();
        create(&mut conn, "u_alice", "alice").await;
        assert!(rows::set_disabled(w(&mut conn), "u_alice", Some(500), 500)
            .await
            .unwrap());
        assert_eq!(disabled_at(&mut conn).await, Some(500));
        assert!(rows::set_disabled(w(&mut conn), "u_alice", None, 600)
            .await
            .unwrap());
        assert_eq!(disabled_at(&mut conn).await, None);
    }
}

async fn disabled_at(conn: &mut sqlx::AnyConnection) -> Option<i64> {
    let alice = rows::by_name(conn, ISSUER, "alice").await.unwrap().unwrap();
    alice.local.disabled_at
}

#[test]
fn debug_shows_neither_the_hash_nor_the_sealed_secret() {
    let mut l = local("u_alice");
    l.totp_secret = Some(b"SEALEDBYTES".to_vec());
    let shown = format!("{l:?}");
    assert!(!shown.contains("argon2id"), "{shown}");
    assert!(!shown.contains("83, 69, 65"), "{shown}");
    assert!(shown.contains("totp_enrolled: true"), "{shown}");
}
