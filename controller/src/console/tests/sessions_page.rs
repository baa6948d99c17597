//! The sessions page: the decision column, the zone and time filters, keyset pagination to a
//! deep page, and the sweep of console sessions past their timeouts.

use std::time::Duration;

use axum::http::StatusCode;

use super::{start, Console};
use crate::audit::{Actor, AuditEvent, Event};
use crate::Clock as _;

impl Console {
    /// `n` more sessions like `template`'s (same user and target, matrix cell and role),
    /// `created_at` going back one second per two sessions (so pages cut through ties),
    /// committed in one audited transaction; their ids, newest first as the page lists them.
    async fn copies_of(&self, template: &str, n: usize) -> Vec<(i64, String)> {
        let state = &self.f.api.state;
        let mut conn = state.store.conn().await.unwrap();
        let base = crate::store::sessions::get(&mut conn, template)
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        let decided = crate::store::session_list::Decided {
            source_zone: Some("LOCAL".into()),
            target_zone: Some("LOCAL".into()),
            roles: vec!["user".into()],
        };
        let mut tx = state.begin_audited().await.unwrap();
        let mut made = Vec::new();
        for i in 0..n {
            let mut s = base.clone();
            s.id = format!("s_copy{i:04}");
            s.created_at = base.created_at - 10 - i64::try_from(i / 2).unwrap();
            crate::store::sessions::insert(tx.write(), &s, None, &decided)
                .await
                .unwrap();
            made.push((s.created_at, s.id));
        }
        tx.commit(AuditEvent::new(Actor::system(), Event::SessionActivated))
            .await
            .unwrap();
        made.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        made
    }

    async fn console_rows(&self) -> i64 {
        let mut conn = self.f.api.state.store.conn().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM console_sessions")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        n
    }
}

/// The session ids a page lists (from its rows' Cancel forms or cells), in order.
fn listed_ids(body: &str, ids: &[(i64, String)]) -> Vec<String> {
    let mut found: Vec<(usize, String)> = ids
        .iter()
        .filter_map(|(_, id)| body.find(&format!("/{id}/")).map(|at| (at, id.clone())))
        .collect();
    found.sort();
    found.into_iter().map(|(_, id)| id).collect()
}

/// The page's `rel="next"` link, unescaped.
fn next_link(body: &str) -> Option<String> {
    let marker = "<a rel=\"next\" href=\"";
    let start = body.find(marker)? + marker.len();
    let len = body[start..].find('"')?;
    Some(body[start..start + len].replace("&amp;", "&"))
}

#[tokio::test]
async fn each_row_shows_the_matrix_cell_and_role_that_allowed_it_and_filters_by_zone_and_time() {
    let c = start().await;
    let session = c.live_session().await;
    let admin = c.user("ada", &["admins"]).await;
    let ada = c.login("ada", &admin).await;

    let page = c.get("/console/sessions", Some(&ada)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("<th>Decision</th>")
            && page.body.contains("LOCAL → LOCAL")
            && page.body.contains("role user"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<option value=\"LOCAL\">LOCAL</option>"),
        "the zone filter offers the policy's zones: {}",
        page.body
    );

    // The session was created a minute or so before now (the logins stepped the clock).
    let now = c.f.clock.unix_secs();
    let at = |secs: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .to_string()
    };
    let minute_later = at(now + 60);
    let local_later = &minute_later[..16]; // As a `datetime-local` input sends it.
    for (query, shown) in [
        ("?zone=LOCAL".to_owned(), true),
        ("?zone=DMZ".to_owned(), false),
        ("?since=1h".to_owned(), true),
        ("?until=1h".to_owned(), false),
        (format!("?since={local_later}"), false),
        (format!("?until={local_later}"), true),
        (format!("?zone=LOCAL&since=1h&until={minute_later}"), true),
    ] {
        let page = c
            .get(&format!("/console/sessions{query}"), Some(&ada))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        assert_eq!(
            page.body.contains(&format!("/{session}/cancel")),
            shown,
            "{query}: {}",
            page.body
        );
    }
    let bad = c.get("/console/sessions?since=soon", Some(&ada)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("neither an age"), "{}", bad.body);
}

#[tokio::test]
async fn pages_follow_each_other_to_a_deep_page_without_gaps_or_repeats() {
    let c = start().await;
    let template = c.live_session().await;
    let ids = c.copies_of(&template, 130).await;
    let admin = c.user("ada", &["admins"]).await;
    let ada = c.login("ada", &admin).await;

    let mut seen = Vec::new();
    let mut link = "/console/sessions?zone=LOCAL&state=pending".to_owned();
    let mut pages = 0;
    loop {
        let page = c.get(&link, Some(&ada)).await;
        assert_eq!(page.status, StatusCode::OK, "{link}: {}", page.body);
        let on_page = listed_ids(&page.body, &ids);
        assert!(on_page.len() <= 50, "{link}: {} rows", on_page.len());
        seen.extend(on_page);
        pages += 1;
        match next_link(&page.body) {
            Some(next) => {
                assert!(next.contains("zone=LOCAL&state=pending&after="), "{next}");
                link = next;
            }
            None => break,
        }
    }
    let want: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
    assert_eq!(pages, 3, "130 copies and the template, 50 a page");
    assert_eq!(seen, want, "every copy once, newest first, ties by id");
}

#[tokio::test]
async fn the_sweep_deletes_console_sessions_past_their_idle_or_absolute_timeout() {
    let c = start().await;
    let ada_secret = c.user("ada", &["admins"]).await;
    let rita_secret = c.user("rita", &["reviewers"]).await;
    let ada = c.login("ada", &ada_secret).await;
    let rita = c.login("rita", &rita_secret).await;
    let sweep = || crate::sessions::sweeper::sweep_once(&c.f.api.state);

    // Rita keeps hers in use; Ada's idles past its 30 minutes.
    for _ in 0..2 {
        c.f.clock.advance(Duration::from_secs(20 * 60));
        let page = c.get("/console/sessions", Some(&rita)).await;
        assert_eq!(page.status, StatusCode::OK);
    }
    assert_eq!(
        c.console_rows().await,
        2,
        "nothing deletes them between sweeps"
    );
    sweep().await.unwrap();
    assert_eq!(c.console_rows().await, 1, "Ada's idle session is deleted");
    assert_eq!(
        c.get("/console/sessions", Some(&rita)).await.status,
        StatusCode::OK,
        "Rita's is kept"
    );
    assert_eq!(
        c.get("/console/sessions", Some(&ada)).await.status,
        StatusCode::SEE_OTHER
    );

    // In use, Rita's still ends at its absolute hour.
    c.f.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        c.get("/console/sessions", Some(&rita)).await.status,
        StatusCode::OK
    );
    sweep().await.unwrap();
    assert_eq!(c.console_rows().await, 1);
    c.f.clock.advance(Duration::from_secs(10 * 60));
    sweep().await.unwrap();
    assert_eq!(
        c.console_rows().await,
        0,
        "Rita's is past its absolute timeout"
    );
}
