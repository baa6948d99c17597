//! Wire types of identities the controller holds itself (docs/auth.md): local users' logins
//! (`POST /v1/auth/local/login`), their administration over the API (`/v1/users/local`), and
//! service accounts (`/v1/users/services`). The service account's token exchange is in
//! [`crate::api::ServiceTokenRequest`].
//!
//! Every field that carries a secret (a password, a TOTP code or secret, a recovery code, a
//! ticket) has a `Debug` that shows `<secret>`.

use serde::{Deserialize, Serialize};

use crate::api::LoginResponse;

/// Writes `<secret>` for a present secret and `None` for an absent one.
fn redacted<T>(value: &Option<T>) -> &'static str {
    if value.is_some() {
        "<secret>"
    } else {
        "None"
    }
}

/// `POST /v1/auth/local/login`: one step of a local user's login.
///
/// The client sends the name and password; the controller answers either with a token
/// ([`LocalLoginAnswer::LoggedIn`]) or with what is still needed
/// ([`LocalLoginAnswer::Continue`]), and the client sends the name and password again with
/// the missing pieces. A login whose password must change (a generated password, the
/// bootstrap credential) needs `new_password`; a user without TOTP enrolls it in the same
/// login (unless the deployment sets `allow_password_only`) by answering the offer's ticket
/// with a code.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalLoginRequest {
    pub username: String,
    /// The current password (for the first admin: the bootstrap credential).
    pub password: String,
    /// The 6-digit code of the user's authenticator app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_code: Option<String>,
    /// One of the user's recovery codes, instead of `totp_code` (each works once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_code: Option<String>,
    /// The password that replaces the current one, when [`LocalLoginStep::NewPassword`] is
    /// asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_password: Option<String>,
    /// The answer to a [`TotpEnrolmentOffer`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_enrolment: Option<TotpEnrolmentAnswer>,
}

impl std::fmt::Debug for LocalLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLoginRequest")
            .field("username", &self.username)
            .field("password", &"<secret>")
            .field("totp_code", &redacted(&self.totp_code))
            .field("recovery_code", &redacted(&self.recovery_code))
            .field("new_password", &redacted(&self.new_password))
            .field("totp_enrolment", &self.totp_enrolment)
            .finish()
    }
}

/// The code that proves the user's app holds the offered TOTP secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrolmentAnswer {
    /// [`TotpEnrolmentOffer::ticket`], echoed.
    pub ticket: String,
    /// The app's current code for the offered secret.
    pub code: String,
}

impl std::fmt::Debug for TotpEnrolmentAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolmentAnswer(<secret>)")
    }
}

/// The answer to a [`LocalLoginRequest`] whose password was right (a wrong name, password or
/// code is a 401 `invalid_credentials`, the same for each; a back-off is a 429 with
/// `Retry-After`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LocalLoginAnswer {
    /// Logged in (HTTP 201).
    LoggedIn(LocalLoggedIn),
    /// More is needed (HTTP 200): send the request again with every step of `needs`.
    Continue(LocalLoginContinue),
}

/// A finished local login: the token, as any login returns it.
#[derive(Clone, Serialize, Deserialize)]
pub struct LocalLoggedIn {
    #[serde(flatten)]
    pub login: LoginResponse,
    /// The new recovery codes when this login enrolled TOTP (shown once, each works once);
    /// empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
    /// How many unused recovery codes remain (when the user has any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes_left: Option<u32>,
}

impl std::fmt::Debug for LocalLoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLoggedIn")
            .field("token", &"<secret>")
            .field("expires_at", &self.login.expires_at)
            .field("user", &self.login.user)
            .field("recovery_codes", &self.recovery_codes.len())
            .field("recovery_codes_left", &self.recovery_codes_left)
            .finish()
    }
}

/// What a local login still needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalLoginContinue {
    pub needs: Vec<LocalLoginStep>,
    /// Present when `needs` has [`LocalLoginStep::TotpEnrolment`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_enrolment: Option<TotpEnrolmentOffer>,
    /// What to tell the person, e.g. "set a new password of at least 12 characters".
    pub message: String,
}

/// One missing piece of a local login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalLoginStep {
    /// `totp_code` (or `recovery_code`).
    TotpCode,
    /// `new_password`: the current one was set by an administrator or is the bootstrap
    /// credential.
    NewPassword,
    /// `totp_enrolment`: the user has no TOTP yet and must enrol one.
    TotpEnrolment,
}

/// A TOTP secret offered for enrolment; it is stored only when a code for it comes back
/// with the ticket (within the ticket's lifetime).
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpEnrolmentOffer {
    /// Opaque; the offered secret sealed by the controller for this user, with an expiry.
    pub ticket: String,
    /// The secret in base32 (RFC 4648, no padding), for apps that cannot scan.
    pub secret_base32: String,
    /// `otpauth://totp/...` (the QR code's text).
    pub otpauth_uri: String,
    /// Unix seconds after which the ticket is refused.
    pub expires_at: u64,
}

impl std::fmt::Debug for TotpEnrolmentOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolmentOffer")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A local user as the API shows it (never a credential, only its state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUserView {
    pub id: String,
    pub username: String,
    pub groups: Vec<String>,
    pub totp_enrolled: bool,
    pub must_change_password: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
    /// Unix seconds; absent: enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<u64>,
    pub created_at: u64,
}

/// `POST /v1/users/local` (`portcullis users add NAME --groups G`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLocalUser {
    pub username: String,
    /// Each must be among `[auth.local] allowed_groups`.
    pub groups: Vec<String>,
}

/// The answer to [`AddLocalUser`] and to `POST /v1/users/local/{name}/reset`: the user and
/// its generated one-time password (shown once; replaced at the first login).
#[derive(Clone, Serialize, Deserialize)]
pub struct LocalUserChanged {
    pub user: LocalUserView,
    pub one_time_password: String,
}

impl std::fmt::Debug for LocalUserChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUserChanged")
            .field("user", &self.user)
            .field("one_time_password", &"<secret>")
            .finish()
    }
}

/// `GET /v1/users/local`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalUserList {
    pub users: Vec<LocalUserView>,
}

/// `POST /v1/users/local/{name}/disable`: the user can no longer log in; its tokens are
/// revoked and its live sessions end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalUserDisabled {
    pub user: LocalUserView,
    pub revoked_token_ids: Vec<String>,
}

/// `POST /v1/users/services` (`portcullis users add-service NAME --groups G --public-key
/// FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddServiceAccount {
    pub name: String,
    /// Each must be among `[auth.local] allowed_groups`.
    pub groups: Vec<String>,
    /// The account's Ed25519 public key, OpenSSH one-line form (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
}

/// A service account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountView {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    /// The key's fingerprint ([`crate::keys::ed25519_fingerprint`]).
    pub key_fingerprint: String,
    /// Unix seconds; absent: the key is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_revoked_at: Option<u64>,
    pub created_at: u64,
}

/// `GET /v1/users/services`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAccountList {
    pub accounts: Vec<ServiceAccountView>,
}

/// `POST /v1/users/services/{name}/revoke-key`: the key no longer obtains tokens and the
/// tokens it obtained are revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceKeyRevoked {
    pub account: ServiceAccountView,
    pub revoked_token_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let request = LocalLoginRequest {
            username: "ana".into(),
            password: "hunter2-hunter2".into(),
            totp_code: Some("123456".into()),
            recovery_code: Some("abcd-efgh".into()),
            new_password: Some("correct horse".into()),
            totp_enrolment: Some(TotpEnrolmentAnswer {
                ticket: "ticket-xyz".into(),
                code: "654321".into(),
            }),
        };
        let shown = format!("{request:?}");
        for secret in [
            "hunter2",
            "123456",
            "abcd-efgh",
            "correct horse",
            "ticket-xyz",
            "654321",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("ana"), "{shown}");
    }

    #[test]
    fn answers_are_tagged_by_status() {
        let answer = LocalLoginAnswer::Continue(LocalLoginContinue {
            needs: vec![LocalLoginStep::NewPassword, LocalLoginStep::TotpEnrolment],
            totp_enrolment: None,
            message: "set a new password".into(),
        });
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["status"], "continue");
        assert_eq!(json["needs"][1], "totp_enrolment");
        let back: LocalLoginAnswer = serde_json::from_value(json).unwrap();
        assert!(matches!(back, LocalLoginAnswer::Continue(c) if c.needs.len() == 2));
    }

    #[test]
    fn a_request_refuses_unknown_fields() {
        let err = serde_json::from_str::<LocalLoginRequest>(
            r#"{"username":"a","password":"b","otp":"1"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("otp"), "{err}");
    }
}
