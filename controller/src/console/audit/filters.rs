//! The Audit page's filters: `portcullis audit list`'s (session, user, target, type,
//! decision, since, until), from and back to a query string. Pure.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use crate::console::error::ConsoleError;
use crate::store::audit::Filter;

/// The filters as the form gave them (shown back in the form and kept in the page links).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Filters {
    pub session: String,
    pub user: String,
    pub target: String,
    pub kind: String,
    pub decision: String,
    /// RFC 3339 or an age before now (`90m`, `24h`), as `audit list --since`.
    pub since: String,
    pub until: String,
    /// The page: events below this sequence number.
    pub before: Option<u64>,
}

/// The query names, in the form's order (`type` is the event type).
const NAMES: [&str; 7] = [
    "session", "user", "target", "type", "decision", "since", "until",
];

impl Filters {
    /// From a query string; unknown names are ignored, values trimmed.
    pub(crate) fn parse(query: &str) -> Filters {
        let q: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let field = |name: &str| q.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
        Filters {
            session: field("session"),
            user: field("user"),
            target: field("target"),
            kind: field("type"),
            decision: field("decision"),
            since: field("since"),
            until: field("until"),
            before: q.get("before").and_then(|b| b.trim().parse().ok()),
        }
    }

    fn values(&self) -> [&str; 7] {
        [
            &self.session,
            &self.user,
            &self.target,
            &self.kind,
            &self.decision,
            &self.since,
            &self.until,
        ]
    }

    /// `path` with these filters (and `before`, for a page link) as its query.
    pub(crate) fn link(&self, path: &str, before: Option<u64>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in NAMES.iter().zip(self.values()) {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        if let Some(before) = before {
            query.append_pair("before", &before.to_string());
        }
        let query = query.finish();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }

    /// The store's filter; a time or decision that does not parse is a 400 saying so.
    pub(crate) fn to_filter(&self, now: u64) -> Result<Filter, ConsoleError> {
        let decision = match self.decision.as_str() {
            "" | "allow" | "deny" => self.decision.clone(),
            other => {
                return Err(bad(format!(
                    "no decision {other:?}: choose allow, deny or any"
                )))
            }
        };
        let time = |name: &str, text: &str| {
            if text.is_empty() {
                return Ok(None);
            }
            parse_time(text, now)
                .map(Some)
                .map_err(|why| bad(format!("{name}: {why}")))
        };
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(Filter {
            before: self.before,
            session: some(&self.session),
            user: some(&self.user),
            target: some(&self.target),
            kind: some(&self.kind),
            decision: some(&decision),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }
}

fn bad(message: String) -> ConsoleError {
    ConsoleError::Page {
        status: StatusCode::BAD_REQUEST,
        message,
        denied: None,
    }
}

/// RFC 3339 or an age before `now`, as unix seconds (the forms of `audit list --since`).
fn parse_time(text: &str, now: u64) -> Result<i64, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{text:?} is before 1970"))?
            .as_secs();
        return i64::try_from(secs).map_err(|_| format!("{text:?} is out of range"));
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-11-23T08:00:00Z) nor an age (90m, 24h)")
    })?;
    i64::try_from(now.saturating_sub(age.as_secs()))
        .map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn filters_round_trip_through_the_query_and_become_the_store_filter() {
        let f = Filters::parse(
            "user=a+b%26c&type=session_denied&decision=deny&since=1h&until=2026-11-23T08:00:00Z\
             &before=42&junk=1",
        );
        assert_eq!(f.user, "a b&c");
        assert_eq!(f.before, Some(42));
        assert_eq!(
            f.link("/console/audit", Some(7)),
            "/console/audit?user=a+b%26c&type=session_denied&decision=deny&since=1h\
             &until=2026-11-23T08%3A00%3A00Z&before=7"
        );
        let filter = f.to_filter(10_000).unwrap();
        assert_eq!(filter.user.as_deref(), Some("a b&c"));
        assert_eq!(filter.kind.as_deref(), Some("session_denied"));
        assert_eq!(filter.since, Some(10_000 - 3600));
        assert_eq!(filter.until, Some(1_795_420_800));
        assert_eq!(filter.session, None);
        assert_eq!(
            Filters::parse("").link("/console/audit", None),
            "/console/audit"
        );
    }

    #[test]
    fn a_bad_time_or_decision_is_refused_saying_what_is_accepted() {
        for query in ["since=yesterday", "decision=maybe"] {
            match Filters::parse(query).to_filter(0) {
                Err(ConsoleError::Page {
                    status, message, ..
                }) => {
                    assert_eq!(status, StatusCode::BAD_REQUEST);
                    assert!(
                        message.contains("RFC 3339") || message.contains("allow, deny"),
                        "{message}"
                    );
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
