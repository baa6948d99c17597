//! The Proxmox identity a `proxmox-api` session acts as: the Proxmox user its token belongs
//! to, the Proxmox roles the token is granted, and the ACL paths it gets them on.
//!
//! A role names either a fixed service user (`user`) or a template over the OIDC subject
//! (`user_template`, only `{{subject}}`: a claim the user can edit, such as
//! `preferred_username` or `email`, could name another person's Proxmox user). The realm is
//! never in the policy: the controller's config fixes it, and `@pam` is never used. Roles
//! that hold a privilege able to grant or change access (see [`FORBIDDEN_PRIVILEGES`]) are
//! refused, built-in or declared, so a session's token can never hand out access.

pub(crate) mod acl_path;
pub(crate) mod builtin;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The service whose sessions act as the granting role's Proxmox identity.
pub const PROXMOX_API_SERVICE: &str = "proxmox-api";

/// The longest Proxmox user name (the part before `@realm`): Proxmox takes user ids of at
/// most 64 characters and a realm of at least 2, so 61; the controller checks the whole
/// id once it adds its realm.
pub const MAX_USER_NAME_LEN: usize = 61;

/// What an allowed `proxmox-api` session's token is: whose it is, and which roles it gets
/// on which paths. The realm is the controller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxmoxGrant {
    /// The Proxmox user name, without `@realm`: the role's `user`, or its `user_template`
    /// rendered with the identity's subject.
    pub user: String,
    /// Proxmox role names, built-in or declared in the policy, in file order.
    pub roles: Vec<String>,
    /// Normalised ACL paths, in file order.
    pub paths: Vec<String>,
    /// Whether the session's proxy lets writes under `/api2/json/access/` through (the
    /// role's `access_writes`, default `false`): a token without user-management privileges
    /// can still change its own user's password or TFA there.
    #[serde(default)]
    pub access_writes: bool,
}

/// Privileges no role of a session's token may hold, with why: each lets the token grant
/// or change access. Every privilege of Proxmox's `User` category is here, with
/// `Permissions.Modify` and `Sys.Modify`.
pub const FORBIDDEN_PRIVILEGES: [(&str, &str); 6] = [
    (
        "Permissions.Modify",
        "it lets the token hand out any privilege through ACLs",
    ),
    (
        "User.Modify",
        "it lets the token create and change users, their tokens and their group memberships",
    ),
    (
        "Group.Allocate",
        "it lets the token create and delete groups, and the ACLs that name them",
    ),
    (
        "Realm.Allocate",
        "it lets the token create and change authentication realms",
    ),
    (
        "Realm.AllocateUser",
        "it lets the token place users in realms",
    ),
    (
        "Sys.Modify",
        "it lets the token change node and cluster settings, roles among them",
    ),
];

/// The forbidden privileges among `privileges`, with why, in [`FORBIDDEN_PRIVILEGES`] order.
pub(crate) fn forbidden_in(
    privileges: &BTreeSet<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    FORBIDDEN_PRIVILEGES
        .into_iter()
        .filter(|(p, _)| privileges.contains(p))
        .collect()
}

/// A Proxmox role the policy file declares (`[[proxmox_role]]`).
#[derive(Debug, Clone)]
pub(crate) struct ProxmoxRole {
    pub name: String,
    pub description: Option<String>,
    pub privileges: BTreeSet<&'static str>,
}

/// A role's `proxmox = { ... }`, validated.
#[derive(Debug, Clone)]
pub(crate) struct ProxmoxIdentity {
    pub user: ProxmoxUser,
    pub roles: Vec<String>,
    pub paths: Vec<String>,
    pub access_writes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProxmoxUser {
    /// `user = "svc-terraform"`: every member acts as this service user.
    Fixed(String),
    /// `user_template = "pc-{{subject}}"`: each member acts as their own user.
    Template(UserTemplate),
}

impl ProxmoxIdentity {
    /// The grant for `subject` (the identity's OIDC `sub`); the error says why none.
    pub(crate) fn grant(&self, subject: &str) -> Result<ProxmoxGrant, String> {
        let user = match &self.user {
            ProxmoxUser::Fixed(name) => name.clone(),
            ProxmoxUser::Template(t) => t.render(subject)?,
        };
        Ok(ProxmoxGrant {
            user,
            roles: self.roles.clone(),
            paths: self.paths.clone(),
            access_writes: self.access_writes,
        })
    }

    /// `pc-{{subject}} with PVEVMUser on /vms/4000, /pool/prod`, for exports.
    pub(crate) fn describe(&self) -> String {
        let user = match &self.user {
            ProxmoxUser::Fixed(name) => name.clone(),
            ProxmoxUser::Template(t) => t.source(),
        };
        format!(
            "{user} with {} on {}",
            self.roles.join(", "),
            self.paths.join(", ")
        )
    }
}

/// Checks a fixed Proxmox user name (without realm); the error says what is wrong.
pub(crate) fn check_user_name(name: &str) -> Result<(), String> {
    if let Some((_, realm)) = name.split_once('@') {
        let pam = if realm == "pam" {
            " (@pam is never used: its users are the hosts' Unix accounts, root among them)"
        } else {
            ""
        };
        return Err(format!(
            "Proxmox user `{name}` names a realm{pam}; write the name alone: the realm comes \
             from the controller's config, and @pam is never used"
        ));
    }
    if !is_user_name(name) {
        return Err(format!(
            "Proxmox user `{name}` must be 1-{MAX_USER_NAME_LEN} letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(())
}

fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_NAME_LEN
        && name.bytes().all(is_user_byte)
        && !name.bytes().all(|b| b == b'.')
}

fn is_user_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// A Proxmox user name template: text and `{{subject}}`, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Subject,
}

impl UserTemplate {
    /// Parses `text`; refuses any placeholder but `{{subject}}`, saying why, and a template
    /// without it.
    pub(crate) fn parse(text: &str) -> Result<UserTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let (before, after) = rest.split_at(open);
            if !before.is_empty() {
                parts.push(Part::Text(before.to_owned()));
            }
            let after = after.get(2..).unwrap_or_default();
            let close = after.find("}}").ok_or_else(|| {
                format!("Proxmox user_template `{text}` has `{{{{` without `}}}}`")
            })?;
            match after.get(..close).unwrap_or_default().trim() {
                "subject" => parts.push(Part::Subject),
                editable @ ("preferred_username" | "email") => {
                    return Err(format!(
                        "Proxmox user_template `{text}` uses `{{{{{editable}}}}}`, a claim the \
                         user can edit in the identity provider: it could name another \
                         person's Proxmox user; use `{{{{subject}}}}` (the OIDC `sub`)"
                    ))
                }
                other => {
                    return Err(format!(
                        "Proxmox user_template `{text}` uses unknown placeholder `{other}`; \
                         only `{{{{subject}}}}` (the OIDC `sub`) is allowed"
                    ))
                }
            }
            rest = after.get(close + 2..).unwrap_or_default();
        }
        if rest.contains("}}") {
            return Err(format!(
                "Proxmox user_template `{text}` has `}}}}` without `{{{{`"
            ));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.contains(&Part::Subject) {
            return Err(format!(
                "Proxmox user_template `{text}` has no `{{{{subject}}}}`; for one service user \
                 write `user = \"...\"` instead"
            ));
        }
        for part in &parts {
            if let Part::Text(t) = part {
                if t.contains('@') {
                    return Err(format!(
                        "Proxmox user_template `{text}` names a realm; the realm comes from the \
                         controller's config, and @pam is never used"
                    ));
                }
                if !t.bytes().all(is_user_byte) {
                    return Err(format!(
                        "Proxmox user_template `{text}` may hold only letters, digits, `-`, \
                         `_` and `.` around `{{{{subject}}}}`"
                    ));
                }
            }
        }
        Ok(UserTemplate { parts })
    }

    /// Renders for `subject`. A subject with a character a Proxmox user name cannot hold is
    /// refused, never mapped to another: `a/b` must not become the user of `a_b`.
    pub(crate) fn render(&self, subject: &str) -> Result<String, String> {
        if subject.is_empty() {
            return Err("the identity has no subject (OIDC `sub`) to name its Proxmox user".into());
        }
        if !subject.bytes().all(is_user_byte) {
            return Err(format!(
                "the subject (OIDC `sub`) `{}` has characters a Proxmox user name cannot hold \
                 (only letters, digits, `-`, `_` and `.`): give the role a fixed `user` instead",
                subject.escape_debug()
            ));
        }
        let user: String = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Subject => subject,
            })
            .collect();
        if !is_user_name(&user) {
            return Err(format!(
                "the Proxmox user `{user}` rendered from the subject is not a valid user name \
                 (1-{MAX_USER_NAME_LEN} letters, digits, `-`, `_` or `.`)"
            ));
        }
        Ok(user)
    }

    /// The template as written, for exports.
    pub(crate) fn source(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Subject => "{{subject}}",
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
