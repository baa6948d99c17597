//! The `details` of each event type: identifiers and facts, never a secret.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A bearer token handed out by a login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenGranted {
    pub token_id: String,
    pub issuer: String,
    pub expires_at: u64,
}

/// Why a login failed: the pending login it names, or a summary of an address's failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoginFailure {
    Summary(FailureSummary),
    Login(LoginRef),
}

/// A pending login of ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRef {
    pub login_id: String,
    /// `loopback` or `device`; absent when the login could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginStarted {
    pub login_id: String,
    pub mode: String,
    pub issuer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRef {
    pub token_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTokensRevoked {
    pub user_id: String,
    pub issuer: String,
    pub subject: String,
    pub token_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub user: String,
    pub user_id: String,
    pub issuer: String,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub token_id: String,
    pub expires_at: u64,
}

/// A local user created (issue 21). Never the password: only how it was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalUserCreated {
    pub user: String,
    pub user_id: String,
    pub issuer: String,
    pub groups: Vec<String>,
    /// `generated` (shown once to the operator, to be replaced at the first login) or `file`.
    pub password_source: String,
}

/// A local user reset (issue 21): a new password; TOTP and recovery codes cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalUserReset {
    pub user: String,
    pub user_id: String,
    pub issuer: String,
    /// `generated` or `file`, as for [`LocalUserCreated`].
    pub password_source: String,
    /// Whether TOTP was enrolled before the reset.
    pub totp_cleared: bool,
}

/// A local user's identity in the events of its credentials (issue 21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalUserRef {
    pub user: String,
    pub user_id: String,
    pub issuer: String,
}

/// A local user disabled (`portcullis users disable`): it can no longer log in; its tokens
/// were revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalUserDisabled {
    #[serde(flatten)]
    pub user: LocalUserRef,
    pub token_ids: Vec<String>,
}

/// A local user's password replaced at its login (the generated one or the bootstrap
/// credential). Never the password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalPasswordChanged {
    #[serde(flatten)]
    pub user: LocalUserRef,
    /// `bootstrap` (the first admin's bootstrap credential) or `one_time` (a password an
    /// administrator set).
    pub replaced: String,
}

/// TOTP enrolled at a local user's login, with new recovery codes. Never the secret or a
/// code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpEnrolled {
    #[serde(flatten)]
    pub user: LocalUserRef,
    pub recovery_codes: u32,
}

/// A recovery code used instead of a TOTP code. Never the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryCodeUsed {
    #[serde(flatten)]
    pub user: LocalUserRef,
    /// Unused codes left.
    pub remaining: u32,
}

/// `portcullis controller init`: the master key, the database and the first admin with its
/// bootstrap credential. Never the credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerInitialised {
    /// `created` or `existing`.
    pub master_key: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    #[serde(flatten)]
    pub admin: LocalUserRef,
    pub groups: Vec<String>,
    /// When the bootstrap credential stops working (Unix seconds).
    pub bootstrap_expires_at: u64,
    /// `printed` (once, on the terminal) or `file` (`--bootstrap-file`, mode 0600).
    pub bootstrap_delivery: String,
}

/// `portcullis controller backup`: what the backup holds, named by its manifest's hash.
/// Never the master key, its sealed form or the passphrase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupCreated {
    /// `sqlite` (a snapshot in the backup) or `postgres` (the operator runs `pg_dump`).
    pub store: String,
    /// The newest migration of the store's schema.
    pub schema_version: i64,
    /// The audit chain's head the backup holds (for PostgreSQL: when the backup ran).
    pub audit_sequence: u64,
    /// SHA-256 of the backup's `manifest.json`, which lists every file's hash.
    pub manifest_sha256: String,
}

/// A service account created (`portcullis users add-service`) with its public key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccountCreated {
    pub account: String,
    pub user_id: String,
    pub issuer: String,
    pub groups: Vec<String>,
    pub key_fingerprint: String,
}

/// A service account's key revoked (`portcullis users revoke-key`): it obtains no more
/// tokens, and the tokens it obtained were revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceKeyRevoked {
    pub account: String,
    pub user_id: String,
    pub key_fingerprint: String,
    pub token_ids: Vec<String>,
}

/// The failures of callers who proved nothing, summed per address and window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureSummary {
    pub count: u64,
    pub first_at: String,
    pub last_at: String,
    pub window_secs: f64,
    /// Every reason of the window with its count.
    pub reasons: BTreeMap<String, u64>,
    /// The first name a caller claimed in the window (never trusted as the actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_name: Option<String>,
    /// Set when addresses beyond the tracked limit were summed under source `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDenied {
    pub permission: String,
    pub method: String,
    pub path: String,
}

/// The matrix facts of a decision, as far as it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionAuthorized {
    pub worker_id: String,
    pub endpoint: String,
    pub expires_at: u64,
    pub connection_limit: u32,
    pub grant_key_id: String,
    pub ssh_certificate: Option<SshCertificate>,
    #[serde(default)]
    pub vault_credential_id: Option<String>,
    pub source_zone: Option<String>,
    pub target_zone: Option<String>,
    pub cells: Vec<String>,
    /// How an SSH session runs (`certificate` or `gateway`); absent when no SSH key was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_mode: Option<String>,
    /// For a forward a gateway session asked for (`ssh -L`): the gateway session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_session: Option<String>,
    /// For such a forward: the destination as the user's client wrote it (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The approved just-in-time access request the session opened under (issue 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_request: Option<String>,
    /// The step-up challenge whose single-use proof opened it (issue 26).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<String>,
}

/// An SSH certificate the controller's CA signed for a session (never the certificate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshCertificate {
    /// A random 64-bit number: always a decimal string (I-JSON).
    pub serial: String,
    pub key_id: String,
    pub ca_key_id: String,
    pub principals: Vec<String>,
    pub valid_before: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDenied {
    pub endpoint: Option<String>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DeniedAt>,
    /// For a forward a gateway session asked for: the gateway session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_session: Option<String>,
    /// For such a forward: the destination as the user's client wrote it (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// How far the policy got before it refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeniedAt {
    pub source_zone: Option<String>,
    pub target_zone: Option<String>,
    pub service: Option<String>,
    pub cells: Vec<String>,
    pub role_rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitReached {
    /// The configuration key of the limit.
    pub limit: String,
    pub value: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTerminated {
    /// Serials of the session's certificates put into the KRL, as decimal strings.
    pub ssh_certificates_revoked: Vec<String>,
    /// Vault credentials whose revocation was queued with the end.
    #[serde(default)]
    pub vault_revocations_queued: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionOpened {
    pub connection_id: String,
    pub client_addr: String,
    /// Set on the first connection of a session (admitted by the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<bool>,
    /// The target endpoint the worker dialled (later connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Why connections were refused: one connection the controller refused online, or the
/// refusals a worker decided by itself, summed per session and code over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConnectionRefusal {
    Summary(RefusalSummary),
    Connection(ConnectionRef),
}

/// The refusals a worker decided for one session (or, before a grant verified, for none) and
/// one code, summed over the worker's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalSummary {
    pub count: u64,
    pub first_at: String,
    pub last_at: String,
    /// The first refused client's address.
    pub client_addr: String,
    /// The first refusal's sentence, for a session's refusals only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The worker's id for the summary: a summary resent after a lost acknowledgement
    /// appears again with the same id.
    pub summary_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRef {
    pub connection_id: String,
    pub client_addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionClosed {
    pub connection_id: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetNamed {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinTokenCreated {
    pub join_token_id: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerJoined {
    pub worker_id: String,
    pub name: String,
    pub proxy_addr: String,
    /// The address the join came from.
    pub peer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerNamed {
    pub worker_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expiry {
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPurpose {
    pub key_id: String,
    pub purpose: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRef {
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialMinted {
    pub credential_id: String,
    pub token_accessor: String,
    pub ssh_certificate: Option<VaultSshCertificate>,
    pub leases: Vec<Lease>,
}

/// An SSH certificate Vault signed for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaultSshCertificate {
    pub serial: String,
    pub key_id: String,
    pub mount: Option<String>,
    pub valid_before: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub path: String,
    pub lease_id: String,
    pub lease_duration_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRevocation {
    pub credential_id: String,
    pub token_accessor: Option<String>,
    pub lease_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    /// `revoked`, `already gone`, or `retrying`.
    pub outcome: String,
}

/// The certificate the controller's CA signed for the key an SSH gateway made for a
/// session's login to its target (never the certificate or the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayCredential {
    /// The SHA-256 fingerprint of the worker's key (`SHA256:...`).
    pub key_fingerprint: String,
    pub ssh_certificate: SshCertificate,
}

/// A Vault mint started for an SSH gateway's key (its revocation intent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayCredentialRequested {
    pub credential_id: String,
    pub key_fingerprint: String,
}

/// A channel or request an SSH gateway refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshChannelRefused {
    pub connection_id: String,
    /// In the SSH protocol's words: `direct-tcpip`, `tcpip-forward`, `x11-req`...
    pub channel: String,
    /// For a forward, `host:port` as the client wrote it; for a subsystem, its name.
    pub destination: Option<String>,
    /// The SSH user name the user logged into the gateway as.
    pub login: String,
}

/// A recording head sealed into the chain (`recording_checkpoint`, `recording_finished`):
/// chunks `0..chunks` of the recording chain up to `head_hash` (hex SHA-256 of chunk
/// `chunks - 1`) and hold `bytes` body bytes; `complete` when that chunk is the final one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSealed {
    pub recording_id: String,
    pub connection_id: String,
    pub chunks: u64,
    pub head_hash: String,
    pub bytes: u64,
    pub complete: bool,
}

/// A recording a worker could not write (its report, as the worker worded it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingFailed {
    pub recording_id: String,
    pub connection_id: String,
    /// `size_cap`, `spool_full`, `store_refused`, `spool_write`.
    pub cause: String,
    pub message: String,
    /// `closed_channels` or `continued_unrecorded`.
    pub action: String,
}

/// A read of a session's leased secrets by its own user: which secrets, never their data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSecretsRead {
    /// The Vault paths read, in the target's order.
    pub paths: Vec<String>,
    /// Their leases (empty for a secret without one).
    pub lease_ids: Vec<String>,
}

/// The console's incremental audit check sent back to the first event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerificationReset {
    /// The last event the check had verified (its watermark), if it had one.
    pub verified_up_to: Option<u64>,
}

/// A read of a session's recordings through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingRead {
    /// None for the list of a session's recordings.
    pub recording_id: Option<String>,
    /// `list`, `chunks` or `bundle`.
    pub what: String,
    /// The first chunk of a page of chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}

/// A recording deleted by the retention (`reason` says which limit: `age` or `size`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingDeleted {
    pub recording_id: String,
    pub chunks: u64,
    pub bytes: u64,
}

/// A discovered guest or node of a Proxmox cluster, as the catalog saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CatalogTarget {
    /// The `[[catalog.proxmox]]` name.
    pub cluster: String,
    /// The guest or node in its cluster: `qemu/100`, `lxc/101`, `node/pve1`, plus
    /// `#SERVICE` when the guest has several services (`qemu/100#rdp`).
    pub source_key: String,
    /// The target's name (sanitised from the guest's).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `HOST:PORT`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Where the address came from: `cloud-init`, `lxc-config`, `sdn-ipam`, `guest-agent`,
    /// `lxc-interfaces`, `cluster-status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Whether sessions may use it (a template or a stopped guest may not).
    pub available: bool,
    /// The fields a change changed (`address`, `zone`, `vmid`, `tags`, `pool`, `node`,
    /// `available`, `name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CatalogSynced {
    pub cluster: String,
    /// The API URL that answered.
    pub url: String,
    pub guests: u32,
    pub nodes: u32,
    pub added: u32,
    pub changed: u32,
    pub removed: u32,
    pub refused: u32,
    pub unchanged: u32,
    /// Live sessions the changes ended (through the policy re-evaluation).
    pub sessions_ended: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CatalogSyncFailed {
    pub cluster: String,
    /// The discovered targets kept as they were.
    pub kept_targets: u32,
    /// When the last good sync finished (Unix seconds), if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<u64>,
}

/// A session's Proxmox API token (issue 20): never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PveToken {
    pub cluster: String,
    /// `USER@REALM!TOKENNAME`.
    pub token_id: String,
    /// The Proxmox roles granted to the token, and the ACL paths they were granted on.
    pub roles: Vec<String>,
    pub paths: Vec<String>,
    /// Unix seconds: the token's `expire`.
    pub expires_at: u64,
    pub privsep: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PveTokenRevocation {
    pub cluster: String,
    pub token_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u64>,
    /// `revoked`, `already gone`, or `retrying`.
    pub outcome: String,
}

/// One request through the Proxmox API proxy: what the session's record keeps (no body, no
/// header, query values redacted). The event's `session_id` names the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PveRequest {
    pub connection_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub millis: u64,
    /// The proxy's rule when it refused the request itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// A just-in-time access request as made (`access_requested`, `break_glass`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AccessRequested {
    pub request_id: String,
    pub role: String,
    /// The target names or ids asked for (empty when `zone` is set).
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub duration_secs: u64,
    /// The requester's reason (also the event's `reason` for `break_glass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reason: Option<String>,
    /// Approvals still needed (0: approved at creation).
    pub approvals_needed: u32,
    pub break_glass: bool,
    pub preapproved: bool,
    /// Approved at creation: the end of its window (Unix seconds); else the approval deadline.
    pub expires_at: u64,
    /// The matrix cells and role rule the request would open, per target or zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
    /// For `portcullis run`: the command line (argv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_command: Option<Vec<String>>,
}

/// One approval (`access_approved`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AccessApproved {
    pub request_id: String,
    pub role: String,
    /// The requester.
    pub requester: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_reason: Option<String>,
    /// Approvals still needed after this one.
    pub approvals_needed: u32,
    /// This approval approved the request.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// When it was final: the end of the window (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// The request an event is about (`access_denied`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AccessRef {
    pub request_id: String,
    pub role: String,
    pub requester: String,
}

/// A request ended (`access_revoked`, `access_expired`) and the live sessions ended with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AccessEnded {
    pub request_id: String,
    pub role: String,
    pub requester: String,
    /// The state it was in: `pending` or `approved`.
    pub was: String,
    pub sessions_ended: Vec<String>,
}

/// A run started (`run_started`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunStarted {
    pub request_id: String,
    pub command: Vec<String>,
    pub targets: Vec<String>,
    /// The run key's SHA-256 fingerprint (never a private key).
    pub run_key_fingerprint: String,
    pub keepalive_secs: u64,
}

/// A run ended (`run_finished`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunFinished {
    pub request_id: String,
    /// `exited`, `signaled`, `lost`, `revoked`, `expired`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Every session opened under the run.
    pub sessions: Vec<String>,
}

/// A policy reload's diff in brief (`portcullis policy diff`): the policy it replaced, the
/// counts, and the first changed decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChangeSummary {
    /// Hex SHA-256 of the policy the reload replaced.
    pub previous_policy_hash: String,
    /// (role, source zone, target zone, service) decisions now allowed, now denied, and
    /// allowed on other terms.
    pub allowed: u64,
    pub denied: u64,
    pub changed: u64,
    /// Zones, services and roles added or removed.
    pub names_added: u64,
    pub names_removed: u64,
    /// Zones, services and roles changed in place (addresses, groups, terms of request).
    pub items_changed: u64,
    pub cells_changed: u64,
    /// The first changed decisions (`role ops: A -> B ssh: allow -> deny`), at most
    /// [`PolicyChangeSummary::FIRST`].
    pub first_changes: Vec<String>,
}

impl PolicyChangeSummary {
    /// How many changed decisions an event names.
    pub const FIRST: usize = 20;
}

/// A step-up challenge issued (`step_up_required`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepUpRequired {
    pub challenge_id: String,
    pub target_id: String,
    pub target_name: String,
    /// The role whose MFA constraint asks for it.
    pub role: String,
    /// What the fresh login must show: one of `amr`, or an `acr` among `acr`.
    pub amr: Vec<String>,
    pub acr: Vec<String>,
    pub expires_at: u64,
}

/// A step-up challenge answered (`step_up_proven`): what the fresh login showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepUpProven {
    pub challenge_id: String,
    pub target_name: String,
    /// `oidc` or `totp`.
    pub method: String,
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    pub auth_time: u64,
}

/// The step-up challenge an event is about (`step_up_failed`); none when the request named
/// no challenge the controller knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepUpRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
}
