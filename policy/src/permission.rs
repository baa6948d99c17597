//! Controller permissions a role may hold.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A controller permission, granted by role membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// `targets:admin`: create, change and delete targets.
    #[serde(rename = "targets:admin")]
    TargetsAdmin,
    /// `workers:admin`: register workers, issue and revoke join tokens.
    #[serde(rename = "workers:admin")]
    WorkersAdmin,
    /// `sessions:read-all`: see everyone's sessions, not only one's own.
    #[serde(rename = "sessions:read-all")]
    SessionsReadAll,
    /// `sessions:cancel-any`: cancel anyone's session.
    #[serde(rename = "sessions:cancel-any")]
    SessionsCancelAny,
    /// `policy:reload`: reload the policy file.
    #[serde(rename = "policy:reload")]
    PolicyReload,
    /// `audit:read`: read the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// `users:revoke`: revoke all of a user's API tokens and end their sessions.
    #[serde(rename = "users:revoke")]
    UsersRevoke,
    /// `recordings:read`: read, play and export anyone's session recordings (a session's
    /// own user may always read its recordings).
    #[serde(rename = "recordings:read")]
    RecordingsRead,
    /// `users:admin`: add, list, show, disable and reset local users and service accounts,
    /// granting only the groups `[auth.local] allowed_groups` lists; each action also needs
    /// a login that met MFA.
    #[serde(rename = "users:admin")]
    UsersAdmin,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 9] = [
        Permission::TargetsAdmin,
        Permission::WorkersAdmin,
        Permission::SessionsReadAll,
        Permission::SessionsCancelAny,
        Permission::PolicyReload,
        Permission::AuditRead,
        Permission::UsersRevoke,
        Permission::RecordingsRead,
        Permission::UsersAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TargetsAdmin => "targets:admin",
            Permission::WorkersAdmin => "workers:admin",
            Permission::SessionsReadAll => "sessions:read-all",
            Permission::SessionsCancelAny => "sessions:cancel-any",
            Permission::PolicyReload => "policy:reload",
            Permission::AuditRead => "audit:read",
            Permission::UsersRevoke => "users:revoke",
            Permission::RecordingsRead => "recordings:read",
            Permission::UsersAdmin => "users:admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{0}`; known: targets:admin, workers:admin, sessions:read-all, sessions:cancel-any, policy:reload, audit:read, users:revoke, recordings:read, users:admin")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.to_string().parse::<Permission>(), Ok(p));
        }
        assert!("targets:write".parse::<Permission>().is_err());
    }
}
