//! The store suite: every test runs on SQLite, and on PostgreSQL when the suite's cluster is
//! there (`scripts/test` starts one and sets `PORTCULLIS_TEST_PG_URL`; plain `cargo test`
//! needs no peer and checks SQLite only).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use crate::keys::{Keyset, MasterKey, Purpose};
use crate::secret::{ExposeSecret as _, SecretString};
use crate::store::sessions::SessionState;
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
async fn wait_for_async<F: std::future::Future<Output = bool>>(
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
use portcullis_proto::link::EndReason;

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

struct Backend {
    name: &'static str,
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
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

fn user(subject: &str, groups: &[&str]) -> store::users::UserRecord {
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

fn session(limit: i64) -> store::sessions::SessionRecord {
    store::sessions::SessionRecord {
        id: "s_1".into(),
        user_id: "u_alice".into(),
        target_id: "t_1".into(),
        worker_id: "w_1".into(),
        state: SessionState::Pending,
        termination_reason: None,
        client_addr: "127.0.0.1".into(),
        client_key_hash: "00".into(),
        endpoint: "10.0.0.5:22".into(),
        connection_limit: limit,
        connections_count: 0,
        policy_hash: "h".into(),
        created_at: 100,
        expires_at: 1000,
        activated_at: None,
        terminated_at: None,
        ssh_mode: portcullis_policy::SshMode::Certificate,
        parent_session_id: None,
    }
}

/// Inserts the user alice and `s`, a session of hers.
async fn insert_alices_session(conn: &mut sqlx::AnyConnection, s: &store::sessions::SessionRecord) {
    store::users::upsert(w(conn), &user("alice", &[]))
        .await
        .unwrap();
    store::sessions::insert(w(conn), s, None).await.unwrap();
}

#[tokio::test]
async fn a_gateway_session_and_its_forwards_read_back_and_forwards_count_apart() {
    use portcullis_policy::SshMode;
    use store::sessions::{count_live_of_user, get, get_locked, live_children, terminate};
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let mut gateway = session(0);
        gateway.ssh_mode = SshMode::Gateway;
        insert_alices_session(&mut conn, &gateway).await;
        let mut forward = session(0);
        forward.id = "s_2".into();
        forward.parent_session_id = Some("s_1".into());
        forward.endpoint = "192.0.2.10:5432".into();
        store::sessions::insert(w(&mut conn), &forward, None)
            .await
            .unwrap();
        assert_eq!(
            get(&mut conn, "s_1").await.unwrap().unwrap(),
            gateway,
            "{}",
            b.name
        );
        assert_eq!(
            get(&mut conn, "s_2").await.unwrap().unwrap(),
            forward,
            "{}",
            b.name
        );
        assert_eq!(
            get_locked(w(&mut conn), "s_1").await.unwrap().as_ref(),
            Some(&gateway),
            "{}",
            b.name
        );
        assert_eq!(get_locked(w(&mut conn), "s_9").await.unwrap(), None);
        assert_eq!(live_children(&mut conn, "s_1").await.unwrap(), ["s_2"]);
        assert!(live_children(&mut conn, "s_2").await.unwrap().is_empty());
        // Forwards do not count against the user's live sessions.
        assert_eq!(
            count_live_of_user(&mut conn, "u_alice", 500).await.unwrap(),
            1
        );
        assert!(terminate(w(&mut conn), "s_2", EndReason::Canceled, 200)
            .await
            .unwrap());
        assert!(live_children(&mut conn, "s_1").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn sessions_admit_count_limit_and_terminate_once() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        insert_alices_session(&mut conn, &session(2)).await;
        use store::connections::{
            admit_first, connection_closed, connection_opened, FirstAdmission,
        };
        use store::sessions::{get, terminate};
        assert!(
            admit_first(w(&mut conn), "s_1", "w_2", "c_0", "127.0.0.1", 110)
                .await
                .unwrap()
                != FirstAdmission::Admitted,
            "wrong worker"
        );
        assert!(
            admit_first(w(&mut conn), "s_1", "w_1", "c_1", "127.0.0.1", 110)
                .await
                .unwrap()
                == FirstAdmission::Admitted
        );
        let s = get(&mut conn, "s_1").await.unwrap().unwrap();
        assert_eq!(
            (s.state.as_str(), s.connections_count, s.activated_at),
            ("active", 1, Some(110)),
            "{}",
            b.name
        );
        // The opened event of an admitted connection is not counted twice.
        assert!(
            !connection_opened(w(&mut conn), "s_1", "w_1", "c_1", "127.0.0.1", 111)
                .await
                .unwrap()
        );
        assert!(
            connection_opened(w(&mut conn), "s_1", "w_1", "c_2", "127.0.0.1", 112)
                .await
                .unwrap()
        );
        assert_eq!(
            get(&mut conn, "s_1")
                .await
                .unwrap()
                .unwrap()
                .connections_count,
            2
        );
        assert!(
            admit_first(w(&mut conn), "s_1", "w_1", "c_3", "127.0.0.1", 113)
                .await
                .unwrap()
                == FirstAdmission::Refused,
            "limit"
        );
        assert!(connection_closed(
            w(&mut conn),
            "s_1",
            "w_1",
            "c_1",
            10,
            20,
            EndReason::Closed,
            120
        )
        .await
        .unwrap());
        assert!(
            !connection_closed(
                w(&mut conn),
                "s_1",
                "w_1",
                "c_1",
                10,
                20,
                EndReason::Closed,
                121
            )
            .await
            .unwrap(),
            "idempotent"
        );
        let conns = store::connections::connections(&mut conn, "s_1")
            .await
            .unwrap();
        assert_eq!(
            (
                conns[0].bytes_up,
                conns[0].bytes_down,
                conns[0].state.as_str()
            ),
            (10, 20, "closed")
        );
        assert!(terminate(w(&mut conn), "s_1", EndReason::Canceled, 130)
            .await
            .unwrap());
        assert!(
            !terminate(w(&mut conn), "s_1", EndReason::Expired, 131)
                .await
                .unwrap(),
            "{}: terminated twice",
            b.name
        );
        let s = get(&mut conn, "s_1").await.unwrap().unwrap();
        assert_eq!(s.termination_reason, Some(EndReason::Canceled));
        assert!(
            admit_first(w(&mut conn), "s_1", "w_1", "c_4", "127.0.0.1", 140)
                .await
                .unwrap()
                == FirstAdmission::Refused,
            "ended"
        );
    }
}

/// `admit_first` of connection `connection` from 127.0.0.1.
async fn admit(
    conn: &mut sqlx::AnyConnection,
    session: &str,
    worker: &str,
    connection: &str,
    at: i64,
) -> store::connections::FirstAdmission {
    store::connections::admit_first(w(conn), session, worker, connection, "127.0.0.1", at)
        .await
        .unwrap()
}

/// A worker asks again for the admission of a first connection when its link dropped before
/// the answer came, and a controller that hung may still read the first copy: a repeat of an
/// admitted connection for the same session and worker is counted and recorded once, also at
/// the session's limit. An id of another session's connection is not taken over.
#[tokio::test]
async fn admitting_a_first_connection_again_counts_it_once() {
    for b in backends().await {
        let name = b.name;
        let mut conn = b.store.conn().await.unwrap();
        store::users::upsert(w(&mut conn), &user("alice", &[]))
            .await
            .unwrap();
        store::sessions::insert(w(&mut conn), &session(0), None)
            .await
            .unwrap();
        use store::connections::FirstAdmission;
        assert_eq!(
            admit(&mut conn, "s_1", "w_1", "c_1", 110).await,
            FirstAdmission::Admitted,
            "{name}"
        );
        assert_eq!(
            admit(&mut conn, "s_1", "w_1", "c_1", 111).await,
            FirstAdmission::Repeated { live: true },
            "{name}"
        );
        let s = store::sessions::get(&mut conn, "s_1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.connections_count, s.activated_at),
            (1, Some(110)),
            "{name}: a repeat counted again"
        );
        let conns = store::connections::connections(&mut conn, "s_1")
            .await
            .unwrap();
        assert_eq!(conns.len(), 1, "{name}");
        assert_eq!(
            (conns[0].id.as_str(), conns[0].opened_at),
            ("c_1", 110),
            "{name}"
        );

        // At the session's limit, the repeat is still the connection admitted.
        let mut s2 = session(1);
        s2.id = "s_2".into();
        store::sessions::insert(w(&mut conn), &s2, None)
            .await
            .unwrap();
        assert_eq!(
            admit(&mut conn, "s_2", "w_1", "c_2", 110).await,
            FirstAdmission::Admitted
        );
        assert_eq!(
            admit(&mut conn, "s_2", "w_1", "c_2", 111).await,
            FirstAdmission::Repeated { live: true },
            "{name}"
        );
        // Another session or worker cannot claim the id; nothing is counted.
        assert_eq!(
            admit(&mut conn, "s_2", "w_1", "c_1", 112).await,
            FirstAdmission::IdInUse,
            "{name}"
        );
        assert_eq!(
            admit(&mut conn, "s_1", "w_2", "c_1", 112).await,
            FirstAdmission::IdInUse,
            "{name}"
        );
        // A repeat after the session ended is not live any more.
        assert!(
            store::sessions::terminate(w(&mut conn), "s_2", EndReason::Canceled, 113)
                .await
                .unwrap()
        );
        assert_eq!(
            admit(&mut conn, "s_2", "w_1", "c_2", 114).await,
            FirstAdmission::Repeated { live: false },
            "{name}"
        );
        for id in ["s_1", "s_2"] {
            let s = store::sessions::get(&mut conn, id).await.unwrap().unwrap();
            assert_eq!(s.connections_count, 1, "{name}: {id}");
        }
    }
}

#[tokio::test]
async fn due_sessions_are_found_by_expiry_and_pending_age() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        insert_alices_session(&mut conn, &session(0)).await;
        assert!(
            store::sessions::due(&mut conn, 500, 50)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
        assert_eq!(
            store::sessions::due(&mut conn, 500, 150)
                .await
                .unwrap()
                .len(),
            1,
            "pending too long"
        );
        assert_eq!(
            store::sessions::due(&mut conn, 1000, 0)
                .await
                .unwrap()
                .len(),
            1,
            "expired"
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

#[tokio::test]
async fn the_tls_ca_rotates_with_an_overlap_next_then_active_then_retired() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        let old = keys.certificate_authority().await.unwrap();
        let before = keys.ca_bundle().await.unwrap();
        assert_eq!(before.certificates.len(), 1, "{}", b.name);
        // Rotate: the new CA is trusted (in the bundle) but the old one still signs.
        let new_id = keys.rotate(Purpose::TlsCa).await.unwrap();
        let overlap = keys.ca_bundle().await.unwrap();
        assert_eq!(overlap.signing_key_id, old.key_id, "{}", b.name);
        assert_eq!(overlap.certificates.len(), 2);
        assert_eq!(overlap.certificates[0], before.certificates[0]);
        assert_ne!(overlap.digest(), before.digest());
        assert_eq!(
            keys.certificate_authority().await.unwrap().key_id,
            old.key_id
        );
        let again = keys.rotate(Purpose::TlsCa).await.unwrap_err().to_string();
        assert!(again.contains("keys activate"), "{again}");
        assert!(
            keys.retire(&new_id).await.is_err(),
            "a next CA is not retired"
        );
        // Activate: the new CA signs and leads the bundle; the old one stays in it.
        keys.activate(&new_id).await.unwrap();
        let active = keys.ca_bundle().await.unwrap();
        assert_eq!(active.signing_key_id, new_id);
        assert_eq!(active.certificates.len(), 2);
        assert_eq!(active.certificates[1], before.certificates[0]);
        assert_eq!(keys.certificate_authority().await.unwrap().key_id, new_id);
        assert!(keys.activate(&new_id).await.is_err(), "already active");
        assert!(keys.activate(&old.key_id).await.is_err(), "previous");
        // Retire the old CA: it leaves the bundle.
        keys.retire(&old.key_id).await.unwrap();
        let after = keys.ca_bundle().await.unwrap();
        assert_eq!(after.certificates, vec![active.certificates[0].clone()]);
        let mut conn = b.store.conn().await.unwrap();
        let events = store::audit::after(&mut conn, 0, 100).await.unwrap();
        for (kind, key) in [
            ("key_rotated", &new_id),
            ("key_activated", &new_id),
            ("key_retired", &old.key_id),
        ] {
            assert!(
                events
                    .iter()
                    .any(|(_, body)| body.contains(&format!("\"{kind}\""))
                        && body.contains(key.as_str())),
                "{}: no {kind} event for {key}",
                b.name
            );
        }
    }
}

#[tokio::test]
async fn keyset_rotation_keeps_previous_keys_until_retired() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        keys.ensure().await.unwrap(); // idempotent
        let first = keys.active(Purpose::Grant).await.unwrap();
        let second_id = keys.rotate(Purpose::Grant).await.unwrap();
        assert_ne!(first.id, second_id);
        assert_eq!(
            keys.active(Purpose::Grant).await.unwrap().id,
            second_id,
            "{}",
            b.name
        );
        let accepted: Vec<String> = keys
            .verification_keys(Purpose::Grant)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert!(
            accepted.contains(&first.id) && accepted.contains(&second_id),
            "{accepted:?}"
        );
        assert!(
            keys.retire(&second_id).await.is_err(),
            "the active key cannot be retired"
        );
        keys.retire(&first.id).await.unwrap();
        let accepted: Vec<String> = keys
            .verification_keys(Purpose::Grant)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(accepted, vec![second_id.clone()]);
        // A keyset sealed under one master key does not open under another.
        let other = Keyset::new(
            b.store.clone(),
            MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap(),
        );
        assert!(
            other.ensure().await.is_err(),
            "{}: wrong master key accepted",
            b.name
        );
        // Private keys are sealed: the stored bytes are not the PKCS#8 key.
        let active = keys.active(Purpose::Grant).await.unwrap();
        let mut conn = b.store.conn().await.unwrap();
        let rows = store::keys::usable(&mut conn, "grant").await.unwrap();
        assert_eq!(rows.len(), 1);
        let private = active.pkcs8.expose_secret();
        assert!(!rows[0]
            .sealed_private
            .windows(16)
            .any(|w| private.windows(16).any(|x| x == w)));
    }
}

#[tokio::test]
async fn a_keyset_made_before_the_ssh_host_ca_gets_one_at_its_next_start() {
    for b in backends().await {
        let master = MasterKey::generate_hex().unwrap();
        let keys = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        keys.ensure().await.unwrap();
        let host_ca = keys.active(Purpose::SshHostCa).await.unwrap();
        let user_ca = keys.active(Purpose::SshCa).await.unwrap();
        assert_ne!(host_ca.public_key, user_ca.public_key, "{}", b.name);
        // A store from before the purpose existed: no ssh-host-ca row.
        let mut conn = b.store.conn().await.unwrap();
        sqlx::query("DELETE FROM keys WHERE purpose = 'ssh-host-ca'")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        let restarted = Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap());
        assert!(
            restarted.active(Purpose::SshHostCa).await.is_err(),
            "{}",
            b.name
        );
        restarted.ensure().await.unwrap();
        let created = restarted.active(Purpose::SshHostCa).await.unwrap();
        assert_ne!(created.id, host_ca.id);
        // The other keys stay; the new one is created with its event.
        assert_eq!(
            restarted.active(Purpose::SshCa).await.unwrap().id,
            user_ca.id
        );
        let mut conn = b.store.conn().await.unwrap();
        let events = store::audit::after(&mut conn, 0, 100).await.unwrap();
        let created_events = events
            .iter()
            .filter(|(_, body)| body.contains("key_created") && body.contains(&created.id))
            .count();
        assert_eq!(created_events, 1, "{}", b.name);
        assert_eq!(Purpose::parse("ssh-host-ca"), Some(Purpose::SshHostCa));
    }
}

#[tokio::test]
async fn the_keyset_and_the_events_it_signs_read_the_clock_they_are_given() {
    use crate::clock::SharedClock;
    use portcullis_proto::clock::ManualClock;
    for b in backends().await {
        // 2001-09-09T01:46:40Z, then a minute later: far from the machine's own time.
        let clock = std::sync::Arc::new(ManualClock::at_unix(1_000_000_000));
        let shared: SharedClock = clock.clone();
        let master = MasterKey::generate_hex().unwrap();
        let keys =
            Keyset::new(b.store.clone(), MasterKey::from_hex(&master).unwrap()).with_clock(shared);
        keys.ensure().await.unwrap();
        clock.advance(std::time::Duration::from_secs(60));
        let rotated = keys.rotate(Purpose::Grant).await.unwrap();
        let mut conn = b.store.conn().await.unwrap();
        for key in store::keys::list(&mut conn).await.unwrap() {
            let expected = if key.id == rotated {
                1_000_000_060
            } else {
                1_000_000_000
            };
            assert_eq!(key.created_at, expected, "{}: key {}", b.name, key.purpose);
        }
        let events = store::audit::after(&mut conn, 0, 100).await.unwrap();
        let times: Vec<String> = events
            .iter()
            .map(|(_, body)| {
                let body: serde_json::Value = serde_json::from_str(body).unwrap();
                body["time"].as_str().unwrap().to_owned()
            })
            .collect();
        let (last, first) = times.split_last().unwrap();
        assert!(
            first.iter().all(|t| t == "2001-09-09T01:46:40.000Z"),
            "{}: {times:?}",
            b.name
        );
        assert_eq!(last, "2001-09-09T01:47:40.000Z", "{}", b.name);
    }
}

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
