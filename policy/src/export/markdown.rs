//! The seed-style Markdown: zones, services, the matrix table and the roles.

use std::fmt::Write as _;

use crate::model::Access;
use crate::policy::{Cell, Grant, Policy, Role};
use crate::ssh::SshMode;

/// The policy as Markdown tables, laid out like the seed's firewall matrix.
pub fn markdown(policy: &Policy) -> String {
    let mut out = String::new();
    header(policy, &mut out);
    zones_table(policy, &mut out);
    services_table(policy, &mut out);
    matrix_table(policy, &mut out);
    roles_table(policy, &mut out);
    super::requestable::requestable_table(policy, &mut out);
    proxmox_tables(policy, &mut out);
    out
}

/// The title, the description, the policy's hash and the legend.
fn header(policy: &Policy, out: &mut String) {
    let _ = writeln!(out, "# Zone firewall matrix\n");
    if let Some(d) = &policy.description {
        let _ = writeln!(out, "{}\n", escape(d));
    }
    let _ = writeln!(out, "Policy SHA-256: `{}`\n", policy.hash);
    let _ = writeln!(
        out,
        "Legend: `->` allowed, `X` blocked, `0` only through a Portcullis session, `E` only with mTLS. \
         Broker zone (the workers' leg): **{}**.\n",
        policy.broker_zone()
    );
}

fn zones_table(policy: &Policy, out: &mut String) {
    let _ = writeln!(out, "## Zones\n");
    let _ = writeln!(
        out,
        "| Zone | Trust | CIDRs | VMIDs | Tags / pools | Description |"
    );
    let _ = writeln!(
        out,
        "| ---- | ----- | ----- | ----- | ------------ | ----------- |"
    );
    for z in &policy.zones {
        let cidrs: Vec<String> = z.cidrs.iter().map(ToString::to_string).collect();
        let mut vmids: Vec<String> = z.vmids.iter().map(|(s, e)| format!("{s}-{e}")).collect();
        if let Some(ms) = z.microsegments {
            vmids.push(format!(
                "(microsegments of {} VMIDs, /{})",
                ms.vmids_per_segment, ms.prefix_len
            ));
        }
        let labels: Vec<String> = z
            .tags
            .iter()
            .map(|t| format!("tag {t}"))
            .chain(z.pools.iter().map(|p| format!("pool {p}")))
            .collect();
        let _ = writeln!(
            out,
            "| **{}** | {} | {} | {} | {} | {} |",
            escape(&z.name),
            z.trust.map_or("", |t| t.as_str()),
            cidrs.join(", "),
            vmids.join(" "),
            escape(&labels.join(", ")),
            escape(z.description.as_deref().unwrap_or("")),
        );
    }
    let gateway_only: Vec<String> = policy
        .zones
        .iter()
        .filter(|z| z.ssh_mode == SshMode::Gateway)
        .map(|z| format!("**{}**", escape(&z.name)))
        .collect();
    if !gateway_only.is_empty() {
        let _ = writeln!(
            out,
            "\nSSH sessions into {} use the gateway (`ssh_mode = \"gateway\"`): the worker checks every channel and the user never holds the target's credential.",
            gateway_only.join(", ")
        );
    }
    recorded_zones(policy, out);
}

/// The zones that require recording, with those that capture typed input and those that
/// let a recording that cannot be written go on unrecorded.
fn recorded_zones(policy: &Policy, out: &mut String) {
    let names = |keep: fn(&crate::recording::ZoneRecording) -> bool| -> Vec<String> {
        policy
            .zones
            .iter()
            .filter(|z| keep(&z.recording))
            .map(|z| format!("**{}**", escape(&z.name)))
            .collect()
    };
    let recorded = names(|r| r.rule.required);
    if recorded.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "\nSessions into {} are recorded (`record = true`), whatever the role says",
        recorded.join(", ")
    );
    let input = names(|r| r.rule.input);
    if !input.is_empty() {
        let _ = write!(
            out,
            "; recordings into {} capture typed input too (`record_input = true`)",
            input.join(", ")
        );
    }
    let fallback = names(|r| r.unrecorded_fallback);
    if fallback.is_empty() {
        let _ = writeln!(
            out,
            ". A recording that cannot be written closes the channel."
        );
    } else {
        let _ = writeln!(
            out,
            ". A recording that cannot be written closes the channel, except that sessions into {} go on unrecorded (`unrecorded_fallback = true`) when no role requires the recording.",
            fallback.join(", ")
        );
    }
}

/// The services, then the service sets.
fn services_table(policy: &Policy, out: &mut String) {
    let _ = writeln!(out, "\n## Services\n");
    let _ = writeln!(
        out,
        "| Service | Protocol | Ports | Only in | Description |"
    );
    let _ = writeln!(
        out,
        "| ------- | -------- | ----- | ------- | ----------- |"
    );
    for s in &policy.services {
        let only: Vec<&str> = s
            .zones
            .iter()
            .flat_map(|z| z.iter())
            .map(|z| policy.zone_name(z))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            escape(&s.name),
            s.protocol.as_str(),
            s.ports.render("-"),
            only.join(", "),
            escape(s.description.as_deref().unwrap_or("")),
        );
    }
    for (name, members) in &policy.service_sets {
        let members: Vec<&str> = members.iter().map(|m| policy.service_name(*m)).collect();
        let _ = writeln!(out, "\nService set `{name}` = {}.", members.join(", "));
    }
}

fn matrix_table(policy: &Policy, out: &mut String) {
    let n = policy.zones.len();
    let declared = |src: usize, dst: usize| policy.cell(src, dst).declared;
    let rows: Vec<usize> = (0..n).filter(|s| (0..n).any(|d| declared(*s, d))).collect();
    let cols: Vec<usize> = (0..n).filter(|d| (0..n).any(|s| declared(s, *d))).collect();
    let _ = writeln!(out, "\n## Matrix (zero trust: default deny)\n");
    let mut header = String::from("| SRC -> DST |");
    let mut rule = String::from("| ---------- |");
    for c in &cols {
        let _ = write!(header, " {} |", escape(policy.zone_name(*c)));
        rule.push_str(" --- |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for r in &rows {
        let mut line = format!("| **{}** |", escape(policy.zone_name(*r)));
        for c in &cols {
            let _ = write!(line, " {} |", cell_text(policy, policy.cell(*r, *c)));
        }
        let _ = writeln!(out, "{line}");
    }
}

fn cell_text(policy: &Policy, cell: &Cell) -> String {
    if !cell.declared || cell.access == Access::Deny {
        return "X".into();
    }
    let services: Vec<&str> = cell
        .services
        .iter()
        .map(|s| policy.service_name(s))
        .collect();
    let mut text = format!("{} {}", cell.access.symbol(), services.join(", "));
    if cell.same_microsegment {
        text.push_str(" (same microsegment)");
    }
    if let Some(note) = &cell.note {
        let _ = write!(text, " — {note}");
    }
    escape(&text)
}

fn roles_table(policy: &Policy, out: &mut String) {
    let _ = writeln!(out, "\n## Roles\n");
    let _ = writeln!(
        out,
        "| Role | Groups | Grants | Constraints | Permissions |"
    );
    let _ = writeln!(
        out,
        "| ---- | ------ | ------ | ----------- | ----------- |"
    );
    for role in &policy.roles {
        let grants: Vec<String> = role.grants.iter().map(|g| grant_text(policy, g)).collect();
        let permissions: Vec<&str> = role.permissions.iter().map(|p| p.as_str()).collect();
        let groups = format!(
            "{} ({}){}",
            role.groups.join(", "),
            match role.group_match {
                crate::model::GroupMatch::Exact => "exact",
                crate::model::GroupMatch::Path => "path",
            },
            if role.requestable.is_some() {
                ", by request only"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "| **{}**{} | {} | {} | {} | {} |",
            escape(&role.name),
            role.description
                .as_ref()
                .map(|d| format!(": {}", escape(d)))
                .unwrap_or_default(),
            escape(&groups),
            escape(&if grants.is_empty() {
                "nothing".to_owned()
            } else {
                grants.join("; ")
            }),
            escape(&constraints_text(policy, role)),
            permissions.join(", "),
        );
    }
}

/// A role's constraints, `; `-separated, with its SSH mode and channels and its recording
/// where it sets them.
pub(super) fn constraints_text(policy: &Policy, role: &Role) -> String {
    let c = &role.constraints;
    let mut constraints = Vec::new();
    if let Some(s) = c.max_session_secs {
        constraints.push(format!("max {s} s"));
    }
    if let Some(n) = c.connection_limit {
        constraints.push(format!("{n} connections"));
    }
    if let Some(src) = &c.source_zones {
        let names: Vec<&str> = src.iter().map(|z| policy.zone_name(z)).collect();
        constraints.push(format!("from {}", names.join(", ")));
    }
    if let Some(mfa) = &c.mfa {
        constraints.push(format!("MFA: {}", mfa.describe()));
    }
    if role.ssh_mode == SshMode::Gateway {
        constraints.push("SSH through the gateway".into());
    }
    if let Some(rights) = role.ssh {
        constraints.push(format!("SSH channels: {}", rights.describe()));
    }
    if role.recording.required {
        constraints.push(if role.recording.input {
            "sessions recorded, with typed input".into()
        } else {
            "sessions recorded".into()
        });
    }
    constraints.join("; ")
}

pub(super) fn grant_text(policy: &Policy, g: &Grant) -> String {
    let zones = if g.all_zones {
        "every zone".to_owned()
    } else {
        g.zones
            .iter()
            .map(|z| policy.zone_name(z))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let services = if g.all_services {
        "every service".to_owned()
    } else {
        g.services
            .iter()
            .map(|s| policy.service_name(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!("{zones}: {services}");
    if !g.logins.is_empty() {
        let logins: Vec<String> = g.logins.iter().map(|l| l.source()).collect();
        let _ = write!(text, " as {}", logins.join(", "));
    }
    if g.ssh_mode == SshMode::Gateway {
        text.push_str(" (SSH through the gateway)");
    }
    text
}

pub(super) fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The roles' Proxmox identities and the declared Proxmox roles; nothing when there are none.
fn proxmox_tables(policy: &Policy, out: &mut String) {
    let identities: Vec<&Role> = policy
        .roles
        .iter()
        .filter(|r| r.proxmox.is_some())
        .collect();
    if identities.is_empty() && policy.proxmox_roles.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## Proxmox API identities\n");
    let _ = writeln!(
        out,
        "A `proxmox-api` session's token is the user below, in the realm of the controller's config, with these Proxmox roles on these ACL paths.\n"
    );
    let _ = writeln!(out, "| Role | Proxmox identity |");
    let _ = writeln!(out, "| ---- | ---------------- |");
    for role in identities {
        if let Some(p) = &role.proxmox {
            let _ = writeln!(
                out,
                "| **{}** | {} |",
                escape(&role.name),
                escape(&p.describe())
            );
        }
    }
    if policy.proxmox_roles.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n| Declared Proxmox role | Privileges | Description |"
    );
    let _ = writeln!(out, "| --------------------- | ---------- | ----------- |");
    for r in &policy.proxmox_roles {
        let privileges: Vec<&str> = r.privileges.iter().copied().collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            escape(&r.name),
            privileges.join(", "),
            escape(r.description.as_deref().unwrap_or(""))
        );
    }
}
