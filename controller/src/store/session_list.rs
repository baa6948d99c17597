//! The console's session list (issue 24; docs/console.md): a page of sessions with all its
//! table shows (user and target names, connections, bytes, the decision that allowed it) in
//! ONE query, keyset-paginated on `(created_at, id)` so that a deep page costs what the first
//! does. And the decision itself, stored on the session row with its authorisation.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::sessions::{from_row, SessionRecord, SessionState, COLUMNS};
use super::{from_json_list, Result};

/// The decision that allowed a session: the matrix cell (source zone → target zone) and the
/// roles that granted it. Empty for a session authorised before it was stored (migration
/// 0019) and for a direct flow, which no role grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decided {
    pub source_zone: Option<String>,
    pub target_zone: Option<String>,
    pub roles: Vec<String>,
}

impl Decided {
    pub(crate) fn of(decision: &portcullis_policy::Decision) -> Decided {
        Decided {
            source_zone: decision.source_zone.clone(),
            target_zone: decision.target_zone.clone(),
            roles: decision.roles.clone(),
        }
    }
}

/// Which sessions a page holds; every filter is optional.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery<'a> {
    /// Only this user's sessions (a caller without `sessions:read-all`).
    pub user_id: Option<&'a str>,
    /// Only sessions of the user with this user name.
    pub username: Option<&'a str>,
    /// Only sessions to the target with this name or id.
    pub target: Option<&'a str>,
    /// Only sessions whose decision's source or target zone is this one.
    pub zone: Option<&'a str>,
    /// Only sessions that have not ended.
    pub live_only: bool,
    pub state: Option<SessionState>,
    /// Only sessions created at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only sessions created before this time.
    pub until: Option<i64>,
    /// Only sessions after this one in the list's order (newest first): its
    /// `(created_at, id)`.
    pub after: Option<(i64, &'a str)>,
    pub limit: i64,
}

/// One session of a page, with what the console's table shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub record: SessionRecord,
    /// Empty when the user or target row is gone.
    pub username: String,
    pub target_name: String,
    pub connection_count: i64,
    /// Bytes both ways over all its connections.
    pub bytes: i64,
    pub decided: Decided,
}

/// The SQL of a page, its parameters numbered in the order [`page`] binds them.
fn sql(q: &ListQuery<'_>) -> String {
    let columns: Vec<String> = COLUMNS
        .split(',')
        .map(|c| format!("s.{}", c.trim()))
        .collect();
    let mut sql = format!(
        "SELECT {}, s.source_zone, s.target_zone, s.roles, \
         COALESCE(u.username, '') AS username, COALESCE(t.name, '') AS target_name, \
         (SELECT COUNT(*) FROM connections c WHERE c.session_id = s.id) AS connection_count, \
         (SELECT CAST(COALESCE(SUM(c.bytes_up + c.bytes_down), 0) AS BIGINT) FROM connections c \
          WHERE c.session_id = s.id) AS bytes \
         FROM sessions s LEFT JOIN users u ON u.id = s.user_id \
         LEFT JOIN targets t ON t.id = s.target_id WHERE 1 = 1",
        columns.join(", ")
    );
    let mut n = 0;
    let mut param = || {
        n += 1;
        format!("${n}")
    };
    if q.user_id.is_some() {
        sql.push_str(&format!(" AND s.user_id = {}", param()));
    }
    if q.username.is_some() {
        sql.push_str(&format!(
            " AND s.user_id IN (SELECT id FROM users WHERE username = {})",
            param()
        ));
    }
    if q.target.is_some() {
        // Names are unique: one id (the name's, else the text as an id), so the store seeks
        // the target's sessions in the page's order.
        let (name, id) = (param(), param());
        sql.push_str(&format!(
            " AND s.target_id = COALESCE((SELECT id FROM targets WHERE name = {name}), {id})"
        ));
    }
    if q.zone.is_some() {
        let (source, target) = (param(), param());
        sql.push_str(&format!(
            " AND (s.source_zone = {source} OR s.target_zone = {target})"
        ));
    }
    // Live sessions are few: this exact term lets SQLite read them from the partial index
    // `sessions_live`, already in the page's order.
    if q.live_only || q.state.is_some_and(SessionState::is_live) {
        sql.push_str(" AND s.state <> 'terminated'");
    }
    if q.state.is_some() {
        // Not through `sessions_state_expiry`, which would read every ended session and
        // sort them: `|| ''` keeps the page's order index in charge.
        sql.push_str(&format!(" AND s.state || '' = {}", param()));
    }
    if q.since.is_some() {
        sql.push_str(&format!(" AND s.created_at >= {}", param()));
    }
    if q.until.is_some() {
        sql.push_str(&format!(" AND s.created_at < {}", param()));
    }
    if q.after.is_some() {
        // The first bound alone lets the store seek the index to the page instead of reading
        // every newer row first.
        let (upto, before, same, id) = (param(), param(), param(), param());
        sql.push_str(&format!(
            " AND s.created_at <= {upto} AND (s.created_at < {before} OR \
             (s.created_at = {same} AND s.id > {id}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY s.created_at DESC, s.id LIMIT {}",
        param()
    ));
    sql
}

/// A page of sessions, newest first (`created_at` descending, then `id`), in one query.
pub(crate) async fn page(conn: &mut AnyConnection, q: &ListQuery<'_>) -> Result<Vec<Listed>> {
    let sql = sql(q);
    let mut query = sqlx::query(&sql);
    if let Some(user) = q.user_id {
        query = query.bind(user);
    }
    if let Some(username) = q.username {
        query = query.bind(username);
    }
    if let Some(target) = q.target {
        query = query.bind(target).bind(target);
    }
    if let Some(zone) = q.zone {
        query = query.bind(zone).bind(zone);
    }
    if let Some(state) = q.state {
        query = query.bind(state.as_str());
    }
    if let Some(since) = q.since {
        query = query.bind(since);
    }
    if let Some(until) = q.until {
        query = query.bind(until);
    }
    if let Some((created_at, id)) = q.after {
        query = query
            .bind(created_at)
            .bind(created_at)
            .bind(created_at)
            .bind(id);
    }
    let rows = query.bind(q.limit).fetch_all(conn).await?;
    rows.iter().map(listed).collect()
}

fn listed(row: &AnyRow) -> Result<Listed> {
    let roles: Option<String> = row.try_get("roles")?;
    Ok(Listed {
        record: from_row(row)?,
        username: row.try_get("username")?,
        target_name: row.try_get("target_name")?,
        connection_count: row.try_get("connection_count")?,
        bytes: row.try_get("bytes")?,
        decided: Decided {
            source_zone: row.try_get("source_zone")?,
            target_zone: row.try_get("target_zone")?,
            roles: roles
                .as_deref()
                .map(|text| from_json_list(text, "sessions.roles"))
                .transpose()?
                .unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_binds_its_parameters_in_order() {
        let q = ListQuery {
            user_id: Some("u"),
            username: Some("n"),
            target: Some("t"),
            zone: Some("z"),
            live_only: true,
            state: Some(SessionState::Active),
            since: Some(1),
            until: Some(2),
            after: Some((3, "s")),
            limit: 4,
        };
        let sql = sql(&q);
        for n in 1..=14 {
            assert!(sql.contains(&format!("${n}")), "${n} in {sql}");
        }
        assert!(!sql.contains("$15"), "{sql}");
        assert!(sql.ends_with("LIMIT $14"), "{sql}");
        let bare = super::sql(&ListQuery {
            limit: 1,
            ..ListQuery::default()
        });
        assert!(
            bare.ends_with("ORDER BY s.created_at DESC, s.id LIMIT $1"),
            "{bare}"
        );
    }
}
