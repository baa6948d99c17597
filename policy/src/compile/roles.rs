//! Roles: members, grants, logins, constraints and permissions.

use std::collections::{BTreeSet, HashSet};

use super::{check_name, Names};
use crate::diagnostic::Sink;
use crate::model::{GroupMatch, RawGrant, RawRole};
use crate::permission::Permission;
use crate::policy::{Grant, IdSet, Mfa, Role, RoleConstraints};
use crate::proxmox_access::ProxmoxRole;
use crate::request::SERVICE_ACCOUNT_AMR;
use crate::roles::{GroupIndex, Template};

pub(super) fn compile_roles(
    raw: &[RawRole],
    names: &Names,
    default_match: GroupMatch,
    proxmox_roles: &[ProxmoxRole],
    sink: &mut Sink<'_>,
) -> (Vec<Role>, Option<GroupIndex>) {
    let mut roles = Vec::new();
    let mut index = GroupIndex::default();
    let mut seen = HashSet::new();
    for rr in raw {
        check_name(sink, "role", &rr.name);
        if !seen.insert(rr.name.get_ref().clone()) {
            sink.error(
                rr.name.span(),
                format!("role `{}` is defined twice", rr.name.get_ref()),
            );
        }
        let id = roles.len();
        let group_match = rr.group_match.unwrap_or(default_match);
        let requestable = super::requestable::compile_requestable(rr, sink);
        let mut groups = Vec::new();
        for g in &rr.groups {
            if g.get_ref().trim().is_empty() {
                sink.error(g.span(), "a group name is empty");
                continue;
            }
            // A requestable role's groups are who may request it: never standing members.
            if requestable.is_none() {
                index.add(id, g.get_ref(), group_match);
            }
            groups.push(g.get_ref().clone());
        }
        let mut permissions = BTreeSet::new();
        for p in &rr.permissions {
            match p.get_ref().parse::<Permission>() {
                Ok(p) => {
                    permissions.insert(p);
                }
                Err(err) => sink.error(p.span(), err.to_string()),
            }
        }
        let grants = rr
            .grants
            .iter()
            .map(|g| compile_grant(g, names, sink))
            .collect();
        roles.push(Role {
            name: rr.name.get_ref().clone(),
            description: rr.description.clone(),
            groups,
            group_match,
            permissions,
            grants,
            constraints: compile_constraints(rr, names, sink),
            ssh: rr.ssh,
            ssh_mode: rr.ssh_mode.unwrap_or_default(),
            recording: super::recording::role_recording(sink, rr),
            proxmox: super::proxmox::compile_identity(rr, proxmox_roles, sink),
            requestable,
        });
    }
    (roles, Some(index))
}

fn compile_grant(raw: &RawGrant, names: &Names, sink: &mut Sink<'_>) -> Grant {
    let mut grant = Grant {
        zones: IdSet::default(),
        services: IdSet::default(),
        logins: Vec::new(),
        all_zones: false,
        all_services: false,
        ssh_mode: raw.ssh_mode.unwrap_or_default(),
    };
    for z in &raw.zones {
        if z.get_ref() == "*" {
            grant.all_zones = true;
            grant.zones = IdSet::full(names.zones.len());
        } else if let Some(id) = names.zone(sink, z) {
            grant.zones.insert(id);
        }
    }
    for s in &raw.services {
        if s.get_ref() == "*" {
            grant.all_services = true;
            grant.services = IdSet::full(names.services.len());
        } else {
            for id in names.services(sink, s).unwrap_or_default() {
                grant.services.insert(id);
            }
        }
    }
    for login in &raw.logins {
        match Template::parse(login.get_ref()) {
            Ok(t) => grant.logins.push(t),
            Err(message) => sink.error(login.span(), message),
        }
    }
    grant
}

fn compile_constraints(rr: &RawRole, names: &Names, sink: &mut Sink<'_>) -> RoleConstraints {
    let Some(raw) = &rr.constraints else {
        return RoleConstraints::default();
    };
    let mut out = RoleConstraints {
        max_session_secs: raw.max_session_secs.as_ref().map(|v| *v.get_ref()),
        connection_limit: raw.connection_limit.as_ref().map(|v| *v.get_ref()),
        source_zones: None,
        mfa: None,
    };
    if let Some(v) = &raw.max_session_secs {
        if *v.get_ref() == 0 {
            sink.error(v.span(), "max_session_secs must be at least 1");
        }
    }
    if let Some(v) = &raw.connection_limit {
        if *v.get_ref() == 0 {
            sink.error(
                v.span(),
                "connection_limit must be at least 1 (leave it out for no limit)",
            );
        }
    }
    if let Some(list) = &raw.source_zones {
        let mut set = IdSet::default();
        for z in list {
            if let Some(id) = names.zone(sink, z) {
                set.insert(id);
            }
        }
        out.source_zones = Some(set);
    }
    if let Some(mfa) = &raw.mfa {
        let m = mfa.get_ref();
        if m.amr.is_empty() && m.acr.is_empty() {
            sink.error(
                mfa.span(),
                "constraints.mfa needs `amr` or `acr` values that count as MFA (e.g. amr = [\"mfa\", \"otp\"])",
            );
        }
        if m.amr.iter().any(|a| a == SERVICE_ACCOUNT_AMR) {
            sink.error(
                mfa.span(),
                format!(
                    "constraints.mfa.amr must not list `{SERVICE_ACCOUNT_AMR}` (it marks service accounts, not a second factor): to let service accounts through, set service_accounts = true"
                ),
            );
        }
        out.mfa = Some(Mfa {
            amr: m.amr.clone(),
            acr: m.acr.clone(),
            max_auth_age_secs: m.max_auth_age_secs,
            service_accounts: m.service_accounts,
        });
    }
    out
}
