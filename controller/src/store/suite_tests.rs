//! The store suite: every test runs on SQLite, and on PostgreSQL when the suite's cluster is
//! there (`scripts/test` starts one and sets `PORTCULLIS_TEST_PG_URL`; plain `cargo test`
//! needs no peer and checks SQLite only).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use crate::keys::{Keyset, MasterKey};
use crate::secret::SecretString;
use crate::store::{self, Store, StoreError, Write};

/// A new, empty database in the suite's PostgreSQL cluster, if there is one.
pub(super) async fn fresh_pg_database() -> Option<String> {
    use sqlx::Connection as _;
    let admin = std::env::var("PORTCULLIS_TEST_PG_URL").ok()?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(
        "t_unit_{}_{n}",
        crate::ids::new_id(crate::ids::IdKind::Event)
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("URL has a database part");
    Some(format!("{base}/{name}"))
}

/// Polls `condition` every 50 ms until it holds; fails after `limit` naming `what`.
pub(super) async fn wait_for_async<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: std::time::Duration,
    mut condition: impl FnMut() -> F,
) {
    let start = std::time::Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        // The poll interval between two looks at the condition, under the deadline above.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The store functions that change state take a `Write`, which only an audited transaction
/// makes; this suite checks those functions themselves, so it makes one directly.
pub(super) fn w(conn: &mut sqlx::AnyConnection) -> Write<'_> {
    Write::audited(conn)
}

/// A migrated SQLite store in a temporary directory and, when the suite's PostgreSQL cluster
/// is there, a migrated fresh PostgreSQL database: every table's suite runs on both.
pub(super) async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let sqlite = Store::connect(&SecretString::from(url), 4).await.unwrap();
    sqlite.migrate().await.unwrap();
    let mut out = vec![(sqlite, Some(dir))];
    if let Some(url) = fresh_pg_database().await {
        let pg = Store::connect(&SecretString::from(url), 4).await.unwrap();
        pg.migrate().await.unwrap();
        out.push((pg, None));
    }
    out
}

pub(super) struct Backend {
    pub(super) name: &'static str,
    pub(super) store: Store,
    _dir: Option<tempfile::TempDir>,
}

pub(super) async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let sqlite = Store::connect(&SecretString::from(url), 4)
        .await
        .expect("sqlite");
    sqlite.migrate().await.expect("sqlite migrations");
    let mut backends = vec![Backend {
        name: "sqlite",
        store: sqlite,
        _dir: Some(dir),
    }];
    if let Some(pg_url) = fresh_pg_database().await {
        let pg = Store::connect(&SecretString::from(pg_url), 4)
            .await
            .expect("postgres");
        pg.migrate().await.expect("postgres migrations");
        // Applying migrations twice is a no-op.
        pg.migrate().await.expect("postgres migrations again");
        backends.push(Backend {
            name: "postgres",
            store: pg,
            _dir: None,
        });
    }
    backends
}

pub(super) fn target(id: &str, name: &str) -> store::targets::TargetRecord {
    store::targets::TargetRecord {
        id: id.into(),
        name: name.into(),
        address: "10.0.0.5:22".into(),
        zone: Some("WORKLOADS".into()),
        service: Some("ssh".into()),
        vmid: Some(4012),
        tags: vec!["web".into(), "prod".into()],
        pool: None,
        max_session_secs: 3600,
        connection_limit: 2,
        ssh_host_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfJ5mkQp5q2eJp5r0N4rK1pY2uXQ0Jm7KcQxUY9n3aK"
                .into(),
        ],
        ssh_host_cas: vec![],
        vault_ssh_mount: None,
        vault_ssh_role: Some("web".into()),
        vault_secrets: vec!["database/creds/readonly".into()],
        source: None,
        source_key: None,
        available: true,
        discovered: None,
        proxmox_cluster: None,
        created_at: 1,
        updated_at: 1,
    }
}

pub(super) fn user(subject: &str, groups: &[&str]) -> store::users::UserRecord {
    store::users::UserRecord {
        id: format!("u_{subject}"),
        issuer: "https://idp".into(),
        subject: subject.into(),
        username: subject.into(),
        email: None,
        name: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        amr: vec!["mfa".into()],
        acr: None,
        auth_time: Some(100),
        updated_at: 100,
    }
}

/// `sqlite::memory:` (and `sqlite://:memory:`) is refused with a clear error, never a panic:
/// a private in-memory database is lost at exit, so it is no store for a controller.
#[tokio::test]
async fn a_private_in_memory_sqlite_url_is_refused_clearly() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite::memory:?cache=shared",
    ] {
        let err = Store::connect(&SecretString::from(url.to_owned()), 4)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        let message = err.to_string();
        assert!(message.contains("in-memory"), "{url}: {message}");
        assert!(message.contains("sqlite://PATH"), "{url}: {message}");
    }
    // A named, shared in-memory database (what the fast tests use) still works.
    Store::connect(
        &SecretString::from("sqlite://named?mode=memory&cache=shared".to_owned()),
        4,
    )
    .await
    .expect("a named shared in-memory store");
}

#[tokio::test]
async fn sqlite_connections_keep_the_configured_pragmas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = Store::connect(&SecretString::from(url), 4)
        .await
        .expect("sqlite");
    let mut conn = store.conn().await.expect("connection");
    let pragma = |name: &'static str| format!("PRAGMA {name}");
    let mut read = async |name| -> String {
        let row = sqlx::query(&pragma(name))
            .fetch_one(&mut *conn)
            .await
            .expect(name);
        use sqlx::Row as _;
        row.try_get::<String, _>(0)
            .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
            .expect(name)
    };
    // NORMAL is 1 (FULL, SQLite's default, would flush the WAL at every commit).
    assert_eq!(read("synchronous").await, "1");
    assert_eq!(read("journal_mode").await, "wal");
    assert_eq!(read("foreign_keys").await, "1");
    assert_eq!(read("busy_timeout").await, "10000");
    // Commits never checkpoint: a background task copies the WAL back.
    assert_eq!(read("wal_autocheckpoint").await, "0");
}

#[tokio::test]
async fn sqlite_wal_is_copied_back_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.db");
    let store = Store::connect(
        &SecretString::from(format!("sqlite://{}", path.display())),
        4,
    )
    .await
    .expect("sqlite");
    let before = std::fs::metadata(&path).expect("db file").len();
    // The migrations' tables and rows land in the WAL, not in the database file.
    store.migrate().await.expect("migrations");
    wait_for_async(
        "a checkpoint to copy the WAL into the database file",
        std::time::Duration::from_secs(10),
        || async { std::fs::metadata(&path).expect("db file").len() > before + 16 * 4096 },
    )
    .await;
}

#[tokio::test]
async fn targets_round_trip_and_names_are_unique() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        store::targets::insert(w(&mut conn), &target("t_1", "web-01"))
            .await
            .unwrap();
        let found = store::targets::find(&mut conn, "web-01")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, target("t_1", "web-01"), "{}", b.name);
        assert_eq!(
            store::targets::find(&mut conn, "t_1")
                .await
                .unwrap()
                .unwrap()
                .name,
            "web-01"
        );
        let dup = store::targets::insert(w(&mut conn), &target("t_2", "web-01")).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict(_))),
            "{}: {dup:?}",
            b.name
        );
        let mut changed = found.clone();
        changed.vmid = None;
        changed.tags = vec![];
        assert!(store::targets::update(w(&mut conn), &changed)
            .await
            .unwrap());
        assert_eq!(
            store::targets::find(&mut conn, "t_1")
                .await
                .unwrap()
                .unwrap(),
            changed,
            "{}",
            b.name
        );
        assert!(store::targets::delete(w(&mut conn), "t_1").await.unwrap());
        assert!(store::targets::list(&mut conn).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_failed_transaction_leaves_nothing_behind() {
    for b in backends().await {
        let mut tx = b.store.begin().await.unwrap();
        store::targets::insert(w(&mut tx), &target("t_1", "a"))
            .await
            .unwrap();
        let dup = store::targets::insert(w(&mut tx), &target("t_1", "b")).await;
        assert!(dup.is_err());
        drop(tx); // rolled back
        let mut conn = b.store.conn().await.unwrap();
        assert!(
            store::targets::list(&mut conn).await.unwrap().is_empty(),
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn users_upsert_keeps_id_and_tokens_expire_and_revoke() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let first = store::users::upsert(w(&mut conn), &user("alice", &["admins"]))
            .await
            .unwrap();
        let mut again = user("alice", &["projects"]);
        again.id = "u_other".into();
        let second = store::users::upsert(w(&mut conn), &again).await.unwrap();
        assert_eq!(first.id, second.id, "{}", b.name);
        assert_eq!(second.groups, vec!["projects".to_string()]);
        let token = store::tokens::TokenRecord {
            id: "at_1".into(),
            user_id: first.id.clone(),
            token_hash: vec![1; 32],
            created_at: 100,
            expires_at: 200,
            login: None,
        };
        store::tokens::insert(w(&mut conn), &token).await.unwrap();
        let found = store::tokens::authenticate(&mut conn, &[1; 32], 150)
            .await
            .unwrap();
        assert_eq!(
            found.map(|(u, id, exp)| (u.id, id, exp)),
            Some((first.id.clone(), "at_1".into(), 200))
        );
        assert!(
            store::tokens::authenticate(&mut conn, &[1; 32], 200)
                .await
                .unwrap()
                .is_none(),
            "expired"
        );
        assert!(
            store::tokens::authenticate(&mut conn, &[2; 32], 150)
                .await
                .unwrap()
                .is_none(),
            "unknown"
        );
        assert!(store::tokens::revoke(w(&mut conn), "at_1", 160)
            .await
            .unwrap());
        assert!(
            store::tokens::authenticate(&mut conn, &[1; 32], 150)
                .await
                .unwrap()
                .is_none(),
            "revoked"
        );
    }
}

#[tokio::test]
async fn join_tokens_work_once_and_expire() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let record = store::join_tokens::JoinTokenRecord {
            id: "jt_1".into(),
            token_hash: vec![9; 32],
            created_by: None,
            created_at: 100,
            expires_at: 200,
        };
        store::join_tokens::insert(w(&mut conn), &record)
            .await
            .unwrap();
        assert!(
            !store::join_tokens::consume(w(&mut conn), &[9; 32], "w_1", 250)
                .await
                .unwrap(),
            "expired"
        );
        assert!(
            store::join_tokens::consume(w(&mut conn), &[9; 32], "w_1", 150)
                .await
                .unwrap()
        );
        assert!(
            !store::join_tokens::consume(w(&mut conn), &[9; 32], "w_2", 151)
                .await
                .unwrap(),
            "{}: reused",
            b.name
        );
    }
}

#[tokio::test]
async fn rate_limit_counts_per_window() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        for _ in 0..3 {
            assert!(
                store::rate_limits::hit(&mut conn, "login:1.2.3.4", 120, 60, 3)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store::rate_limits::hit(&mut conn, "login:1.2.3.4", 130, 60, 3)
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert!(
            store::rate_limits::hit(&mut conn, "login:5.6.7.8", 130, 60, 3)
                .await
                .unwrap(),
            "per bucket"
        );
        assert!(
            store::rate_limits::hit(&mut conn, "login:1.2.3.4", 180, 60, 3)
                .await
                .unwrap(),
            "new window"
        );
    }
}

/// The group commit of audited actions: concurrent actions share transactions, a failing one
/// is rolled back alone (its rows and its event), and the chain stays gapless and verifiable.
#[tokio::test]
async fn batched_audited_actions_fail_alone_and_keep_one_chain() {
    use crate::audit::{self, batch::Writer, event, Actor, AuditEvent, Event};
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        let writer = Writer::spawn(b.store.clone(), keys.clone());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                writer
                    .run(move |tx| {
                        Box::pin(async move {
                            // Every fifth action inserts a duplicate name and must fail alone.
                            let name = if i % 5 == 4 {
                                "dup".to_owned()
                            } else {
                                format!("t{i}")
                            };
                            let id = format!("t_{i}");
                            let created = Event::TargetCreated {
                                details: event::TargetNamed {
                                    name: name.clone(),
                                    address: "127.0.0.1:22".into(),
                                },
                            };
                            tx.record(AuditEvent::new(Actor::system(), created).target(&id));
                            store::targets::insert(tx.write(), &target(&id, &name)).await?;
                            Ok(i)
                        })
                    })
                    .await
            }));
        }
        let mut ok = 0;
        let mut failed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        // The first "dup" wins; the seven others fail on the unique name.
        assert_eq!((ok, failed), (33, 7), "{}", b.name);
        // SQLite has one connection: read the keys before taking it.
        let keys_info = keys.audit_public_keys().await.unwrap();
        let mut conn = b.store.conn().await.unwrap();
        let events = store::audit::after(&mut conn, 0, 1000).await.unwrap();
        let created: Vec<_> = events
            .iter()
            .filter(|(_, body)| body.contains("target_created"))
            .collect();
        assert_eq!(
            created.len(),
            33,
            "{}: a failed action left its event",
            b.name
        );
        let mut verifier =
            audit::verify::Verifier::new(audit::chain::KeyRing::new(&keys_info), None);
        for (_, body) in &events {
            verifier
                .push(&serde_json::from_str(body).unwrap())
                .unwrap_or_else(|f| panic!("{}: {f}", b.name));
        }
        let head = store::audit::head(&mut conn).await.unwrap();
        let summary = verifier
            .finish(Some(&audit::verify::Head {
                sequence: head.sequence,
                hash: head.hash,
            }))
            .unwrap();
        assert_eq!(summary.events as usize, events.len(), "{}", b.name);
    }
}

/// A database migrated by a newer binary (a migration this one does not know) is refused with
/// what to do, and nothing is written: forward-only migrations, never a downgrade.
#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&SecretString::from(url), 2)
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrations");
    let mut conn = store.conn().await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, X'00', 0)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let err = store.migrate().await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaNewer { applied: 9999, known } if known < 9999),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("newer than this binary") && message.contains("Run that newer version"),
        "{message}"
    );
}

/// Two processes on one SQLite file (an offline `controller keys rotate` beside a running
/// `portcullis dev`): a writing transaction that has read must not fail when the other
/// commits in between ("database is locked" at once: the read pinned a stale snapshot, and
/// the busy timeout does not apply). `begin_write` takes the write lock first, so the other
/// process cannot commit in between: it waits out its busy timeout instead.
#[tokio::test]
async fn a_writing_transaction_on_sqlite_holds_the_write_lock_from_its_start() {
    use sqlx::{ConnectOptions as _, Connection as _};
    use std::str::FromStr as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_url = format!("sqlite://{}", dir.path().join("t.db").display());
    let offline = Store::connect(&SecretString::from(raw_url.clone()), 1)
        .await
        .expect("sqlite");
    offline.migrate().await.expect("migrations");

    let mut tx = offline.begin_write().await.unwrap();
    assert!(store::targets::list(&mut tx).await.unwrap().is_empty());
    // The other process, impatient (no busy timeout): it cannot start writing now.
    let mut other = sqlx::sqlite::SqliteConnectOptions::from_str(&raw_url)
        .unwrap()
        .busy_timeout(std::time::Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let refused = sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await;
    assert!(
        refused.is_err(),
        "another process could take the write lock while a writing transaction ran"
    );
    store::targets::insert(w(&mut tx), &target("t_1", "web-01"))
        .await
        .expect("the write after the read succeeds");
    tx.commit().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the lock is free after the commit");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    let mut conn = offline.conn().await.unwrap();
    assert_eq!(store::targets::list(&mut conn).await.unwrap().len(), 1);
}
