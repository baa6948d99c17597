//! Just-in-time access: requests for a requestable role, their approvals, and the automation
//! runs that hold one approved request for a command's lifetime (`/v1/requests`).
//!
//! A request asks for one role of the policy, limited to a list of targets or to one target
//! zone, for a duration. It is `pending` until it has the approvals the role asks for (N
//! distinct approvers, never the requester), then `approved` for its window (from the last
//! approval to `expires_at`), and ends `denied`, `revoked` or `expired`. A break-glass request
//! approves itself (with a mandatory reason) for the role's short break-glass maximum.
//!
//! A run (`portcullis run`) is an approved request whose sessions come only from the process
//! that started it: each session it opens carries the request id and a signature by the run's
//! key ([`run_proof_message`]), and the run ends when that process says so or stops sending
//! keepalives.

use serde::{Deserialize, Serialize};

/// `POST /v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessRequest {
    /// A role the policy marks requestable.
    pub role: String,
    /// Target names or ids the request covers; empty when `zone` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// One target zone the request covers (instead of `targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// How long the access lasts once approved, in seconds (at most the role's `max_duration`,
    /// or its break-glass maximum).
    pub duration_secs: u64,
    /// Why; required when the role says `reason_required`, and for break-glass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Approve it oneself, now, as the role's break-glass allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// For `portcullis run`: the command the run will start (for the audit and the
    /// approvers; argv, never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_command: Option<Vec<String>>,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Granted: sessions may open until `expires_at`.
    Approved,
    Denied,
    /// Ended early by the requester, an approver or an administrator (or its run ended).
    Revoked,
    /// Its window ended, or it was never approved in time.
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Revoked => "revoked",
            RequestState::Expired => "expired",
        }
    }

    /// Whether the request can still change (pending or approved).
    pub fn is_open(self) -> bool {
        matches!(self, RequestState::Pending | RequestState::Approved)
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RequestState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => RequestState::Pending,
            "approved" => RequestState::Approved,
            "denied" => RequestState::Denied,
            "revoked" => RequestState::Revoked,
            "expired" => RequestState::Expired,
            other => {
                return Err(format!(
                    "unknown request state `{other}`: one of pending, approved, denied, revoked, expired"
                ))
            }
        })
    }
}

/// A request as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub role: String,
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub state: RequestState,
    pub reason: Option<String>,
    pub break_glass: bool,
    pub duration_secs: u64,
    pub created_at: u64,
    /// When it was approved (the window's start).
    pub approved_at: Option<u64>,
    /// The end of the window once approved; the deadline for approvals while pending.
    pub expires_at: u64,
    /// Approvals still needed while pending (0 once approved).
    pub approvals_needed: u32,
    pub approvals: Vec<Approval>,
    /// Who denied or revoked it, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

/// One approver's approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    pub user_id: String,
    pub username: String,
    pub at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/requests/{id}/approve`, `/deny`, `/revoke`: the body is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The run a request carries, when `portcullis run` made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub command: Vec<String>,
    /// When `portcullis run` started the command (`None`: not yet).
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// The command's exit status; `None` while it runs, or when it died by a signal or the
    /// run process was lost.
    pub exit_status: Option<i32>,
    /// How it ended: `exited`, `signaled`, `lost` (no keepalive), `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The sessions opened under the run.
    #[serde(default)]
    pub sessions: Vec<String>,
}

/// `POST /v1/requests/{id}/run/start`: the run process starts its command now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The run's Ed25519 public key (DER SubjectPublicKeyInfo, base64url). Every session
    /// under the run carries a signature by it ([`run_proof_message`]). The private half
    /// never leaves the `portcullis run` process.
    pub run_public_key: String,
    /// Seconds between keepalives the run promises; the run is lost after three missed.
    pub keepalive_secs: u64,
}

/// `POST /v1/requests/{id}/run/finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRun {
    /// The command's exit status, or `None` when a signal ended it.
    pub exit_status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// On `POST /v1/targets/{id}/authorize-session`: the approved request a session opens under.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnderRequest {
    pub request_id: String,
    /// For a run: base64url Ed25519 signature by the run's key over
    /// [`run_proof_message`] for this session's client public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_proof: Option<String>,
}

/// The bytes a run's key signs to open one session under the run: the request id and the
/// session's own (fresh, per-session) client public key, so a proof serves one session only.
pub fn run_proof_message(request_id: &str, client_public_key: &str) -> Vec<u8> {
    format!("portcullis-run-v1\n{request_id}\n{client_public_key}").into_bytes()
}

/// The environment variable naming the unix socket through which a run's command and its
/// descendants open sessions (`connect`, `ssh-config`'s ProxyCommand): the socket's
/// directory is 0700 and owned by the user; the socket carries no key or token.
pub const RUN_SOCKET_ENV: &str = "PORTCULLIS_RUN_SOCKET";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_what_they_print() {
        for s in [
            RequestState::Pending,
            RequestState::Approved,
            RequestState::Denied,
            RequestState::Revoked,
            RequestState::Expired,
        ] {
            assert_eq!(s.as_str().parse::<RequestState>(), Ok(s));
        }
        assert!("granted".parse::<RequestState>().is_err());
        assert!(RequestState::Approved.is_open());
        assert!(!RequestState::Expired.is_open());
    }

    #[test]
    fn a_run_proof_names_the_request_and_the_session_key() {
        let a = run_proof_message("r_1", "KEY1");
        assert_ne!(a, run_proof_message("r_2", "KEY1"));
        assert_ne!(a, run_proof_message("r_1", "KEY2"));
    }

    #[test]
    fn a_create_body_with_an_unknown_field_is_refused() {
        let err = serde_json::from_str::<CreateAccessRequest>(
            r#"{"role":"r","duration_secs":60,"approved":true}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("approved"), "{err}");
    }
}
