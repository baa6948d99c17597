//! The sessions page's query string, without I/O: its filters (user, target, zone, state,
//! time) as typed, what they select, the link to the next page, and a listed session as the
//! page's row.

use std::collections::BTreeMap;

use portcullis_proto::api::Session;

use super::pages::{Filters, SessionRow};
use crate::clock;
use crate::store::session_list::Listed;
use crate::store::sessions::SessionState;

/// What the filters select, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub live_only: bool,
    pub state: Option<SessionState>,
    /// Unix seconds, from `since`.
    pub since: Option<i64>,
    /// Unix seconds, from `until`.
    pub until: Option<i64>,
    /// The `after` cursor: the last row of the previous page, `created_at.id`.
    pub after: Option<(i64, String)>,
}

/// The filters of `q` as typed and what they select at `now`; a filter that means nothing
/// is an error message for the page (400).
pub(crate) fn parse(
    q: &BTreeMap<String, String>,
    now: u64,
) -> Result<(Filters, Selection), String> {
    let field = |name: &str| q.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    let filters = Filters {
        user: field("user"),
        target: field("target"),
        zone: field("zone"),
        state: field("state"),
        since: field("since"),
        until: field("until"),
    };
    let mut selection = Selection::default();
    match filters.state.as_str() {
        "" => {}
        "live" => selection.live_only = true,
        other => {
            selection.state = Some(other.parse::<SessionState>().map_err(|_| {
                format!(
                    "no session state {other:?}: choose live, minting, pending, active or \
                     terminated"
                )
            })?);
        }
    }
    selection.since = time(&filters.since, now, "since")?;
    selection.until = time(&filters.until, now, "until")?;
    if let Some(after) = q.get("after") {
        let cursor = after
            .split_once('.')
            .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)))
            .filter(|(_, id)| !id.is_empty())
            .ok_or("the page link's `after` is not a cursor: go back to the first page")?;
        selection.after = Some((cursor.0, cursor.1.to_owned()));
    }
    Ok((filters, selection))
}

/// A time filter: empty is none; an age before `now` (`90m`, `24h`, `7d`), or a UTC time as
/// RFC 3339 or as a `datetime-local` input sends it (`2026-11-23T08:00`).
fn time(text: &str, now: u64, name: &str) -> Result<Option<i64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    // `datetime-local` leaves the seconds out; RFC 3339 needs them.
    let full = if text.len() == 16 && text.as_bytes().get(13) == Some(&b':') {
        format!("{text}:00")
    } else {
        text.to_owned()
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(&full) {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{name} {text:?} is before 1970"))?
            .as_secs();
        return Ok(Some(clock::to_i64(secs)));
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        format!(
            "{name} {text:?} is neither an age (90m, 24h, 7d) nor a UTC time \
             (2026-11-23T08:00 or 2026-11-23T08:00:00Z)"
        )
    })?;
    Ok(Some(clock::to_i64(now.saturating_sub(age.as_secs()))))
}

/// The link to the page after the one that ended with `(created_at, id)`, with the same
/// filters.
pub(crate) fn next_link(filters: &Filters, created_at: i64, id: &str) -> String {
    let mut link = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("user", &filters.user),
        ("target", &filters.target),
        ("zone", &filters.zone),
        ("state", &filters.state),
        ("since", &filters.since),
        ("until", &filters.until),
    ] {
        if !value.is_empty() {
            link.append_pair(name, value);
        }
    }
    link.append_pair("after", &format!("{created_at}.{id}"));
    format!("/console/sessions?{}", link.finish())
}

/// A listed session as the page's row (the API's `Session` shape, without its connections:
/// the row shows their count and bytes).
pub(crate) fn row(listed: Listed, cancel: bool) -> SessionRow {
    let Listed {
        record: s,
        username,
        target_name,
        connection_count,
        bytes,
        decided,
    } = listed;
    let session = Session {
        id: s.id,
        user_id: s.user_id,
        username,
        target_id: s.target_id,
        target_name,
        worker_id: s.worker_id,
        state: s.state.to_string(),
        termination_reason: s.termination_reason.map(|r| r.to_string()),
        client_addr: s.client_addr,
        endpoint: s.endpoint,
        connection_limit: u32::try_from(s.connection_limit).unwrap_or(0),
        created_at: clock::to_u64(s.created_at),
        expires_at: clock::to_u64(s.expires_at),
        activated_at: s.activated_at.map(clock::to_u64),
        terminated_at: s.terminated_at.map(clock::to_u64),
        connection_count: u32::try_from(connection_count).unwrap_or(u32::MAX),
        connections: vec![],
    };
    SessionRow {
        session,
        bytes: u64::try_from(bytes).unwrap_or(0),
        cancel,
        decided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_900_000_000;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn times_are_ages_or_utc_times_as_a_datetime_local_input_sends_them() {
        let (_, s) = parse(&query(&[("since", "24h"), ("until", "90m")]), NOW).unwrap();
        assert_eq!(s.since, Some(1_900_000_000 - 86_400));
        assert_eq!(s.until, Some(1_900_000_000 - 5_400));
        let (f, s) = parse(
            &query(&[
                ("since", " 2030-03-17T17:46 "),
                ("until", "2030-03-17T17:46:40Z"),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(f.since, "2030-03-17T17:46", "kept as typed, trimmed");
        assert_eq!(s.since, Some(1_900_000_000 - 40));
        assert_eq!(s.until, Some(1_900_000_000));
        let err = parse(&query(&[("since", "yesterday")]), NOW).unwrap_err();
        assert!(err.contains("since \"yesterday\""), "{err}");
    }

    #[test]
    fn states_and_cursors_are_checked() {
        let (_, s) = parse(&query(&[("state", "live")]), NOW).unwrap();
        assert!(s.live_only && s.state.is_none());
        let (_, s) = parse(&query(&[("state", "terminated")]), NOW).unwrap();
        assert_eq!(s.state, Some(SessionState::Terminated));
        assert!(parse(&query(&[("state", "nonsense")]), NOW).is_err());
        let (_, s) = parse(&query(&[("after", "17.s_1.x")]), NOW).unwrap();
        assert_eq!(s.after, Some((17, "s_1.x".to_owned())));
        assert!(parse(&query(&[("after", "17.")]), NOW).is_err());
        assert!(parse(&query(&[("after", "x.s_1")]), NOW).is_err());
    }

    #[test]
    fn the_next_link_keeps_every_filter() {
        let (filters, _) = parse(
            &query(&[
                ("user", "a b"),
                ("zone", "DMZ"),
                ("since", "1h"),
                ("state", ""),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(
            next_link(&filters, 5, "s_&1"),
            "/console/sessions?user=a+b&zone=DMZ&since=1h&after=5.s_%261"
        );
    }
}
