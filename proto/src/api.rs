//! Request and response bodies of the controller's HTTPS JSON API under `/v1`.
//!
//! Request bodies deny unknown fields, so a typo is a 400 naming the field rather than a
//! silently ignored setting. Times are unix seconds.

use serde::{Deserialize, Serialize};

/// Every error body the API returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable kind, e.g. `forbidden`, `not_found`, `invalid_request`.
    pub error: String,
    /// What failed and what to do about it.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
    /// With `error` = `step_up_required`: what a fresh login must show for this request.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step_up: Option<crate::step_up::StepUpChallenge>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub controller_id: String,
    pub store: String,
}

/// `POST /v1/auth/dev-login` (only when the controller runs with dev login enabled).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevLoginRequest {
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub amr: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// The bearer token; shown once, only its hash is stored.
    pub token: String,
    pub expires_at: u64,
    pub user: UserInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<u64>,
    pub permissions: Vec<String>,
    /// Expiry of the token used for this request.
    pub token_expires_at: Option<u64>,
}

/// `POST /v1/auth/service-token`: a service account's signed assertion
/// ([`crate::assertion`]), exchanged for an API token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTokenRequest {
    /// The compact JWS; single use and short-lived, but still a credential: never logged.
    pub assertion: String,
}

impl std::fmt::Debug for ServiceTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenRequest")
            .field("assertion", &"<secret>")
            .finish()
    }
}

/// The answer to [`ServiceTokenRequest`]: the fields of a [`LoginResponse`] (so a client that
/// reads a login reads this), plus the key the token is bound to.
#[derive(Clone, Serialize, Deserialize)]
pub struct ServiceTokenResponse {
    #[serde(flatten)]
    pub login: LoginResponse,
    /// The fingerprint of the key that signed the assertion
    /// ([`crate::keys::ed25519_fingerprint`]): revoking that key ends the token.
    pub key_fingerprint: String,
}

impl std::fmt::Debug for ServiceTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenResponse")
            .field("token", &"<secret>")
            .field("expires_at", &self.login.expires_at)
            .field("user", &self.login.user)
            .field("key_fingerprint", &self.key_fingerprint)
            .finish()
    }
}

/// How an OIDC login reaches the CLI that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OidcLoginMode {
    /// The callback redirects the browser to the CLI's `http://127.0.0.1:PORT/callback`
    /// with a one-time code (RFC 8252).
    Loopback,
    /// The callback page shows a short code that the user types into the CLI.
    Code,
    /// The device authorization grant (RFC 8628), when the controller enables it.
    Device,
}

/// `POST /v1/auth/oidc/start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcStartRequest {
    pub mode: OidcLoginMode,
    /// Loopback mode: the port the CLI listens on at 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port: Option<u16>,
    /// base64url (no padding) SHA-256 of a random secret only this CLI knows; the secret
    /// itself is sent only to redeem the login, in a request body.
    pub secret_hash: String,
    /// A step-up login answering this challenge ([`crate::step_up`]): the provider is asked
    /// for a fresh authentication, and the redeem gives a [`crate::step_up::StepUpProof`]
    /// instead of an API token. Loopback and code modes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcStartResponse {
    pub login_id: String,
    /// Browser modes: where to send the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    pub expires_at: u64,
    /// Device mode: what the user types at `verification_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    /// Device mode: seconds between polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
}

/// `POST /v1/auth/oidc/redeem`: the one-time code from the callback plus the CLI's secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRedeemRequest {
    pub login_id: String,
    /// The one-time code (loopback) or the short code typed by the user (code mode); absent
    /// in device mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub secret: String,
}

/// `POST /v1/auth/oidc/redeem` in device mode while the user has not finished yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcPending {
    /// `authorization_pending` or `slow_down`.
    pub status: String,
    /// Seconds to wait before the next poll.
    pub interval: u64,
}

/// `POST /v1/auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutResponse {
    pub token_id: String,
    /// Sessions authorised with the token that this logout ended.
    pub sessions_ended: Vec<String>,
}

/// `POST /v1/users/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeUserRequest {
    pub subject: String,
    /// Only the user of this issuer; default: the subject under every issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedUser {
    pub user_id: String,
    pub issuer: String,
    pub subject: String,
    pub tokens_revoked: Vec<String>,
    pub sessions_ended: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeUserResponse {
    pub users: Vec<RevokedUser>,
}

/// `POST /v1/targets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTarget {
    pub name: String,
    /// `HOST:PORT`; the host may be a name, resolved when a session is authorised.
    pub address: String,
    pub zone: Option<String>,
    pub service: Option<String>,
    pub vmid: Option<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub pool: Option<String>,
    /// Maximum session duration in seconds.
    pub max_session_secs: Option<u64>,
    /// Connections allowed per session; 0 means unlimited.
    pub connection_limit: Option<u32>,
    /// Pinned SSH host keys (OpenSSH public key lines) for `connect ssh`.
    #[serde(default)]
    pub ssh_host_keys: Vec<String>,
    /// SSH host CAs (OpenSSH public key lines) whose host certificates `connect ssh` trusts.
    #[serde(default)]
    pub ssh_host_cas: Vec<String>,
    /// The Vault SSH secrets mount for this target's certificates (else the configured one).
    #[serde(default)]
    pub vault_ssh_mount: Option<String>,
    /// The Vault SSH role for this target's certificates (else the configured one).
    #[serde(default)]
    pub vault_ssh_role: Option<String>,
    /// Further Vault paths read with the session's token and returned with the session
    /// (e.g. `database/creds/readonly`).
    #[serde(default)]
    pub vault_secrets: Vec<String>,
    /// The `[[catalog.proxmox]]` cluster whose API this target is: sessions to it get a
    /// Proxmox API token minted for them, injected by the worker (the cluster needs a
    /// `sessions` table). Unset: a plain tunnel (e.g. the web UI).
    #[serde(default)]
    pub proxmox_cluster: Option<String>,
    /// Create it even with a zone or service the policy does not know (a warning then),
    /// when the policy comes from a file that a reload can extend.
    #[serde(default)]
    pub force: bool,
}

/// `PATCH /v1/targets/{id}`: fields present are changed; `null` clears an optional field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTarget {
    pub name: Option<String>,
    pub address: Option<String>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub zone: Option<Option<String>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub service: Option<Option<String>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub vmid: Option<Option<u32>>,
    pub tags: Option<Vec<String>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool: Option<Option<String>>,
    pub max_session_secs: Option<u64>,
    pub connection_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_cas: Option<Vec<String>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub vault_ssh_mount: Option<Option<String>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub vault_ssh_role: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_secrets: Option<Vec<String>>,
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxmox_cluster: Option<Option<String>>,
    /// As [`CreateTarget::force`], for a zone or service set here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            None | Some(None) => serializer.serialize_none(),
            Some(Some(v)) => v.serialize(serializer),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub address: String,
    pub zone: Option<String>,
    pub service: Option<String>,
    pub vmid: Option<u32>,
    pub tags: Vec<String>,
    pub pool: Option<String>,
    pub max_session_secs: u64,
    pub connection_limit: u32,
    #[serde(default)]
    pub ssh_host_keys: Vec<String>,
    #[serde(default)]
    pub ssh_host_cas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_ssh_mount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_ssh_role: Option<String>,
    #[serde(default)]
    pub vault_secrets: Vec<String>,
    /// See [`CreateTarget::proxmox_cluster`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox_cluster: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// What the controller let through with `force` (e.g. a zone the policy does not know).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Where a discovered target came from; none for a hand-made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::catalog::TargetSource>,
    /// `false` for a discovered template or stopped guest: listed, never connectable.
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/targets/{id-or-name}/authorize-session`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeSession {
    /// The client's per-session TLS public key: DER `SubjectPublicKeyInfo`, base64url.
    pub client_public_key: String,
    /// An OpenSSH public key to certify for this session (for SSH targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    /// For an injecting Proxmox API target served on a local TCP port: hex SHA-256 of the
    /// local secret every request must carry (the grant's `pve.lsh`). Ignored for other
    /// targets; absent for a unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_secret_sha256: Option<String>,
    /// Open the session under this approved access request (a run's sessions must).
    /// Without it, the controller still finds the user's approved request covering the
    /// target when the user's standing roles do not grant it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_request: Option<crate::access::UnderRequest>,
    /// The proof of a step-up login answering this request's challenge ([`crate::step_up`]):
    /// the same target and `client_public_key` as the challenged request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<crate::step_up::StepUpAnswer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionAuthorization {
    pub session_id: String,
    pub target_id: String,
    pub target_name: String,
    pub worker_id: String,
    /// `HOST:PORT` of the worker's proxy listener.
    pub worker_addr: String,
    /// Hex SHA-256 of the worker's TLS public key (SPKI), to pin.
    pub worker_key_fingerprint: String,
    pub expires_at: u64,
    /// 0 means unlimited.
    pub connection_limit: u32,
    /// The signed grant to present to the worker.
    pub grant: String,
    /// The endpoint the worker will dial (vetted IP and port).
    pub endpoint: String,
    /// The OpenSSH user certificate for `ssh_public_key`, when one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_certificate: Option<String>,
    /// The logins (SSH principals) the policy grants on this target.
    #[serde(default)]
    pub ssh_principals: Vec<String>,
    /// How an SSH session to this target runs. In `gateway` mode no certificate is issued to
    /// the client: it logs into the worker's SSH gateway with the key it sent, as one of
    /// `ssh_principals`, and checks the gateway's host certificate against
    /// `gateway_host_ca` under the name [`crate::gateway::HOST_ALIAS`].
    #[serde(default, skip_serializing_if = "is_certificate_mode")]
    pub ssh_mode: portcullis_policy::SshMode,
    /// The SSH host CA (OpenSSH public key line) that signs gateway host certificates; set in
    /// gateway mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_host_ca: Option<String>,
    /// Which leased secrets Vault gave this session (the target's `vault_secrets`), valid
    /// until the session ends: paths, leases and field names only. The data itself is served
    /// by `GET /v1/sessions/{id}/secrets` ([`SessionSecrets`]), to the session's own user,
    /// each read audited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<LeasedSecretInfo>,
    /// When the API token that authorised the session expires: a client whose token is
    /// refused before then knows it was revoked, which ended the session with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<u64>,
    /// Set for an injecting Proxmox API target: the worker speaks HTTP to the client and
    /// sends the token minted for the session upstream; the CLI serves it as HTTP locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<crate::pve::ProxmoxSession>,
}

/// Certificate mode is the default and is left out on the wire.
fn is_certificate_mode(mode: &portcullis_policy::SshMode) -> bool {
    *mode == portcullis_policy::SshMode::Certificate
}

/// A secret Vault leased to a session (e.g. database credentials); revoked with the session.
/// `Debug` leaves the data out.
#[derive(Clone, Serialize, Deserialize)]
pub struct LeasedSecret {
    /// The Vault path it was read from.
    pub path: String,
    /// Vault's lease id (empty for secrets without a lease).
    pub lease_id: String,
    pub lease_duration_secs: u64,
    /// The secret's data as Vault returned it (e.g. `username`, `password`).
    pub data: serde_json::Value,
}

impl std::fmt::Debug for LeasedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedSecret")
            .field("path", &self.path)
            .field("lease_id", &self.lease_id)
            .field("lease_duration_secs", &self.lease_duration_secs)
            .field("fields", &self.info().fields)
            .finish_non_exhaustive()
    }
}

impl LeasedSecret {
    /// What may be said about the secret without its data: path, lease and field names.
    pub fn info(&self) -> LeasedSecretInfo {
        LeasedSecretInfo {
            path: self.path.clone(),
            lease_id: self.lease_id.clone(),
            lease_duration_secs: self.lease_duration_secs,
            fields: self
                .data
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// A leased secret of a session without its data: the authorize answer lists these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedSecretInfo {
    pub path: String,
    pub lease_id: String,
    pub lease_duration_secs: u64,
    /// The names of the data's fields (e.g. `password`, `username`), sorted.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// `GET /v1/sessions/{id}/secrets`: the session's leased secrets with their data, in the
/// order of the target's `vault_secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSecrets {
    pub session_id: String,
    pub secrets: Vec<LeasedSecret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub target_id: String,
    /// The target's name (empty when the target has been deleted since).
    #[serde(default)]
    pub target_name: String,
    pub worker_id: String,
    pub state: String,
    pub termination_reason: Option<String>,
    pub client_addr: String,
    pub endpoint: String,
    pub connection_limit: u32,
    pub created_at: u64,
    pub expires_at: u64,
    pub activated_at: Option<u64>,
    pub terminated_at: Option<u64>,
    /// How many connections the session has had, open or closed (also in lists, which
    /// leave `connections` empty).
    #[serde(default)]
    pub connection_count: u32,
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    pub id: String,
    pub client_addr: String,
    pub state: String,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub opened_at: u64,
    pub closed_at: Option<u64>,
    pub close_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    pub name: String,
    pub proxy_addr: String,
    pub key_fingerprint: String,
    pub state: String,
    pub created_at: u64,
    pub last_seen_at: Option<u64>,
    pub cert_expires_at: u64,
}

/// `POST /v1/workers/join-tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// Lifetime in seconds (default 3600, at most 86400).
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinToken {
    /// `pjt1.<ca key hash>.<secret>`; shown once.
    pub token: String,
    pub expires_at: u64,
}

/// The cluster link's `join` request: authenticated by the join token alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    pub name: String,
    /// The worker's TLS public key: DER SPKI, base64url.
    pub public_key: String,
    /// `HOST:PORT` clients dial for this worker.
    pub proxy_addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub worker_id: String,
    pub cert_pem: String,
    pub ca_pem: String,
    pub cert_expires_at: u64,
}

/// `POST /v1/sessions/{id}/cancel`; the body is optional (no body: `canceled`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelSession {
    #[serde(default)]
    pub reason: Option<CancelReason>,
}

/// Why a client ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Someone ended it (the default).
    Canceled,
    /// The session's own client ends it because the program it served finished normally
    /// (`connect --stdio`, `--exec`, `connect ssh`); only for the caller's own session.
    Closed,
}

/// A page of a list endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
    /// Where the next page starts (`?after=`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The join token's wire format: `pjt1.<hex sha256 of the CA's SPKI>.<base64url secret>`.
pub mod join_token {
    pub const PREFIX: &str = "pjt1";

    pub fn format(ca_key_hash: &str, secret: &str) -> String {
        format!("{PREFIX}.{ca_key_hash}.{secret}")
    }

    /// Splits a token into (CA key hash, secret), or says what is wrong with it.
    pub fn parse(token: &str) -> Result<(&str, &str), &'static str> {
        let mut parts = token.trim().splitn(3, '.');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(PREFIX), Some(hash), Some(secret))
                if hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && !secret.is_empty() =>
            {
                Ok((hash, secret))
            }
            (Some(PREFIX), _, _) => Err("join token is damaged: expected pjt1.<64 hex>.<secret>"),
            _ => Err("not a Portcullis join token: it must start with `pjt1.`"),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn parses_and_refuses() {
            let hash = "ab".repeat(32);
            let token = super::format(&hash, "s3cret");
            assert_eq!(super::parse(&token), Ok((hash.as_str(), "s3cret")));
            assert!(super::parse("pjt1.zz.s").is_err());
            assert!(super::parse("bearer").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_distinguishes_null_from_absent() {
        let u: UpdateTarget = serde_json::from_str(r#"{"zone":null}"#).unwrap();
        assert_eq!(u.zone, Some(None));
        assert_eq!(u.service, None);
        assert!(serde_json::from_str::<UpdateTarget>(r#"{"zonee":1}"#).is_err());
    }

    #[test]
    fn a_service_token_reads_as_a_login_and_hides_its_secrets() {
        let response = ServiceTokenResponse {
            login: LoginResponse {
                token: "pct_secret".into(),
                expires_at: 10,
                user: UserInfo {
                    id: "u_1".into(),
                    issuer: "service:".into(),
                    subject: "ci".into(),
                    username: "ci".into(),
                    groups: vec!["automation".into()],
                    amr: vec!["svc".into()],
                    acr: None,
                    auth_time: Some(1),
                    permissions: vec![],
                    token_expires_at: Some(10),
                },
            },
            key_fingerprint: "ab".repeat(32),
        };
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["token"], "pct_secret");
        assert_eq!(json["key_fingerprint"], "ab".repeat(32));
        let as_login: LoginResponse = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(as_login.token, "pct_secret");
        let back: ServiceTokenResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back.key_fingerprint, response.key_fingerprint);
        assert!(!format!("{response:?}").contains("pct_secret"));

        let request: ServiceTokenRequest =
            serde_json::from_str(r#"{"assertion":"a.b.c"}"#).unwrap();
        assert!(!format!("{request:?}").contains("a.b.c"));
        assert!(serde_json::from_str::<ServiceTokenRequest>(r#"{"assertion":"a","x":1}"#).is_err());
    }
}
