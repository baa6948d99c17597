//! The store suite for sessions (as `suite_tests.rs`: SQLite, and PostgreSQL when the suite's
//! cluster is there): gateway sessions and their forwards, admission counts and limits, a
//! first connection admitted twice, and the sweeps' due sessions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use portcullis_proto::link::EndReason;

use super::suite_tests::{backends, user, w};
use crate::store;
use crate::store::sessions::SessionState;

pub(super) fn session(limit: i64) -> store::sessions::SessionRecord {
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
pub(super) async fn insert_alices_session(
    conn: &mut sqlx::AnyConnection,
    s: &store::sessions::SessionRecord,
) {
    store::users::upsert(w(conn), &user("alice", &[]))
        .await
        .unwrap();
    store::sessions::insert(w(conn), s, None, &Default::default())
        .await
        .unwrap();
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
        store::sessions::insert(w(&mut conn), &forward, None, &Default::default())
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
        store::sessions::insert(w(&mut conn), &session(0), None, &Default::default())
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
        store::sessions::insert(w(&mut conn), &s2, None, &Default::default())
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
