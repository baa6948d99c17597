//! `GET /v1/audit`: the audit log, newest first, filtered; `GET /v1/audit/export`: the
//! chain oldest first with the audit public keys, for `portcullis audit verify|export`.
//! Both only for holders of `audit:read`.
//!
//! The filters run on the index columns stored beside each event, which are not signed. So
//! that an edited column cannot slip an event into a filter's answer, `GET /v1/audit` checks
//! each event it found (hash, signature, and its columns against the signed body) and
//! applies the filter again to the body; what fails is left out and named under `excluded`.
//! An edited column that hides an event from a filter is found by `audit verify`, which
//! checks every column of every event (the export carries them under `columns`).

use axum::extract::{Query, State};
use axum::Json;
use portcullis_policy::Permission;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::Principal;
use crate::audit::chain::{self, IndexColumns, KeyRing};
use crate::audit::verify::{ExportHeader, Head, EXPORT_FORMAT};
use crate::state::AppState;
use crate::store::audit as rows;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Return events with a sequence number below this (for paging backwards).
    before: Option<i64>,
    limit: Option<i64>,
    session: Option<String>,
    #[serde(rename = "type", alias = "kind")]
    kind: Option<String>,
    /// A user id or user name.
    user: Option<String>,
    /// A target id.
    target: Option<String>,
    /// `allow` or `deny`.
    decision: Option<String>,
    /// Unix seconds, inclusive.
    since: Option<i64>,
    until: Option<i64>,
    /// An access request (a run's): its events and those of the sessions under it, oldest
    /// first; no other filter applies.
    run: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// Events with a sequence above this (0: from the start).
    after: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/audit/export?after=SEQ&limit=N`: a page of the chain, oldest first, with the
/// header (public keys, the store's head) a verifier needs.
pub(crate) async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ExportQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 5000);
    let keys = state.keys.audit_public_keys().await?;
    let mut conn = state.store.conn().await?;
    // The head first: events read afterwards reach at least as far.
    let head = rows::head(&mut conn).await?;
    let events = rows::after_stored(&mut conn, q.after.unwrap_or(0), limit).await?;
    drop(conn);
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        version: 1,
        exported_at: humantime::format_rfc3339_millis(state.clock.now()).to_string(),
        head: Some(Head {
            sequence: head.sequence,
            hash: head.hash,
        }),
        keys,
    };
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.columns.seq))
        .flatten();
    let items: Vec<serde_json::Value> = events
        .iter()
        .map(|e| parse_body(e.columns.seq, &e.body))
        .collect();
    let columns: Vec<&IndexColumns> = events.iter().map(|e| &e.columns).collect();
    Ok(Json(serde_json::json!({
        "header": header,
        "events": items,
        "columns": columns,
        "next_after": next_after,
    })))
}

/// A stored body as JSON; a body that is not JSON (tampering) is passed on as a string so
/// the verifier names it instead of the API hiding it.
pub(crate) fn parse_body(seq: u64, body: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut event) => {
            // Events from before the chain carry no sequence of their own.
            if let Some(map) = event.as_object_mut() {
                map.entry("sequence").or_insert(seq.into());
            }
            event
        }
        Err(_) => serde_json::json!({"sequence": seq, "unparsable_body": body}),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if let Some(run) = &q.run {
        return of_request(&state, run).await.map(Json);
    }
    let filter = rows::Filter {
        before: q.before.and_then(|b| u64::try_from(b).ok()),
        session: q.session,
        user: q.user,
        target: q.target,
        kind: q.kind,
        decision: q.decision,
        since: q.since,
        until: q.until,
    };
    let found = search(&state, &filter, u32::try_from(limit).unwrap_or(100)).await?;
    let excluded: Vec<serde_json::Value> = found
        .excluded
        .iter()
        .map(|(seq, problem)| serde_json::json!({"sequence": seq, "problem": problem}))
        .collect();
    Ok(Json(
        serde_json::json!({"items": found.items, "excluded": excluded, "next_before": found.next_before}),
    ))
}

/// One page of [`search`].
#[derive(Debug)]
pub(crate) struct Found {
    /// The events that passed their check, newest first, each with its sequence.
    pub items: Vec<serde_json::Value>,
    /// The sequence and the problem of each event the index found but whose check failed
    /// (its body or its columns were edited): left out, as `audit verify` would name them.
    pub excluded: Vec<(u64, String)>,
    /// The `before` of the next page, when this one was full.
    pub next_before: Option<u64>,
}

/// The audit log's search, newest first, at most `limit` events below `filter.before`: the
/// one query behind `GET /v1/audit` and the console's Audit page. Each event the stored
/// columns found is checked (hash, signature, columns against the signed body, the filter
/// on the body); what fails is left out and named in [`Found::excluded`]. The caller has
/// checked `audit:read`.
pub(crate) async fn search(
    state: &AppState,
    filter: &rows::Filter,
    limit: u32,
) -> Result<Found, ApiError> {
    let keys = KeyRing::new(&state.keys.audit_public_keys().await?);
    let mut conn = state.store.conn().await?;
    let rows = rows::list(&mut conn, filter, limit).await?;
    drop(conn);
    let next_before = (rows.len() == usize::try_from(limit).unwrap_or(0))
        .then(|| rows.last().map(|e| e.columns.seq))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    let mut excluded = Vec::new();
    for row in rows {
        let event = parse_body(row.columns.seq, &row.body);
        match check_listed(&event, &row.columns, filter, &keys) {
            Ok(()) => items.push(event),
            Err(problem) => {
                tracing::warn!(
                    audit.seq = row.columns.seq,
                    problem,
                    "an audit event failed its check while listing; run `portcullis audit verify`"
                );
                excluded.push((row.columns.seq, problem));
            }
        }
    }
    Ok(Found {
        items,
        excluded,
        next_before,
    })
}

/// Whether a listed event may be shown: its body is sealed by an audit key, its stored
/// columns are the ones its body implies, and the body itself passes the filter. Events
/// from before the chain (no hash) can be checked for nothing and are shown as before;
/// `audit verify` refuses an unhashed event after the chain began.
fn check_listed(
    event: &serde_json::Value,
    stored: &IndexColumns,
    filter: &rows::Filter,
    keys: &KeyRing,
) -> Result<(), String> {
    let map = event
        .as_object()
        .filter(|m| !m.contains_key("unparsable_body"))
        .ok_or("its body is not a JSON object")?;
    let Some(hash) = map.get("hash").and_then(serde_json::Value::as_str) else {
        return Ok(());
    };
    let key_id = map.get("key_id").and_then(serde_json::Value::as_str);
    let signature = map.get("signature").and_then(serde_json::Value::as_str);
    if chain::event_hash(map).map_err(|e| e.to_string())? != hash {
        return Err("its body does not match its hash: it was edited".into());
    }
    let signed = matches!((key_id, signature), (Some(k), Some(s)) if keys.verify_event(k, hash, s));
    if !signed {
        return Err("its signature does not verify".into());
    }
    let body = IndexColumns::of(map)?;
    if let Some(column) = stored.first_difference(&body) {
        return Err(format!(
            "its stored column `{column}` does not match its signed body"
        ));
    }
    if !filter.matches(&body) {
        return Err("its signed body does not match the filter".into());
    }
    Ok(())
}

/// The event types that name an access request in `details.request_id`.
const REQUEST_KINDS: &[&str] = &[
    "access_requested",
    "access_approved",
    "access_denied",
    "access_revoked",
    "access_expired",
    "break_glass",
    "run_started",
    "run_finished",
];

/// At most this many events of one type, or of one session, in [`of_request`]'s answer.
const PER_QUERY: u32 = 1000;

/// `GET /v1/audit?run=ID`: the request's own events and the events of every session opened
/// under it, oldest first, each checked as [`search`] checks it.
async fn of_request(state: &AppState, id: &str) -> Result<serde_json::Value, ApiError> {
    let (request, sessions) = {
        let mut conn = state.store.conn().await?;
        let request = crate::store::access_requests::get(&mut conn, id)
            .await?
            .ok_or_else(|| ApiError::not_found("access request", id))?;
        let sessions = crate::store::access_requests::sessions(&mut conn, id).await?;
        (request, sessions)
    };
    let mut items = Vec::new();
    let mut excluded = Vec::new();
    let mut add = |found: Found, only_request: bool| {
        for event in found.items {
            let names = event
                .pointer("/details/request_id")
                .and_then(serde_json::Value::as_str)
                == Some(id);
            if !only_request || names {
                items.push(event);
            }
        }
        excluded.extend(found.excluded);
    };
    for kind in REQUEST_KINDS {
        let filter = rows::Filter {
            kind: Some((*kind).to_owned()),
            since: Some(request.created_at),
            ..rows::Filter::default()
        };
        add(search(state, &filter, PER_QUERY).await?, true);
    }
    for session in &sessions {
        let filter = rows::Filter {
            session: Some(session.clone()),
            ..rows::Filter::default()
        };
        add(search(state, &filter, PER_QUERY).await?, false);
    }
    let sequence = |e: &serde_json::Value| e.get("sequence").and_then(serde_json::Value::as_u64);
    items.sort_by_key(|e| sequence(e));
    items.dedup_by_key(|e| sequence(e));
    let excluded: Vec<serde_json::Value> = excluded
        .iter()
        .map(|(seq, problem)| serde_json::json!({"sequence": seq, "problem": problem}))
        .collect();
    Ok(serde_json::json!({
        "items": items,
        "excluded": excluded,
        "next_before": null,
        "request": id,
        "sessions": sessions,
    }))
}
