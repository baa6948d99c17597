//! Validation: from the raw file to a compiled [`Policy`], reporting every problem by line.

mod lints;
mod matrix;
mod proxmox;
mod recording;
mod requestable;
mod roles;
mod zones;

use std::collections::HashMap;

use toml::Spanned;

use crate::diagnostic::{CheckReport, Sink};
use crate::model::RawPolicy;
use crate::policy::{Policy, ServiceId, ZoneId};
use crate::roles::GroupIndex;
use crate::zones::PrefixTable;

/// Compiles `text`. The policy is `Some` only when there are no errors.
pub(crate) fn compile(text: &str) -> (Option<Policy>, CheckReport) {
    let mut sink = Sink::new(text);
    let raw: RawPolicy = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            let line = err.span().and_then(|s| sink.line_of(s));
            sink.report.errors.push(crate::diagnostic::Diagnostic {
                line,
                message: err.message().trim().to_owned(),
            });
            return (None, sink.report);
        }
    };
    let policy = build(text, raw, &mut sink);
    let policy = if sink.has_errors() { None } else { policy };
    (policy, sink.report)
}

/// Names resolved so far, shared by the later steps.
#[derive(Default)]
pub(super) struct Names {
    pub zones: HashMap<String, ZoneId>,
    pub services: HashMap<String, ServiceId>,
    pub sets: HashMap<String, Vec<ServiceId>>,
}

impl Names {
    pub(crate) fn zone(&self, sink: &mut Sink<'_>, name: &Spanned<String>) -> Option<ZoneId> {
        let found = self.zones.get(name.get_ref()).copied();
        if found.is_none() {
            let known: Vec<&str> = {
                let mut v: Vec<(&String, &ZoneId)> = self.zones.iter().collect();
                v.sort_by_key(|(_, id)| **id);
                v.into_iter().map(|(n, _)| n.as_str()).collect()
            };
            sink.error(
                name.span(),
                format!(
                    "unknown zone `{}`; zones are: {}",
                    name.get_ref(),
                    known.join(", ")
                ),
            );
        }
        found
    }

    /// A service or a service set, as a list of services.
    pub(crate) fn services(
        &self,
        sink: &mut Sink<'_>,
        name: &Spanned<String>,
    ) -> Option<Vec<ServiceId>> {
        if let Some(id) = self.services.get(name.get_ref()) {
            return Some(vec![*id]);
        }
        if let Some(ids) = self.sets.get(name.get_ref()) {
            return Some(ids.clone());
        }
        sink.error(
            name.span(),
            format!("unknown service or service set `{}`", name.get_ref()),
        );
        None
    }
}

fn build(text: &str, raw: RawPolicy, sink: &mut Sink<'_>) -> Option<Policy> {
    let hash = hex_sha256(text.as_bytes());
    let mut names = Names::default();
    let zoned = zones::compile_zones(&raw.zones, &mut names, sink);
    let (services, service_sets) = matrix::compile_services(&raw, &mut names, sink);
    let broker = names.zone(sink, &raw.settings.broker_zone);
    let matrix = matrix::compile_cells(&raw.cells, zoned.zones.len(), &services, &names, sink);
    let proxmox_roles = proxmox::compile_proxmox_roles(&raw.proxmox_roles, sink);
    let (roles, groups) = roles::compile_roles(
        &raw.roles,
        &names,
        raw.settings.group_match,
        &proxmox_roles,
        sink,
    );
    let broker = broker?;
    let policy = Policy {
        hash,
        description: raw.settings.description.clone(),
        addresses: PrefixTable::build(zoned.cidrs.iter().copied()),
        zones: zoned.zones,
        zone_by_name: names.zones.clone(),
        services,
        service_by_name: names.services.clone(),
        service_sets,
        broker,
        matrix,
        roles,
        groups: groups.unwrap_or_else(GroupIndex::default),
        vmids: zoned.vmids,
        tags: zoned.tags,
        pools: zoned.pools,
        proxmox_roles,
    };
    lints::check(&policy, &raw, sink);
    recording::check_waivers(&policy, &raw.roles, sink);
    proxmox::check_used(&policy, &raw.roles, sink);
    Some(policy)
}

fn hex_sha256(bytes: &[u8]) -> String {
    portcullis_crypto::digest::sha256_hex(bytes)
}

/// Names of zones, services and roles: letters, digits, `-`, `_`, `.`.
pub(super) fn check_name(sink: &mut Sink<'_>, what: &str, name: &Spanned<String>) -> bool {
    let ok = !name.get_ref().is_empty()
        && name.get_ref().len() <= 64
        && name
            .get_ref()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        sink.error(
            name.span(),
            format!(
                "{what} name `{}` must be 1-64 letters, digits, `-`, `_` or `.`",
                name.get_ref()
            ),
        );
    }
    ok
}

#[cfg(test)]
mod tests;
