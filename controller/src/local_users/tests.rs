#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::keys::MasterKey;
use crate::local_auth::password::{PasswordCheck, PasswordHash};

async fn store_and_keys() -> (Store, Keyset, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("u.db").display());
    let store = Store::connect(&SecretString::from(url), 4).await.unwrap();
    store.migrate().await.unwrap();
    let master = MasterKey::generate_hex().unwrap();
    let keys = Keyset::new(store.clone(), MasterKey::from_hex(&master).unwrap());
    keys.ensure().await.unwrap();
    (store, keys, dir)
}

fn operator() -> Actor {
    Actor::local("uid=0")
}

/// `[auth.local]`'s defaults.
fn rules() -> PasswordRules {
    PasswordRules::from(&LocalAuthConfig::default())
}

fn given(text: &str) -> PasswordSource {
    PasswordSource::Given(SecretString::from(text.to_owned()))
}

/// The bodies of the stored events of `kind`, oldest first.
async fn events(store: &Store, kind: &str) -> Vec<serde_json::Value> {
    let mut conn = store.conn().await.unwrap();
    crate::store::audit::after_stored(&mut conn, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap())
        .filter(|body| body["type"] == kind)
        .collect()
}

async fn stored_hash(store: &Store, name: &str) -> LocalUserRecord {
    let mut conn = store.conn().await.unwrap();
    rows::by_name(&mut conn, LOCAL_USERS_ISSUER, name)
        .await
        .unwrap()
        .unwrap()
        .local
}

fn verifies(local: &LocalUserRecord, password: &str) -> bool {
    let hash = PasswordHash::from_phc(local.password_hash.clone()).unwrap();
    matches!(
        password::verify(
            &SecretString::from(password.to_owned()),
            &hash,
            Argon2Params::default()
        )
        .unwrap(),
        PasswordCheck::Valid { .. }
    )
}

#[tokio::test]
async fn add_with_a_generated_password_shows_it_once_and_audits_without_it() {
    let (store, keys, _dir) = store_and_keys().await;
    let added = add(
        &store,
        &keys,
        rules(),
        "alice",
        vec!["admins".into(), "ops".into()],
        PasswordSource::Generate,
        operator(),
    )
    .await
    .unwrap();
    let shown = added.one_time_password.unwrap();
    let shown = shown.expose_secret();
    assert_eq!(shown.len(), 19, "XXXX-XXXX-XXXX-XXXX");
    assert!(added.user.must_change_password);
    assert!(!added.user.totp_enrolled);
    assert_eq!(added.user.groups, ["admins", "ops"]);

    let local = stored_hash(&store, "alice").await;
    assert!(verifies(&local, shown));
    assert!(local.must_change_password);
    let mut conn = store.conn().await.unwrap();
    let user = users::get(&mut conn, &local.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.issuer, "local:");
    drop(conn);

    let created = events(&store, "local_user_created").await;
    assert_eq!(created.len(), 1);
    let e = &created[0];
    assert_eq!(e["details"]["user"], "alice");
    assert_eq!(e["details"]["user_id"], json(&local.user_id));
    assert_eq!(e["details"]["password_source"], "generated");
    assert_eq!(e["actor"]["source"], "local:uid=0");
    let text = e.to_string();
    assert!(
        !text.contains(shown),
        "the password is in the event: {text}"
    );
    assert!(!text.contains("argon2"), "the hash is in the event: {text}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::Value::String(text.to_owned())
}

#[tokio::test]
async fn add_with_a_given_password_and_the_refusals() {
    let (store, keys, _dir) = store_and_keys().await;
    let added = add(
        &store,
        &keys,
        rules(),
        "deploy",
        vec!["ci".into()],
        given("correct horse battery staple"),
        operator(),
    )
    .await
    .unwrap();
    assert!(added.one_time_password.is_none());
    assert!(!added.user.must_change_password);
    assert!(verifies(
        &stored_hash(&store, "deploy").await,
        "correct horse battery staple"
    ));
    assert_eq!(
        events(&store, "local_user_created").await[0]["details"]["password_source"],
        "file"
    );

    let refused = |r: Result<Changed, LocalUserError>| r.err().unwrap();
    let again = add(
        &store,
        &keys,
        rules(),
        "deploy",
        vec!["ci".into()],
        given("another long password"),
        operator(),
    )
    .await;
    assert!(matches!(refused(again), LocalUserError::Exists(_)));
    let short = add(
        &store,
        &keys,
        rules(),
        "bob",
        vec!["ci".into()],
        given("short"),
        operator(),
    )
    .await;
    let short = refused(short);
    assert!(matches!(short, LocalUserError::Password(_)), "{short}");
    assert!(!short.to_string().contains("short\""), "{short}");
    let no_groups = add(
        &store,
        &keys,
        rules(),
        "bob",
        vec![],
        PasswordSource::Generate,
        operator(),
    )
    .await;
    assert!(matches!(refused(no_groups), LocalUserError::NoGroups));
    let bad_name = add(
        &store,
        &keys,
        rules(),
        "bob smith",
        vec!["ci".into()],
        PasswordSource::Generate,
        operator(),
    )
    .await;
    assert!(matches!(
        refused(bad_name),
        LocalUserError::InvalidName(_, "user")
    ));
    let bad_group = add(
        &store,
        &keys,
        rules(),
        "bob",
        vec!["a b".into()],
        PasswordSource::Generate,
        operator(),
    )
    .await;
    assert!(matches!(
        refused(bad_group),
        LocalUserError::InvalidName(_, "group")
    ));

    // Only the first add committed anything.
    assert_eq!(events(&store, "local_user_created").await.len(), 1);
    let names: Vec<_> = list(&store)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["deploy"]);
}

#[tokio::test]
async fn reset_gives_a_new_password_and_clears_totp_and_recovery_codes() {
    let (store, keys, _dir) = store_and_keys().await;
    add(
        &store,
        &keys,
        rules(),
        "alice",
        vec!["admins".into()],
        given("the first long password"),
        operator(),
    )
    .await
    .unwrap();
    // Enrol TOTP as the login will (an audited transaction).
    let user_id = stored_hash(&store, "alice").await.user_id;
    let mut tx = AuditedTx::begin(&store, &keys).await.unwrap();
    rows::enrol_totp(tx.write(), &user_id, b"sealed", 3, &["aa".into()], 10)
        .await
        .unwrap();
    tx.commit(AuditEvent::new(Actor::system(), Event::SessionActivated))
        .await
        .unwrap();
    assert!(list(&store).await.unwrap()[0].totp_enrolled);

    let reset_done = reset(
        &store,
        &keys,
        rules(),
        "alice",
        PasswordSource::Generate,
        operator(),
    )
    .await
    .unwrap();
    let shown = reset_done.one_time_password.unwrap();
    assert!(!reset_done.user.totp_enrolled);
    assert!(reset_done.user.must_change_password);
    let local = stored_hash(&store, "alice").await;
    assert!(verifies(&local, shown.expose_secret()));
    assert!(!verifies(&local, "the first long password"));
    assert_eq!(local.totp_secret, None);
    assert_eq!(local.totp_last_step, None);
    let mut conn = store.conn().await.unwrap();
    assert!(rows::recovery_codes(&mut conn, &user_id)
        .await
        .unwrap()
        .is_empty());
    drop(conn);

    let resets = events(&store, "local_user_reset").await;
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0]["details"]["totp_cleared"], true);
    assert_eq!(resets[0]["details"]["password_source"], "generated");
    assert!(!resets[0].to_string().contains(shown.expose_secret()));

    // A second reset from a file: nothing left to clear.
    reset(
        &store,
        &keys,
        rules(),
        "alice",
        given("the third long password"),
        operator(),
    )
    .await
    .unwrap();
    let local = stored_hash(&store, "alice").await;
    assert!(!local.must_change_password);
    assert!(verifies(&local, "the third long password"));
    assert_eq!(
        events(&store, "local_user_reset").await[1]["details"]["totp_cleared"],
        false
    );

    let unknown = reset(
        &store,
        &keys,
        rules(),
        "carol",
        PasswordSource::Generate,
        operator(),
    )
    .await;
    assert!(matches!(unknown.err().unwrap(), LocalUserError::Unknown(_)));
}

#[tokio::test]
async fn new_passwords_follow_the_configured_rules() {
    let (store, keys, _dir) = store_and_keys().await;
    let strict = PasswordRules::from(&LocalAuthConfig {
        min_password_length: 30,
        argon2: Argon2Params {
            m_cost_kib: 8 * 1024,
            t_cost: 5,
            p_cost: 1,
        },
        ..LocalAuthConfig::default()
    });
    let short = add(
        &store,
        &keys,
        strict,
        "ana",
        vec!["ops".into()],
        given("twenty-two characters!"),
        operator(),
    )
    .await;
    assert!(matches!(short.err().unwrap(), LocalUserError::Password(_)));
    // A generated password is long enough for the rules it is made under.
    let added = add(
        &store,
        &keys,
        strict,
        "ana",
        vec!["ops".into()],
        PasswordSource::Generate,
        operator(),
    )
    .await
    .unwrap();
    let shown = added.one_time_password.unwrap();
    assert!(shown.expose_secret().chars().count() >= 30, "too short");
    let phc = stored_hash(&store, "ana").await.password_hash;
    assert!(phc.contains("m=8192,t=5,p=1"), "{phc}");
}

#[tokio::test]
async fn disable_revokes_the_users_tokens_with_its_event_and_show_tells_it() {
    let (store, keys, _dir) = store_and_keys().await;
    add(
        &store,
        &keys,
        rules(),
        "bob",
        vec!["ops".into()],
        PasswordSource::Generate,
        operator(),
    )
    .await
    .unwrap();
    let user = {
        let mut conn = store.conn().await.unwrap();
        rows::by_name(&mut conn, LOCAL_USERS_ISSUER, "bob")
            .await
            .unwrap()
            .unwrap()
            .user
    };
    let token = crate::tokens::issue(
        &store,
        &keys,
        std::time::Duration::from_secs(600),
        &user,
        |u, t| crate::tokens::login_succeeded(u, t, "test"),
    )
    .await
    .unwrap();
    assert_eq!(show(&store, "bob").await.unwrap().disabled_at, None);

    let admin = Actor {
        user_id: Some("u_admin".into()),
        username: Some("root-admin".into()),
        ..Actor::default()
    };
    let disabled = disable(&store, &keys, "bob", admin.clone()).await.unwrap();
    assert_eq!(
        disabled.revoked_token_ids,
        std::slice::from_ref(&token.token_id)
    );
    let first = disabled.user.disabled_at.unwrap();
    assert_eq!(show(&store, "bob").await.unwrap().disabled_at, Some(first));
    let mut conn = store.conn().await.unwrap();
    let live = crate::store::tokens::authenticate(
        &mut conn,
        &crate::ids::secret_hash(&token.secret),
        crate::clock::to_i64(keys.clock().unix_secs()),
    )
    .await
    .unwrap();
    assert!(live.is_none(), "the disabled user's token still works");
    drop(conn);

    let recorded = events(&store, "local_user_disabled").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["details"]["user"], "bob");
    assert_eq!(
        recorded[0]["details"]["token_ids"][0],
        json(&token.token_id)
    );
    assert_eq!(recorded[0]["actor"]["user"], "root-admin");

    // Again: the first instant stays, nothing left to revoke.
    let again = disable(&store, &keys, "bob", admin.clone()).await.unwrap();
    assert_eq!(again.user.disabled_at, Some(first));
    assert!(again.revoked_token_ids.is_empty());
    let unknown = disable(&store, &keys, "carol", admin).await;
    assert!(matches!(unknown.err().unwrap(), LocalUserError::Unknown(_)));
    assert!(matches!(
        show(&store, "carol").await.err().unwrap(),
        LocalUserError::Unknown(_)
    ));
}

#[test]
fn a_password_file_must_be_private_and_loses_one_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "a long enough password\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = read_password_file(&path).err().unwrap();
    assert!(open.to_string().contains("chmod 600"), "{open}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        read_password_file(&path).unwrap().expose_secret(),
        "a long enough password"
    );
    let missing = read_password_file(&dir.path().join("none")).err().unwrap();
    assert!(missing
        .to_string()
        .contains("cannot read the password file"));
}

#[tokio::test]
async fn a_sealed_totp_secret_opens_only_for_its_own_user() {
    let (_store, keys, _dir) = store_and_keys().await;
    let sealed = keys
        .seal_secret(&totp_seal_context("u_alice"), b"twenty bytes secret!")
        .unwrap();
    assert!(!sealed.windows(6).any(|w| w == b"twenty"));
    let opened = keys
        .open_secret(&totp_seal_context("u_alice"), &sealed)
        .unwrap();
    assert_eq!(opened.expose_secret(), b"twenty bytes secret!");
    assert!(keys
        .open_secret(&totp_seal_context("u_bob"), &sealed)
        .is_err());
}
