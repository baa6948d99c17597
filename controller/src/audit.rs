//! The audit hook: every state-changing action records its event through [`record`], inside
//! the same database transaction as the change, so the event and the change commit or fail
//! together.
//!
//! Invariant: no secret is ever put into an event. Events carry identifiers (session, token
//! and key ids, fingerprints), never tokens, keys or certificates.
//!
//! The log is a hash chain (docs/audit.md): [`record`] takes the next sequence number under
//! the locked `audit_head` row, links the event to its predecessor's hash and signs it with
//! the audit key, all inside the caller's transaction. [`chain`] holds the pure hashing and
//! signing, [`verify`] the verifier, [`sink`] the shippers to external sinks
//! ([`syslog`] speaks RFC 5424 over TLS).

pub mod batch;
pub mod chain;
pub mod config;
pub(crate) mod denials;
pub mod sink;
pub mod syslog;
pub mod verify;

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::AnyConnection;

pub use chain::Signer;

use crate::ids::{new_id, IdKind};
use crate::keys::{KeyError, Keyset};
use crate::store::audit as rows;
use crate::store::StoreError;

/// Who did something.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<String>,
    #[serde(rename = "user")]
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
    /// A token issued offline by `portcullis controller issue-token` (break-glass).
    pub const TOKEN_ISSUED: &str = "token_issued";
    pub const TOKEN_REJECTED: &str = "token_rejected";
    pub const LOGIN_STARTED: &str = "login_started";
    pub const LOGGED_OUT: &str = "logged_out";
    pub const USER_TOKENS_REVOKED: &str = "user_tokens_revoked";
    pub const SESSION_AUTHORIZED: &str = "session_authorized";
    pub const SESSION_DENIED: &str = "session_denied";
    pub const SESSION_LIMIT_REACHED: &str = "session_limit_reached";
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
    pub const POLICY_RELOADED: &str = "policy_reloaded";
    pub const POLICY_RELOAD_FAILED: &str = "policy_reload_failed";
    pub const CREDENTIAL_MINTED: &str = "credential_minted";
    pub const CREDENTIAL_MINT_FAILED: &str = "credential_mint_failed";
    pub const CREDENTIAL_REVOKED: &str = "credential_revoked";
    pub const CREDENTIAL_REVOKE_FAILED: &str = "credential_revoke_failed";
}

impl AuditEvent {
    /// The event as stored and shipped, before sealing (schema 3, docs/audit.md).
    fn body(&self, id: &str, sequence: u64, time: &str, prev_hash: &str) -> Map<String, Value> {
        let details = match &self.details {
            Value::Null => Value::Object(Map::new()),
            other => other.clone(),
        };
        let mut body = Map::new();
        body.insert("schema".into(), chain::SCHEMA.into());
        body.insert("id".into(), id.into());
        body.insert("sequence".into(), sequence.into());
        body.insert("time".into(), time.into());
        body.insert("type".into(), self.kind.into());
        body.insert(
            "actor".into(),
            serde_json::to_value(&self.actor).unwrap_or(Value::Null),
        );
        body.insert("target".into(), self.target_id.clone().into());
        body.insert("session".into(), self.session_id.clone().into());
        body.insert("decision".into(), self.decision.into());
        body.insert("reason".into(), self.reason.clone().into());
        body.insert("policy_hash".into(), self.policy_hash.clone().into());
        body.insert("details".into(), details);
        body.insert("prev_hash".into(), prev_hash.into());
        body
    }
}

/// The audit signing key, to fetch before the transaction that records events begins (on
/// SQLite the transaction holds the only connection, and the keyset may need to read the
/// store). A key that cannot be used makes the action fail: no event, no action.
pub async fn signer(keys: &Keyset) -> Result<Arc<Signer>, StoreError> {
    keys.audit_signer().await.map_err(|e| match e {
        KeyError::Store(e) => e,
        other => StoreError::Unavailable(format!("the audit signing key is unusable: {other}")),
    })
}

/// Appends `event` to the chain within the caller's transaction: the next sequence number
/// under the locked head row (so concurrent controllers never fork the chain), the
/// predecessor's hash, and a signature. Fails, failing the action, if it cannot be written.
pub async fn record(
    conn: &mut AnyConnection,
    signer: &Arc<Signer>,
    event: AuditEvent,
) -> Result<(), StoreError> {
    let mut chain = Chain::new(signer.clone());
    chain.append(event);
    chain.advance(conn).await
}

/// Events of one transaction on their way into the chain. [`Chain::append`] only queues;
/// [`Chain::advance`], the transaction's last step before its commit, takes the head row's
/// lock, numbers, links and signs the queued events, and writes them with the new head. The
/// lock is thus held only from that step to the commit, and a [`batch`] of many actions
/// takes it once.
#[derive(Clone)]
pub struct Chain {
    signer: Arc<Signer>,
    pending: Vec<(AuditEvent, SystemTime)>,
}

impl Chain {
    pub fn new(signer: Arc<Signer>) -> Chain {
        Chain {
            signer,
            pending: Vec::new(),
        }
    }

    /// Queues `event`; its time is now.
    pub fn append(&mut self, event: AuditEvent) {
        self.pending.push((event, SystemTime::now()));
    }

    /// Locks the head, seals the queued events in order and writes them and the new head, in
    /// the caller's transaction (which should commit right after).
    pub async fn advance(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut head = rows::lock_head(conn).await?;
        let mut sealed = Vec::with_capacity(self.pending.len());
        for (event, at) in &self.pending {
            let sequence = head.sequence + 1;
            let id = new_id(IdKind::Event);
            let time = humantime::format_rfc3339_millis(*at).to_string();
            let mut body = event.body(&id, sequence, &time, &head.hash);
            let hash = self.signer.seal(&mut body).map_err(|e| {
                StoreError::Corrupt(format!("an audit event cannot be sealed: {e}"))
            })?;
            // The columns come from the sealed body, as the verifier derives them again.
            let columns = chain::IndexColumns::of(&body).map_err(|e| {
                StoreError::Corrupt(format!("an audit event cannot be indexed: {e}"))
            })?;
            sealed.push(rows::NewEvent {
                columns,
                body: Value::Object(body).to_string(),
            });
            head = rows::HeadRow { sequence, hash };
        }
        rows::insert_many(conn, &sealed).await?;
        rows::advance_head(conn, head.sequence, &head.hash).await?;
        self.pending.clear();
        Ok(())
    }
}
