//! The store suite for access requests (as `suite_tests.rs`), on SQLite and, when the suite's
//! PostgreSQL is there, PostgreSQL: states change once (conditional updates), approvals are
//! distinct, due and lost runs are found, sessions hang on their request.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use portcullis_proto::access::RequestState;

use super::access_requests::{self as rows, AccessRecord, ApprovalRecord, ListFilter, RunRecord};
use super::suite_tests::{backends, user, w};
use crate::store;

fn request(id: &str, user_id: &str, role: &str, run: bool) -> AccessRecord {
    AccessRecord {
        id: id.into(),
        user_id: user_id.into(),
        role: role.into(),
        targets: vec!["web-1".into()],
        zone: None,
        state: RequestState::Pending,
        reason: Some("deploy".into()),
        break_glass: false,
        duration_secs: 600,
        created_at: 100,
        approved_at: None,
        expires_at: 1_000,
        approvals_needed: 2,
        decided_by: None,
        decision_reason: None,
        run: run.then(|| RunRecord {
            command: vec!["ansible-playbook".into(), "site.yml".into()],
            ..RunRecord::default()
        }),
    }
}

#[tokio::test]
async fn requests_change_state_once_and_list_by_who_may_see_them() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        let ada = store::users::upsert(w(&mut conn), &user("ada", &["dev"]))
            .await
            .unwrap();
        let bob = store::users::upsert(w(&mut conn), &user("bob", &["dev"]))
            .await
            .unwrap();
        rows::insert(w(&mut conn), &request("ar_1", &ada.id, "web", false))
            .await
            .unwrap();
        rows::insert(w(&mut conn), &request("ar_2", &bob.id, "db", true))
            .await
            .unwrap();
        let back = rows::get(&mut conn, "ar_1").await.unwrap().unwrap();
        assert_eq!(back, request("ar_1", &ada.id, "web", false), "{}", b.name);
        let with_run = rows::get(&mut conn, "ar_2").await.unwrap().unwrap();
        assert_eq!(with_run.run.unwrap().command[1], "site.yml");

        // Approvals are distinct per user.
        let approval = ApprovalRecord {
            request_id: "ar_1".into(),
            user_id: bob.id.clone(),
            at: 110,
            reason: None,
        };
        rows::add_approval(w(&mut conn), &approval).await.unwrap();
        let twice = rows::add_approval(w(&mut conn), &approval).await;
        assert!(
            matches!(twice, Err(store::StoreError::Conflict(_))),
            "{twice:?}"
        );
        assert!(rows::set_needed(w(&mut conn), "ar_1", 1).await.unwrap());
        assert_eq!(rows::approvals(&mut conn, "ar_1").await.unwrap().len(), 1);

        // Approved once; a second approval or a late deny loses.
        assert!(rows::approve(w(&mut conn), "ar_1", 120, 720).await.unwrap());
        assert!(!rows::approve(w(&mut conn), "ar_1", 121, 721).await.unwrap());
        let pending = [RequestState::Pending];
        assert!(!rows::close(
            w(&mut conn),
            "ar_1",
            &pending,
            RequestState::Denied,
            None,
            None
        )
        .await
        .unwrap());
        let approved = rows::approved_of_user(&mut conn, &ada.id, 700)
            .await
            .unwrap();
        assert_eq!(approved.len(), 1);
        assert!(rows::approved_of_user(&mut conn, &ada.id, 720)
            .await
            .unwrap()
            .is_empty());

        // Listing: a user's own, an approver's roles plus their own, by state.
        let own = ListFilter {
            user_id: Some(&ada.id),
            limit: 100,
            ..ListFilter::default()
        };
        assert_eq!(rows::list(&mut conn, &own).await.unwrap().len(), 1);
        let roles = vec!["db".to_owned()];
        let approver = ListFilter {
            roles: Some(&roles),
            or_user: Some(&ada.id),
            limit: 100,
            ..ListFilter::default()
        };
        let seen: Vec<String> = rows::list(&mut conn, &approver)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(seen, ["ar_2", "ar_1"], "{}", b.name);
        let pending_only = ListFilter {
            state: Some(RequestState::Pending),
            limit: 100,
            ..ListFilter::default()
        };
        assert_eq!(
            rows::list(&mut conn, &pending_only).await.unwrap()[0].id,
            "ar_2"
        );

        // Due: the pending one past its deadline, the approved one past its window.
        let due: Vec<String> = rows::due(&mut conn, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(due, ["ar_1", "ar_2"], "{}", b.name);

        // Runs: start once, keepalive, lost after 3 x keepalive, finish once.
        assert!(
            !rows::start_run(w(&mut conn), "ar_2", "KEY", 10, 130)
                .await
                .unwrap(),
            "pending"
        );
        assert!(rows::approve(w(&mut conn), "ar_2", 125, 725).await.unwrap());
        assert!(rows::start_run(w(&mut conn), "ar_2", "KEY", 10, 130)
            .await
            .unwrap());
        assert!(!rows::start_run(w(&mut conn), "ar_2", "KEY2", 10, 131)
            .await
            .unwrap());
        assert!(rows::keepalive(&mut conn, "ar_2", 140).await.unwrap());
        assert!(rows::lost_runs(&mut conn, 170).await.unwrap().is_empty());
        assert_eq!(rows::lost_runs(&mut conn, 171).await.unwrap().len(), 1);
        assert!(
            rows::finish_run(w(&mut conn), "ar_2", Some(0), "exited", 150)
                .await
                .unwrap()
        );
        assert!(
            !rows::finish_run(w(&mut conn), "ar_2", Some(1), "exited", 151)
                .await
                .unwrap()
        );
        assert!(!rows::keepalive(&mut conn, "ar_2", 152).await.unwrap());
        let run = rows::get(&mut conn, "ar_2")
            .await
            .unwrap()
            .unwrap()
            .run
            .unwrap();
        assert_eq!(
            (run.exit_status, run.outcome.as_deref()),
            (Some(0), Some("exited"))
        );

        // Revoked from approved, once.
        let open = [RequestState::Pending, RequestState::Approved];
        assert!(rows::close(
            w(&mut conn),
            "ar_2",
            &open,
            RequestState::Revoked,
            Some(&bob.id),
            Some("done")
        )
        .await
        .unwrap());
        assert!(!rows::close(
            w(&mut conn),
            "ar_2",
            &open,
            RequestState::Expired,
            None,
            None
        )
        .await
        .unwrap());
        let revoked = rows::get(&mut conn, "ar_2").await.unwrap().unwrap();
        assert_eq!(revoked.state, RequestState::Revoked);
        assert_eq!(revoked.decision_reason.as_deref(), Some("done"));
    }
}

#[tokio::test]
async fn sessions_hang_on_the_request_they_were_opened_under() {
    use super::sessions_suite_tests::{insert_alices_session, session};
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        insert_alices_session(&mut conn, &session(0)).await;
        let alice = session(0).user_id;
        rows::insert(w(&mut conn), &request("ar_1", &alice, "web", false))
            .await
            .unwrap();
        assert!(rows::sessions(&mut conn, "ar_1").await.unwrap().is_empty());
        // Pending: no session hangs on it.
        assert!(!rows::attach_session(w(&mut conn), "s_1", "ar_1", 150)
            .await
            .unwrap());
        assert!(rows::approve(w(&mut conn), "ar_1", 120, 720).await.unwrap());
        assert!(
            !rows::attach_session(w(&mut conn), "s_1", "ar_1", 720)
                .await
                .unwrap(),
            "expired"
        );
        assert!(rows::attach_session(w(&mut conn), "s_1", "ar_1", 150)
            .await
            .unwrap());
        let role = rows::granted_role_of_session(&mut conn, "s_1", 150)
            .await
            .unwrap();
        assert_eq!(role.as_deref(), Some("web"), "{}", b.name);
        let late = rows::granted_role_of_session(&mut conn, "s_1", 720)
            .await
            .unwrap();
        assert_eq!(late, None, "the window is over");
        assert!(rows::stranded_sessions(&mut conn, 150)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            rows::stranded_sessions(&mut conn, 720).await.unwrap(),
            ["s_1"]
        );
        assert_eq!(
            rows::sessions(&mut conn, "ar_1").await.unwrap(),
            ["s_1"],
            "{}",
            b.name
        );
        assert_eq!(
            rows::live_sessions(&mut conn, "ar_1").await.unwrap(),
            ["s_1"]
        );
        let canceled = portcullis_proto::link::EndReason::Canceled;
        store::sessions::terminate(w(&mut conn), "s_1", canceled, 200)
            .await
            .unwrap();
        assert!(rows::live_sessions(&mut conn, "ar_1")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(rows::sessions(&mut conn, "ar_1").await.unwrap(), ["s_1"]);
    }
}
