//! The store suite for the console's session list (as `suite_tests.rs`: SQLite, and
//! PostgreSQL when the suite's cluster is there): one query returns the names, connection
//! count, bytes and decision of each row; the user, target, zone, state and time filters; the
//! keyset cursor.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use portcullis_proto::link::EndReason;

use super::sessions_suite_tests::{insert_alices_session, session};
use super::suite_tests::{backends, target, w};
use crate::store;
use crate::store::session_list::{page, Decided, ListQuery};
use crate::store::sessions::SessionState;

fn ids(listed: &[store::session_list::Listed]) -> Vec<&str> {
    listed.iter().map(|l| l.record.id.as_str()).collect()
}

#[tokio::test]
async fn a_page_carries_names_counts_bytes_and_the_decision_and_filters_by_zone_and_time() {
    for b in backends().await {
        let mut conn = b.store.conn().await.unwrap();
        store::targets::insert(w(&mut conn), &target("t_1", "web"))
            .await
            .unwrap();
        // s_1 (created 100, ended, no decision stored); s_2 (active: it has connections) and
        // s_3 (pending), both created 200 (ties go by id), from CORP to LOCAL.
        insert_alices_session(&mut conn, &session(0)).await;
        store::sessions::terminate(w(&mut conn), "s_1", EndReason::Closed, 150)
            .await
            .unwrap();
        for (id, zone) in [("s_2", "LOCAL"), ("s_3", "LOCAL")] {
            let mut s = session(0);
            s.id = id.into();
            s.created_at = 200;
            let decided = Decided {
                source_zone: Some("CORP".into()),
                target_zone: Some(zone.into()),
                roles: vec!["ops".into(), "dev".into()],
            };
            store::sessions::insert(w(&mut conn), &s, None, &decided)
                .await
                .unwrap();
        }
        for (n, up, down) in [("c_1", 10, 20), ("c_2", 300, 4000)] {
            store::connections::connection_closed(
                w(&mut conn),
                "s_2",
                "w_1",
                n,
                up,
                down,
                EndReason::Closed,
                210,
            )
            .await
            .unwrap();
        }

        let all = page(
            &mut conn,
            &ListQuery {
                limit: 10,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(ids(&all), ["s_2", "s_3", "s_1"], "{}", b.name);
        let s2 = &all[0];
        assert_eq!(
            (s2.username.as_str(), s2.target_name.as_str()),
            ("alice", "web"),
            "{}",
            b.name
        );
        assert_eq!((s2.connection_count, s2.bytes), (2, 4330), "{}", b.name);
        assert_eq!(
            s2.decided.target_zone.as_deref(),
            Some("LOCAL"),
            "{}",
            b.name
        );
        assert_eq!(s2.decided.roles, ["ops", "dev"], "{}", b.name);
        assert_eq!(
            (all[2].connection_count, all[2].bytes),
            (0, 0),
            "{}",
            b.name
        );
        assert_eq!(
            all[2].decided,
            Decided::default(),
            "not recorded: {}",
            b.name
        );

        let q = |f: fn(&mut ListQuery<'static>)| {
            let mut q = ListQuery {
                limit: 10,
                ..ListQuery::default()
            };
            f(&mut q);
            q
        };
        for (query, want) in [
            (q(|q| q.zone = Some("LOCAL")), vec!["s_2", "s_3"]),
            (q(|q| q.zone = Some("CORP")), vec!["s_2", "s_3"]),
            (q(|q| q.zone = Some("DMZ")), vec![]),
            (q(|q| q.since = Some(200)), vec!["s_2", "s_3"]),
            (q(|q| q.until = Some(200)), vec!["s_1"]),
            (q(|q| q.after = Some((200, "s_2"))), vec!["s_3", "s_1"]),
            (q(|q| q.after = Some((200, "s_3"))), vec!["s_1"]),
            (q(|q| q.target = Some("web")), vec!["s_2", "s_3", "s_1"]),
            (q(|q| q.target = Some("t_1")), vec!["s_2", "s_3", "s_1"]),
            (q(|q| q.target = Some("t_2")), vec![]),
            (q(|q| q.state = Some(SessionState::Pending)), vec!["s_3"]),
            (q(|q| q.state = Some(SessionState::Active)), vec!["s_2"]),
            (q(|q| q.state = Some(SessionState::Terminated)), vec!["s_1"]),
            (q(|q| q.username = Some("bob")), vec![]),
            (q(|q| q.live_only = true), vec!["s_2", "s_3"]),
            (q(|q| q.limit = 1), vec!["s_2"]),
        ] {
            let got = page(&mut conn, &query).await.unwrap();
            assert_eq!(ids(&got), want, "{query:?} on {}", b.name);
        }
    }
}
