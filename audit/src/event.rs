//! The audit event as a type: docs/audit.md's schema, one variant per event type.
//!
//! An [`AuditEvent`] is who ([`Actor`]), on what (session, target) and what happened
//! ([`Event`]). The variant's serde form is the variable part of the stored event: its `type`
//! tag, its `reason` and `policy_hash` where the type has them, and its typed `details`;
//! [`AuditEvent::body`] adds the chain's members. `decision` follows from the variant
//! ([`Event::decision`]), so an allowed `session_denied` cannot be written.
//!
//! Invariant: no variant has a field for a secret. Tokens, keys, certificates and passwords
//! appear only by identifier (token id, key id, serial, accessor, lease id).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chain;

pub use crate::details::*;

/// Who did something.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(rename = "user", default)]
    pub username: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The client's address as the controller saw it, `worker:<id>` for worker reports,
    /// `local:<account>` for offline commands.
    #[serde(default)]
    pub source: Option<String>,
}

impl Actor {
    /// The controller itself (key creation, sweeps, expiry).
    pub fn system() -> Actor {
        Actor {
            username: Some("system".into()),
            ..Actor::default()
        }
    }

    /// A worker reporting over its link.
    pub fn worker(worker_id: &str) -> Actor {
        Actor {
            source: Some(format!("worker:{worker_id}")),
            ..Actor::default()
        }
    }

    /// A caller who proved nothing: only the address is known.
    pub fn anonymous(source: &str) -> Actor {
        Actor {
            source: Some(source.to_owned()),
            ..Actor::default()
        }
    }

    /// An operator at the controller's own machine (`portcullis controller ...`).
    pub fn local(account: &str) -> Actor {
        Actor {
            source: Some(format!("local:{account}")),
            ..Actor::default()
        }
    }
}

/// The outcome a decision event records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One audit event before it is sealed into the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub actor: Actor,
    pub session: Option<String>,
    pub target: Option<String>,
    pub event: Event,
}

impl AuditEvent {
    pub fn new(actor: Actor, event: Event) -> AuditEvent {
        AuditEvent {
            actor,
            session: None,
            target: None,
            event,
        }
    }

    pub fn session(mut self, id: &str) -> Self {
        self.session = Some(id.to_owned());
        self
    }

    pub fn target(mut self, id: &str) -> Self {
        self.target = Some(id.to_owned());
        self
    }

    pub fn kind(&self) -> Kind {
        self.event.kind()
    }

    /// The event as stored and shipped, before sealing (schema 3, docs/audit.md): every
    /// member present, `null` where it does not apply, `details` always an object.
    pub fn body(&self, id: &str, sequence: u64, time: &str, prev_hash: &str) -> Map<String, Value> {
        let mut variable = match serde_json::to_value(&self.event) {
            Ok(Value::Object(map)) => map,
            // An internally tagged enum of struct variants always serialises to an object.
            _ => Map::new(),
        };
        let mut take = |key: &str| variable.remove(key).unwrap_or(Value::Null);
        let kind = take("type");
        let reason = take("reason");
        let policy_hash = take("policy_hash");
        let details = match take("details") {
            Value::Null => Value::Object(Map::new()),
            other => other,
        };
        let mut body = Map::new();
        body.insert("schema".into(), chain::SCHEMA.into());
        body.insert("id".into(), id.into());
        body.insert("sequence".into(), sequence.into());
        body.insert("time".into(), time.into());
        body.insert("type".into(), kind);
        body.insert(
            "actor".into(),
            serde_json::to_value(&self.actor).unwrap_or(Value::Null),
        );
        body.insert("target".into(), self.target.clone().into());
        body.insert("session".into(), self.session.clone().into());
        body.insert(
            "decision".into(),
            self.event.decision().map(Decision::as_str).into(),
        );
        body.insert("reason".into(), reason);
        body.insert("policy_hash".into(), policy_hash);
        body.insert("details".into(), details);
        body.insert("prev_hash".into(), prev_hash.into());
        body
    }

    /// Reads the event back from a stored body (the inverse of [`AuditEvent::body`] for the
    /// members it covers).
    pub fn from_body(body: &Value) -> Result<AuditEvent, serde_json::Error> {
        let event: Event = serde_json::from_value(body.clone())?;
        let actor: Actor = serde_json::from_value(body.get("actor").cloned().unwrap_or_default())?;
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(AuditEvent {
            actor,
            session: text("session"),
            target: text("target"),
            event,
        })
    }
}

macro_rules! kinds {
    ($($variant:ident = $name:literal),+ $(,)?) => {
        /// The event types, past tense: the closed set of `type` values.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind { $($variant),+ }

        impl Kind {
            /// Every type, in docs/audit.md's order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Kind::$variant => $name),+ }
            }
        }

        impl std::str::FromStr for Kind {
            type Err = UnknownKind;
            fn from_str(text: &str) -> Result<Kind, UnknownKind> {
                match text {
                    $($name => Ok(Kind::$variant),)+
                    _ => Err(UnknownKind(text.to_owned())),
                }
            }
        }
    };
}

kinds! {
    LoginSucceeded = "login_succeeded",
    LoginFailed = "login_failed",
    LoginStarted = "login_started",
    LoggedOut = "logged_out",
    UserTokensRevoked = "user_tokens_revoked",
    TokenIssued = "token_issued",
    LocalUserCreated = "local_user_created",
    LocalUserReset = "local_user_reset",
    LocalUserDisabled = "local_user_disabled",
    LocalPasswordChanged = "local_password_changed",
    TotpEnrolled = "totp_enrolled",
    RecoveryCodeUsed = "recovery_code_used",
    ControllerInitialised = "controller_initialised",
    BackupCreated = "backup_created",
    ServiceAccountCreated = "service_account_created",
    ServiceKeyRevoked = "service_key_revoked",
    TokenRejected = "token_rejected",
    PermissionDenied = "permission_denied",
    SessionAuthorized = "session_authorized",
    SessionDenied = "session_denied",
    SessionLimitReached = "session_limit_reached",
    SessionActivated = "session_activated",
    SessionTerminated = "session_terminated",
    ConnectionOpened = "connection_opened",
    ConnectionRefused = "connection_refused",
    ConnectionClosed = "connection_closed",
    TargetCreated = "target_created",
    TargetUpdated = "target_updated",
    TargetDeleted = "target_deleted",
    WorkerJoinTokenCreated = "worker_join_token_created",
    WorkerJoined = "worker_joined",
    WorkerJoinFailed = "worker_join_failed",
    WorkerDeleted = "worker_deleted",
    WorkerCertificateRenewed = "worker_certificate_renewed",
    KeyCreated = "key_created",
    KeyRotated = "key_rotated",
    KeyActivated = "key_activated",
    KeyRetired = "key_retired",
    PolicyReloaded = "policy_reloaded",
    PolicyReloadFailed = "policy_reload_failed",
    CredentialMinted = "credential_minted",
    CredentialMintFailed = "credential_mint_failed",
    CredentialRevoked = "credential_revoked",
    CredentialRevokeFailed = "credential_revoke_failed",
    GatewayCredentialIssued = "gateway_credential_issued",
    GatewayCredentialRequested = "gateway_credential_requested",
    SessionSecretsRead = "session_secrets_read",
    AuditVerificationReset = "audit_verification_reset",
    SshChannelRefused = "ssh_channel_refused",
    RecordingCheckpoint = "recording_checkpoint",
    RecordingFinished = "recording_finished",
    RecordingFailed = "recording_failed",
    RecordingRead = "recording_read",
    RecordingDeleted = "recording_deleted",
    CatalogTargetAdded = "catalog_target_added",
    CatalogTargetChanged = "catalog_target_changed",
    CatalogTargetRemoved = "catalog_target_removed",
    CatalogGuestRefused = "catalog_guest_refused",
    CatalogSynced = "catalog_synced",
    CatalogSyncFailed = "catalog_sync_failed",
    PveTokenMinted = "pve_token_minted",
    PveTokenMintFailed = "pve_token_mint_failed",
    PveTokenRevoked = "pve_token_revoked",
    PveTokenRevokeFailed = "pve_token_revoke_failed",
    PveRequest = "pve_request",
    AccessRequested = "access_requested",
    AccessApproved = "access_approved",
    AccessDenied = "access_denied",
    AccessRevoked = "access_revoked",
    AccessExpired = "access_expired",
    BreakGlass = "break_glass",
    RunStarted = "run_started",
    RunFinished = "run_finished",
    StepUpRequired = "step_up_required",
    StepUpProven = "step_up_proven",
    StepUpFailed = "step_up_failed",
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `type` that is not one of [`Kind`]'s.
#[derive(Debug, thiserror::Error)]
#[error("unknown audit event type {0:?}")]
pub struct UnknownKind(pub String);

/// What happened, with the facts docs/audit.md lists for each type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    LoginSucceeded {
        details: TokenGranted,
    },
    /// A login of ours refused (`details` names it), or the failures of one address summed
    /// over a window (rate limited, unknown state).
    LoginFailed {
        reason: String,
        details: LoginFailure,
    },
    LoginStarted {
        details: LoginStarted,
    },
    LoggedOut {
        details: TokenRef,
    },
    UserTokensRevoked {
        details: UserTokensRevoked,
    },
    /// `portcullis controller issue-token` (break-glass, offline).
    TokenIssued {
        details: TokenIssued,
    },
    /// `portcullis controller users add` (offline): a local user and its first password.
    LocalUserCreated {
        details: LocalUserCreated,
    },
    /// `portcullis controller users reset` (offline): a new password, TOTP and recovery
    /// codes cleared.
    LocalUserReset {
        details: LocalUserReset,
    },
    /// `portcullis users disable`: no more logins; its tokens revoked.
    LocalUserDisabled {
        details: LocalUserDisabled,
    },
    /// A local user's one-time password or bootstrap credential replaced at its login.
    LocalPasswordChanged {
        details: LocalPasswordChanged,
    },
    /// TOTP enrolled at a local user's login, with new recovery codes.
    TotpEnrolled {
        details: TotpEnrolled,
    },
    /// A recovery code used at a local user's login.
    RecoveryCodeUsed {
        details: RecoveryCodeUsed,
    },
    /// `portcullis controller init` (offline): master key, database, first admin.
    ControllerInitialised {
        details: ControllerInitialised,
    },
    /// `portcullis controller backup` (offline, beside a running controller): a snapshot
    /// and the sealed master key written; never the key or the passphrase.
    BackupCreated {
        details: BackupCreated,
    },
    /// `portcullis users add-service`: a service account and its public key.
    ServiceAccountCreated {
        details: ServiceAccountCreated,
    },
    /// `portcullis users revoke-key`: a service account's key revoked with its tokens.
    ServiceKeyRevoked {
        details: ServiceKeyRevoked,
    },
    TokenRejected {
        reason: String,
        details: FailureSummary,
    },
    PermissionDenied {
        reason: String,
        details: PermissionDenied,
    },
    SessionAuthorized {
        reason: String,
        policy_hash: String,
        details: SessionAuthorized,
    },
    SessionDenied {
        reason: String,
        /// Absent when the request was refused before the policy was consulted.
        policy_hash: Option<String>,
        details: SessionDenied,
    },
    SessionLimitReached {
        reason: String,
        details: LimitReached,
    },
    SessionActivated,
    SessionTerminated {
        reason: String,
        details: SessionTerminated,
    },
    ConnectionOpened {
        details: ConnectionOpened,
    },
    /// `reason`: the controller's sentence for a connection it refused, or the refusal code
    /// of a worker's summary.
    ConnectionRefused {
        reason: String,
        details: ConnectionRefusal,
    },
    ConnectionClosed {
        reason: String,
        details: ConnectionClosed,
    },
    TargetCreated {
        details: TargetNamed,
    },
    TargetUpdated {
        details: TargetNamed,
    },
    TargetDeleted {
        details: TargetName,
    },
    WorkerJoinTokenCreated {
        details: JoinTokenCreated,
    },
    WorkerJoined {
        details: WorkerJoined,
    },
    WorkerJoinFailed {
        reason: String,
        details: FailureSummary,
    },
    WorkerDeleted {
        details: WorkerNamed,
    },
    WorkerCertificateRenewed {
        details: Expiry,
    },
    KeyCreated {
        details: KeyPurpose,
    },
    KeyRotated {
        details: KeyPurpose,
    },
    /// A `next` key (a rotated TLS CA, trusted but not yet signing) became the active one.
    KeyActivated {
        details: KeyPurpose,
    },
    KeyRetired {
        details: KeyRef,
    },
    PolicyReloaded {
        policy_hash: String,
        /// What the new policy changed from the one it replaced (absent in events written
        /// before reloads recorded it, and when no policy was loaded before).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<PolicyChangeSummary>,
    },
    PolicyReloadFailed {
        reason: String,
    },
    CredentialMinted {
        details: CredentialMinted,
    },
    CredentialMintFailed {
        reason: String,
    },
    CredentialRevoked {
        details: CredentialRevocation,
    },
    CredentialRevokeFailed {
        reason: String,
        details: CredentialRevocation,
    },
    GatewayCredentialIssued {
        details: GatewayCredential,
    },
    GatewayCredentialRequested {
        details: GatewayCredentialRequested,
    },
    /// A session's own user read its leased secrets (`GET /v1/sessions/{id}/secrets`);
    /// names the paths and leases, never the data.
    SessionSecretsRead {
        details: SessionSecretsRead,
    },
    /// A reviewer made the console check the audit chain from its first event again
    /// ("verify from the start"): the watermark it had is forgotten.
    AuditVerificationReset {
        details: AuditVerificationReset,
    },
    /// `reason` is the rule that refused it (the right that is off, or the controller's
    /// words naming the matrix cell).
    SshChannelRefused {
        reason: String,
        details: SshChannelRefused,
    },
    /// A recording's head sealed while it grows, or at its session's end without a final
    /// chunk (`complete: false`).
    RecordingCheckpoint {
        details: RecordingSealed,
    },
    /// A recording's final chunk stored; its head sealed.
    RecordingFinished {
        details: RecordingSealed,
    },
    RecordingFailed {
        details: RecordingFailed,
    },
    RecordingRead {
        details: RecordingRead,
    },
    /// `reason`: `age` or `size`, the retention limit that deleted it.
    RecordingDeleted {
        reason: String,
        details: RecordingDeleted,
    },
    /// A discovered guest or node became a target (the event's `target_id` names it).
    CatalogTargetAdded {
        details: CatalogTarget,
    },
    /// A discovered target's address, zone, VMID, tags, pool, node or availability changed
    /// (`details.changed` names the fields; `previous_*` what they were).
    CatalogTargetChanged {
        details: CatalogTarget,
    },
    /// `reason`: `gone` (no longer in the cluster), `refused` (now refused, see
    /// `catalog_guest_refused`) or `cluster_removed` (no longer configured).
    CatalogTargetRemoved {
        reason: String,
        details: CatalogTarget,
    },
    /// A guest or node that cannot become a target: `reason` says why (its tag, VMID range
    /// or pool disagrees with its address's zone; no usable address; a guest-reported
    /// address its zone does not accept; a name taken by a hand-made target). Recorded when
    /// the refusal is new or its reason changed, not at every sync.
    CatalogGuestRefused {
        reason: String,
        details: CatalogTarget,
    },
    /// One sync of a cluster finished: what it found and changed.
    CatalogSynced {
        details: CatalogSynced,
    },
    /// A sync failed (outage, refused token, bad answer): the last good catalog stays.
    CatalogSyncFailed {
        reason: String,
        details: CatalogSyncFailed,
    },
    /// Proxmox created the session's API token and granted its roles (never the secret).
    PveTokenMinted {
        details: PveToken,
    },
    /// Proxmox refused or failed the token or its ACLs: the session ends; `reason` is
    /// Proxmox's answer or the error.
    PveTokenMintFailed {
        reason: String,
        details: PveToken,
    },
    /// The token is deleted and no ACL entry names it (`details.outcome`: `revoked`,
    /// `already gone`).
    PveTokenRevoked {
        details: PveTokenRevocation,
    },
    /// Deleting the token or checking its ACL entries gone failed; retried with backoff.
    PveTokenRevokeFailed {
        reason: String,
        details: PveTokenRevocation,
    },
    /// One request through an injecting Proxmox API session's proxy.
    PveRequest {
        details: PveRequest,
    },
    /// A just-in-time access request made (`POST /v1/requests`); pending, or approved at
    /// once when the requester is preapproved (a break-glass request is `break_glass`).
    AccessRequested {
        details: AccessRequested,
    },
    /// One approval of a request; `final` on the one that approved it.
    AccessApproved {
        details: AccessApproved,
    },
    /// A pending request denied by an approver (`reason`: theirs, if they gave one).
    AccessDenied {
        reason: Option<String>,
        details: AccessRef,
    },
    /// An open request ended early by its requester, an approver or an administrator; the
    /// sessions under it ended with it.
    AccessRevoked {
        reason: Option<String>,
        details: AccessEnded,
    },
    /// A request whose window ended, or that was not approved in time.
    AccessExpired {
        details: AccessEnded,
    },
    /// A break-glass request: approved by its requester alone, with a mandatory reason.
    BreakGlass {
        reason: String,
        details: AccessRequested,
    },
    /// `portcullis run` started its command under an approved request.
    RunStarted {
        details: RunStarted,
    },
    /// A run ended: its command exited or was killed, the run was lost (no keepalive) or its
    /// request ended.
    RunFinished {
        details: RunFinished,
    },
    /// authorize-session refused a session only for a role's MFA constraint and issued a
    /// step-up challenge (`reason`: what the token's login lacked).
    StepUpRequired {
        reason: String,
        details: StepUpRequired,
    },
    /// A fresh login answered a step-up challenge: a single-use proof was handed out.
    StepUpProven {
        details: StepUpProven,
    },
    /// A step-up login or proof was refused (`reason`: why, e.g. the provider ignored
    /// `max_age`, a weaker `acr`, a proof replayed or for another target).
    StepUpFailed {
        reason: String,
        details: StepUpRef,
    },
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self {
            Event::LoginSucceeded { .. } => Kind::LoginSucceeded,
            Event::LoginFailed { .. } => Kind::LoginFailed,
            Event::LoginStarted { .. } => Kind::LoginStarted,
            Event::LoggedOut { .. } => Kind::LoggedOut,
            Event::UserTokensRevoked { .. } => Kind::UserTokensRevoked,
            Event::TokenIssued { .. } => Kind::TokenIssued,
            Event::LocalUserCreated { .. } => Kind::LocalUserCreated,
            Event::LocalUserReset { .. } => Kind::LocalUserReset,
            Event::LocalUserDisabled { .. } => Kind::LocalUserDisabled,
            Event::LocalPasswordChanged { .. } => Kind::LocalPasswordChanged,
            Event::TotpEnrolled { .. } => Kind::TotpEnrolled,
            Event::RecoveryCodeUsed { .. } => Kind::RecoveryCodeUsed,
            Event::ControllerInitialised { .. } => Kind::ControllerInitialised,
            Event::BackupCreated { .. } => Kind::BackupCreated,
            Event::ServiceAccountCreated { .. } => Kind::ServiceAccountCreated,
            Event::ServiceKeyRevoked { .. } => Kind::ServiceKeyRevoked,
            Event::TokenRejected { .. } => Kind::TokenRejected,
            Event::PermissionDenied { .. } => Kind::PermissionDenied,
            Event::SessionAuthorized { .. } => Kind::SessionAuthorized,
            Event::SessionDenied { .. } => Kind::SessionDenied,
            Event::SessionLimitReached { .. } => Kind::SessionLimitReached,
            Event::SessionActivated => Kind::SessionActivated,
            Event::SessionTerminated { .. } => Kind::SessionTerminated,
            Event::ConnectionOpened { .. } => Kind::ConnectionOpened,
            Event::ConnectionRefused { .. } => Kind::ConnectionRefused,
            Event::ConnectionClosed { .. } => Kind::ConnectionClosed,
            Event::TargetCreated { .. } => Kind::TargetCreated,
            Event::TargetUpdated { .. } => Kind::TargetUpdated,
            Event::TargetDeleted { .. } => Kind::TargetDeleted,
            Event::WorkerJoinTokenCreated { .. } => Kind::WorkerJoinTokenCreated,
            Event::WorkerJoined { .. } => Kind::WorkerJoined,
            Event::WorkerJoinFailed { .. } => Kind::WorkerJoinFailed,
            Event::WorkerDeleted { .. } => Kind::WorkerDeleted,
            Event::WorkerCertificateRenewed { .. } => Kind::WorkerCertificateRenewed,
            Event::KeyCreated { .. } => Kind::KeyCreated,
            Event::KeyRotated { .. } => Kind::KeyRotated,
            Event::KeyActivated { .. } => Kind::KeyActivated,
            Event::KeyRetired { .. } => Kind::KeyRetired,
            Event::PolicyReloaded { .. } => Kind::PolicyReloaded,
            Event::PolicyReloadFailed { .. } => Kind::PolicyReloadFailed,
            Event::CredentialMinted { .. } => Kind::CredentialMinted,
            Event::CredentialMintFailed { .. } => Kind::CredentialMintFailed,
            Event::CredentialRevoked { .. } => Kind::CredentialRevoked,
            Event::CredentialRevokeFailed { .. } => Kind::CredentialRevokeFailed,
            Event::GatewayCredentialIssued { .. } => Kind::GatewayCredentialIssued,
            Event::GatewayCredentialRequested { .. } => Kind::GatewayCredentialRequested,
            Event::SessionSecretsRead { .. } => Kind::SessionSecretsRead,
            Event::AuditVerificationReset { .. } => Kind::AuditVerificationReset,
            Event::SshChannelRefused { .. } => Kind::SshChannelRefused,
            Event::RecordingCheckpoint { .. } => Kind::RecordingCheckpoint,
            Event::RecordingFinished { .. } => Kind::RecordingFinished,
            Event::RecordingFailed { .. } => Kind::RecordingFailed,
            Event::RecordingRead { .. } => Kind::RecordingRead,
            Event::RecordingDeleted { .. } => Kind::RecordingDeleted,
            Event::CatalogTargetAdded { .. } => Kind::CatalogTargetAdded,
            Event::CatalogTargetChanged { .. } => Kind::CatalogTargetChanged,
            Event::CatalogTargetRemoved { .. } => Kind::CatalogTargetRemoved,
            Event::CatalogGuestRefused { .. } => Kind::CatalogGuestRefused,
            Event::CatalogSynced { .. } => Kind::CatalogSynced,
            Event::CatalogSyncFailed { .. } => Kind::CatalogSyncFailed,
            Event::PveTokenMinted { .. } => Kind::PveTokenMinted,
            Event::PveTokenMintFailed { .. } => Kind::PveTokenMintFailed,
            Event::PveTokenRevoked { .. } => Kind::PveTokenRevoked,
            Event::PveTokenRevokeFailed { .. } => Kind::PveTokenRevokeFailed,
            Event::PveRequest { .. } => Kind::PveRequest,
            Event::AccessRequested { .. } => Kind::AccessRequested,
            Event::AccessApproved { .. } => Kind::AccessApproved,
            Event::AccessDenied { .. } => Kind::AccessDenied,
            Event::AccessRevoked { .. } => Kind::AccessRevoked,
            Event::AccessExpired { .. } => Kind::AccessExpired,
            Event::BreakGlass { .. } => Kind::BreakGlass,
            Event::RunStarted { .. } => Kind::RunStarted,
            Event::RunFinished { .. } => Kind::RunFinished,
            Event::StepUpRequired { .. } => Kind::StepUpRequired,
            Event::StepUpProven { .. } => Kind::StepUpProven,
            Event::StepUpFailed { .. } => Kind::StepUpFailed,
        }
    }

    /// `allow` for an authorised session, `deny` for refusals of a request (a login that
    /// names no pending login of ours is a summed refusal), none for everything else.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            Event::SessionAuthorized { .. } => Some(Decision::Allow),
            Event::SessionDenied { .. }
            | Event::SshChannelRefused { .. }
            | Event::SessionLimitReached { .. }
            | Event::PermissionDenied { .. }
            | Event::TokenRejected { .. }
            | Event::WorkerJoinFailed { .. }
            | Event::LoginFailed {
                details: LoginFailure::Summary(_),
                ..
            } => Some(Decision::Deny),
            _ => None,
        }
    }

    /// The summed failures of one address and window for `kind` (one of `token_rejected`,
    /// `worker_join_failed`, `login_failed`); `None` for any other kind.
    pub fn failure_summary(kind: Kind, reason: String, details: FailureSummary) -> Option<Event> {
        match kind {
            Kind::TokenRejected => Some(Event::TokenRejected { reason, details }),
            Kind::WorkerJoinFailed => Some(Event::WorkerJoinFailed { reason, details }),
            Kind::LoginFailed => Some(Event::LoginFailed {
                reason,
                details: LoginFailure::Summary(details),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
