#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::local_auth::password::{PasswordCheck, PasswordHash};

fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        "[store]\nurl = \"sqlite://{}\"\n[keys]\nmaster_key_file = \"{}\"\n{extra}",
        dir.join("c.db").display(),
        dir.join("master.key").display()
    );
    Config::parse(&text, "test.toml", |_| None).unwrap()
}

fn operator() -> Operator {
    Operator {
        account: "uid=0".into(),
    }
}

fn request<'a>(operator: &'a Operator, delivery: Delivery<'a>) -> InitRequest<'a> {
    InitRequest {
        admin: "admin",
        groups: vec!["admins".into()],
        delivery,
        operator,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_credential_is_prefixed_160_random_bits_and_never_repeats() {
    let a = new_credential().unwrap();
    let b = new_credential().unwrap();
    let text = a.expose_secret();
    assert!(text.starts_with(BOOTSTRAP_PREFIX), "{text}");
    // 20 bytes in base32 without padding: 32 characters.
    let body = &text[BOOTSTRAP_PREFIX.len()..];
    assert_eq!(body.len(), 32);
    assert!(body
        .bytes()
        .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
    assert_ne!(text, b.expose_secret());
    assert!(!format!("{a:?}").contains(text));
}

#[test]
fn requests_that_make_no_working_admin_are_refused() {
    let groups = vec!["admins".to_owned()];
    assert!(check_request(true, "admin", &groups).is_ok());
    assert!(matches!(
        check_request(false, "admin", &groups),
        Err(InitError::LocalAuthDisabled)
    ));
    assert!(matches!(
        check_request(true, "bad name", &groups),
        Err(InitError::InvalidName(_, "user"))
    ));
    assert!(matches!(
        check_request(true, "admin", &[]),
        Err(InitError::NoGroups)
    ));
    assert!(matches!(
        check_request(true, "admin", &["a,b c".to_owned()]),
        Err(InitError::InvalidName(_, "group"))
    ));
    let err = InitError::LocalAuthDisabled.to_string();
    assert!(err.contains("[auth.local] enabled = false"), "{err}");
}

#[test]
fn the_expiry_is_now_plus_the_lifetime_and_saturates() {
    assert_eq!(expiry(1_000, Duration::from_secs(86_400)), 87_400);
    assert_eq!(expiry(i64::MAX - 1, Duration::from_secs(10)), i64::MAX);
}

#[tokio::test]
async fn init_creates_the_key_and_a_must_change_admin_whose_password_is_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[auth.local]\nbootstrap_lifetime = \"2h\"\n");
    let op = operator();
    let done = init(&config, request(&op, Delivery::Print)).await.unwrap();
    assert_eq!(done.master_key, KeyOrigin::Created);
    assert_eq!(mode(&dir.path().join("master.key")), 0o600);
    assert_eq!(done.store, "sqlite");
    let credential = done.credential.unwrap();

    let store = Store::connect(&config.store_url, 2).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    let found = rows::by_name(&mut conn, LOCAL_USERS_ISSUER, "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user.groups, ["admins"]);
    assert!(found.local.must_change_password);
    assert_eq!(found.local.password_expires_at, Some(done.expires_at));
    let now = clock::to_i64(clock::system().unix_secs());
    assert!(
        (done.expires_at - now - 7200).abs() <= 5,
        "{}",
        done.expires_at
    );
    let stored = PasswordHash::from_phc(found.local.password_hash.clone()).unwrap();
    assert!(matches!(
        password::verify(&credential, &stored, config.local_auth.argon2).unwrap(),
        PasswordCheck::Valid { .. }
    ));

    // One event, with the actor and no credential.
    let events: Vec<serde_json::Value> = crate::store::audit::after_stored(&mut conn, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.body.contains("controller_initialised"))
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["actor"]["source"], "local:uid=0");
    assert_eq!(e["details"]["master_key"], "created");
    assert_eq!(e["details"]["user"], "admin");
    assert_eq!(e["details"]["issuer"], "local:");
    assert_eq!(e["details"]["bootstrap_delivery"], "printed");
    assert_eq!(e["details"]["bootstrap_expires_at"], done.expires_at);
    assert!(!e.to_string().contains(credential.expose_secret()));
    drop(conn);
    store.close().await;

    // A second run refuses and leaves the key alone.
    let key = std::fs::read(dir.path().join("master.key")).unwrap();
    let err = init(&config, request(&op, Delivery::Print))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, InitError::AlreadyInitialised), "{err}");
    assert!(
        err.to_string().contains("controller users add|reset"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.path().join("master.key")).unwrap(), key);
}

#[tokio::test]
async fn a_bootstrap_file_is_written_0600_and_an_existing_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let op = operator();
    let taken = dir.path().join("taken");
    std::fs::write(&taken, "keep me").unwrap();
    let err = init(&config, request(&op, Delivery::File(&taken)))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, InitError::BootstrapFileExists(_)), "{err}");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
    // Refused before anything was made.
    assert!(!dir.path().join("master.key").exists());

    let file = dir.path().join("bootstrap");
    let done = init(&config, request(&op, Delivery::File(&file)))
        .await
        .unwrap();
    assert!(done.credential.is_none());
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with(BOOTSTRAP_PREFIX) && text.ends_with('\n'),
        "{text}"
    );
}

#[tokio::test]
async fn a_key_from_the_environment_is_existing_and_no_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nurl = \"sqlite://{}\"\n[keys]\nmaster_key_file = \"{}\"\n",
        dir.path().join("c.db").display(),
        dir.path().join("master.key").display()
    );
    let hex = MasterKey::generate_hex().unwrap();
    let config = Config::parse(&text, "test.toml", |name| {
        (name == "PORTCULLIS_MASTER_KEY").then(|| hex.expose_secret().to_owned())
    })
    .unwrap();
    let op = operator();
    let done = init(&config, request(&op, Delivery::Print)).await.unwrap();
    assert_eq!(done.master_key, KeyOrigin::Existing);
    assert!(done.master_key_file.is_none());
    assert!(!dir.path().join("master.key").exists());
}

#[tokio::test]
async fn local_auth_disabled_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "[auth.local]\nenabled = false\n");
    let op = operator();
    let err = init(&config, request(&op, Delivery::Print))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, InitError::LocalAuthDisabled), "{err}");
    assert!(!dir.path().join("master.key").exists());
    assert!(!dir.path().join("c.db").exists());
}

#[tokio::test]
async fn a_key_made_for_a_store_it_cannot_open_is_removed_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    // A keyset sealed with another master key, and no user yet.
    let store = Store::connect(&config.store_url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let other = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
    Keyset::new(store.clone(), other).ensure().await.unwrap();
    store.close().await;

    let op = operator();
    let err = init(&config, request(&op, Delivery::Print))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, InitError::Keys(_)), "{err}");
    assert!(
        !dir.path().join("master.key").exists(),
        "a key that opens nothing is not left behind"
    );
}
