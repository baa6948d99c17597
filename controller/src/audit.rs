//! The audit hook: every state-changing action records its event through [`record`], inside
//! the same database transaction as the change, so the event and the change commit or fail
//! together.
//!
//! Invariant: no secret is ever put into an event. Events carry identifiers (session, token
//! and key ids, fingerprints), never tokens, keys or certificates.

use serde::Serialize;
use sqlx::AnyConnection;

use crate::ids::{new_id, IdKind};
use crate::store::StoreError;

/// Who did something.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub groups: Vec<String>,
    /// The client's address as the controller saw it, or `worker:<id>` for worker reports.
    pub source: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            user_id: None,
            username: Some("system".into()),
            groups: vec![],
            source: None,
        }
    }

    pub fn worker(worker_id: &str) -> Actor {
        Actor {
            user_id: None,
            username: None,
            groups: vec![],
            source: Some(format!("worker:{worker_id}")),
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub actor: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// `allow` or `deny` for decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(kind: &'static str, actor: Actor) -> AuditEvent {
        AuditEvent {
            kind,
            actor,
            session_id: None,
            target_id: None,
            decision: None,
            reason: None,
            policy_hash: None,
            details: serde_json::Value::Null,
        }
    }

    pub fn session(mut self, id: &str) -> Self {
        self.session_id = Some(id.to_owned());
        self
    }

    pub fn target(mut self, id: &str) -> Self {
        self.target_id = Some(id.to_owned());
        self
    }

    pub fn decision(mut self, decision: &'static str, reason: impl Into<String>) -> Self {
        self.decision = Some(decision);
        self.reason = Some(reason.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn policy_hash(mut self, hash: &str) -> Self {
        self.policy_hash = Some(hash.to_owned());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Event types, past tense.
pub mod kind {
    pub const LOGIN_SUCCEEDED: &str = "login_succeeded";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const TOKEN_REJECTED: &str = "token_rejected";
    pub const SESSION_AUTHORIZED: &str = "session_authorized";
    pub const SESSION_DENIED: &str = "session_denied";
    pub const SESSION_ACTIVATED: &str = "session_activated";
    pub const SESSION_TERMINATED: &str = "session_terminated";
    pub const CONNECTION_OPENED: &str = "connection_opened";
    pub const CONNECTION_CLOSED: &str = "connection_closed";
    pub const CONNECTION_REFUSED: &str = "connection_refused";
    pub const TARGET_CREATED: &str = "target_created";
    pub const TARGET_UPDATED: &str = "target_updated";
    pub const TARGET_DELETED: &str = "target_deleted";
    pub const WORKER_JOIN_TOKEN_CREATED: &str = "worker_join_token_created";
    pub const WORKER_JOINED: &str = "worker_joined";
    pub const WORKER_JOIN_FAILED: &str = "worker_join_failed";
    pub const WORKER_DELETED: &str = "worker_deleted";
    pub const WORKER_CERT_RENEWED: &str = "worker_certificate_renewed";
    pub const KEY_CREATED: &str = "key_created";
    pub const KEY_ROTATED: &str = "key_rotated";
    pub const KEY_RETIRED: &str = "key_retired";
    pub const PERMISSION_DENIED: &str = "permission_denied";
}

/// Appends `event` within the caller's transaction.
pub async fn record(conn: &mut AnyConnection, event: AuditEvent) -> Result<(), StoreError> {
    let id = new_id(IdKind::Event);
    let time = crate::clock::to_i64(crate::clock::now());
    let mut body = serde_json::to_value(&event).map_err(|e| StoreError::Query(e.to_string()))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("id".into(), serde_json::Value::String(id.clone()));
        map.insert("time".into(), serde_json::Value::from(time));
        map.insert("schema".into(), serde_json::Value::from(1));
    }
    sqlx::query(
        "INSERT INTO audit_events (id, time, type, actor, session_id, target_id, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(time)
    .bind(event.kind)
    .bind(event.actor.user_id.clone().or(event.actor.source.clone()))
    .bind(&event.session_id)
    .bind(&event.target_id)
    .bind(body.to_string())
    .execute(conn)
    .await?;
    Ok(())
}
