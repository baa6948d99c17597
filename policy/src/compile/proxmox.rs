//! Proxmox identities: the `[[proxmox_role]]` declarations and each role's `proxmox`.

use std::collections::{BTreeSet, HashSet};

use toml::Spanned;

use super::check_name;
use crate::diagnostic::Sink;
use crate::model::{RawProxmoxIdentity, RawProxmoxRole, RawRole};
use crate::proxmox_access::{
    acl_path, builtin, check_user_name, forbidden_in, ProxmoxIdentity, ProxmoxRole, ProxmoxUser,
    UserTemplate,
};

/// The declared Proxmox roles; a declaration holding a forbidden privilege is an error.
pub(super) fn compile_proxmox_roles(
    raw: &[RawProxmoxRole],
    sink: &mut Sink<'_>,
) -> Vec<ProxmoxRole> {
    let mut roles: Vec<ProxmoxRole> = Vec::new();
    for rr in raw {
        let name = rr.name.get_ref();
        check_name(sink, "Proxmox role", &rr.name);
        if builtin::builtin_role(name).is_some() || name.to_ascii_lowercase().starts_with("pve") {
            sink.error(
                rr.name.span(),
                format!(
                    "Proxmox role `{name}` is built in or in Proxmox's reserved `PVE` namespace; \
                     name the role a role is mapped to directly, or declare one with another name"
                ),
            );
            continue;
        }
        if roles.iter().any(|r| r.name == *name) {
            sink.error(
                rr.name.span(),
                format!("Proxmox role `{name}` is declared twice"),
            );
            continue;
        }
        let mut privileges = BTreeSet::new();
        for p in rr.privileges.get_ref() {
            match builtin::privilege(p.get_ref()) {
                Some(known) => {
                    privileges.insert(known);
                }
                None => sink.error(
                    p.span(),
                    format!(
                        "unknown Proxmox privilege `{}`; Proxmox VE 9.1 knows: {}",
                        p.get_ref(),
                        builtin::all_privileges()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if rr.privileges.get_ref().is_empty() {
            sink.error(
                rr.privileges.span(),
                format!(
                    "Proxmox role `{name}` declares no privileges; list the ones its sessions need"
                ),
            );
        }
        refuse_forbidden(sink, rr.name.span(), name, &privileges);
        roles.push(ProxmoxRole {
            name: name.clone(),
            description: rr.description.clone(),
            privileges,
        });
    }
    roles
}

/// A role's `proxmox`, if it has one; every problem is reported.
pub(super) fn compile_identity(
    rr: &RawRole,
    declared: &[ProxmoxRole],
    sink: &mut Sink<'_>,
) -> Option<ProxmoxIdentity> {
    let spanned = rr.proxmox.as_ref()?;
    let raw: &RawProxmoxIdentity = spanned.get_ref();
    let role = rr.name.get_ref();
    let user = match (&raw.user, &raw.user_template) {
        (Some(user), None) => match check_user_name(user.get_ref()) {
            Ok(()) => Some(ProxmoxUser::Fixed(user.get_ref().clone())),
            Err(message) => {
                sink.error(user.span(), message);
                None
            }
        },
        (None, Some(template)) => match UserTemplate::parse(template.get_ref()) {
            Ok(t) => Some(ProxmoxUser::Template(t)),
            Err(message) => {
                sink.error(template.span(), message);
                None
            }
        },
        (Some(_), Some(_)) | (None, None) => {
            sink.error(
                spanned.span(),
                format!(
                    "role `{role}`: proxmox needs exactly one of `user` (a service user) and \
                     `user_template` (e.g. \"pc-{{{{subject}}}}\")"
                ),
            );
            None
        }
    };
    let roles = proxmox_roles(role, spanned, &raw.roles, declared, sink);
    let paths = acl_paths(role, spanned, &raw.paths, sink);
    Some(ProxmoxIdentity {
        user: user?,
        roles,
        paths,
        access_writes: raw.access_writes,
    })
}

/// The Proxmox roles a role's identity gets: each built in or declared, none forbidden.
fn proxmox_roles(
    role: &str,
    spanned: &Spanned<RawProxmoxIdentity>,
    raw: &[Spanned<String>],
    declared: &[ProxmoxRole],
    sink: &mut Sink<'_>,
) -> Vec<String> {
    if raw.is_empty() {
        sink.error(
            spanned.span(),
            format!("role `{role}`: proxmox needs `roles`, the Proxmox roles its sessions get"),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for r in raw {
        let name = r.get_ref();
        let privileges = builtin::builtin_role(name).or_else(|| {
            declared
                .iter()
                .find(|d| d.name == *name)
                .map(|d| d.privileges.clone())
        });
        let Some(privileges) = privileges else {
            sink.error(
                r.span(),
                format!(
                    "unknown Proxmox role `{name}`: neither built in ({}) nor declared with \
                     [[proxmox_role]]",
                    builtin::builtin_role_names().join(", ")
                ),
            );
            continue;
        };
        // A declared role's own declaration already reported its forbidden privileges.
        if builtin::builtin_role(name).is_some() {
            refuse_forbidden(sink, r.span(), name, &privileges);
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// The normalised ACL paths of a role's identity.
fn acl_paths(
    role: &str,
    spanned: &Spanned<RawProxmoxIdentity>,
    raw: &[Spanned<String>],
    sink: &mut Sink<'_>,
) -> Vec<String> {
    if raw.is_empty() {
        sink.error(
            spanned.span(),
            format!(
                "role `{role}`: proxmox needs `paths`, the ACL paths its roles apply on \
                 (e.g. [\"/vms/4000\", \"/pool/prod\"])"
            ),
        );
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in raw {
        match acl_path::normalise(p.get_ref()) {
            Ok(path) => {
                if seen.insert(path.clone()) {
                    out.push(path);
                }
            }
            Err(message) => sink.error(p.span(), message),
        }
    }
    out
}

/// Reports a Proxmox role holding privileges that grant or change access.
fn refuse_forbidden(
    sink: &mut Sink<'_>,
    span: std::ops::Range<usize>,
    name: &str,
    privileges: &BTreeSet<&'static str>,
) {
    let forbidden = forbidden_in(privileges);
    if forbidden.is_empty() {
        return;
    }
    let held: Vec<String> = forbidden
        .iter()
        .map(|(p, why)| format!("`{p}` ({why})"))
        .collect();
    sink.error(
        span,
        format!(
            "Proxmox role `{name}` holds {}: a session's token must never be able to grant or \
             change access; use a role without them, or declare a [[proxmox_role]] with only \
             the privileges the sessions need",
            held.join(", ")
        ),
    );
}

/// Warns about a role whose Proxmox identity no session can use: it grants no
/// `proxmox-api` service.
pub(super) fn check_used(policy: &crate::policy::Policy, raw: &[RawRole], sink: &mut Sink<'_>) {
    let service = policy
        .service_by_name
        .get(crate::proxmox_access::PROXMOX_API_SERVICE)
        .copied();
    for (role, rr) in policy.roles.iter().zip(raw) {
        let (Some(_), Some(spanned)) = (&role.proxmox, &rr.proxmox) else {
            continue;
        };
        let used = service.is_some_and(|s| role.grants.iter().any(|g| g.services.contains(s)));
        if !used {
            sink.warning(
                spanned.span(),
                format!(
                    "role `{}` names a Proxmox identity but grants no `{}` service: only \
                     `{}` sessions act as it",
                    role.name,
                    crate::proxmox_access::PROXMOX_API_SERVICE,
                    crate::proxmox_access::PROXMOX_API_SERVICE
                ),
            );
        }
    }
}
