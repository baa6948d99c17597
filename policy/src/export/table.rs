//! The matrix and the roles as plain values, for a page to lay out (the console's policy
//! grid): every zone pair's cell with its services, and each role's groups, grants,
//! constraints and permissions, worded as the Markdown export words them.

use crate::model::Access;
use crate::permission::Permission;
use crate::policy::Policy;

/// The zone matrix: `rows[i].cells[j]` is the cell from `zones[i]` to `zones[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    /// Zone names in file order, the rows' and the columns'.
    pub zones: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

/// The cells from one source zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixRow {
    pub from: String,
    pub cells: Vec<MatrixCell>,
}

/// One cell. A cell the file does not declare is a deny with no services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixCell {
    pub to: String,
    pub access: Access,
    /// The services the cell admits (none for a deny).
    pub services: Vec<String>,
    pub same_microsegment: bool,
    pub note: Option<String>,
}

/// A role as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSummary {
    pub name: String,
    pub description: Option<String>,
    pub groups: Vec<String>,
    /// `exact` or `path`.
    pub group_match: &'static str,
    /// Each grant as `ZONES: SERVICES [as LOGINS]`.
    pub grants: Vec<String>,
    /// `; `-separated constraints; empty when there are none.
    pub constraints: String,
    pub permissions: Vec<Permission>,
    /// For a requestable role, its terms in words (who requests, who approves, how long,
    /// break-glass); `None` for a standing role.
    pub requestable: Option<String>,
}

/// The whole matrix, every zone against every zone.
pub fn matrix(policy: &Policy) -> Matrix {
    let n = policy.zones.len();
    let rows = (0..n)
        .map(|src| MatrixRow {
            from: policy.zone_name(src).to_owned(),
            cells: (0..n)
                .map(|dst| {
                    let cell = policy.cell(src, dst);
                    let deny = !cell.declared || cell.access == Access::Deny;
                    MatrixCell {
                        to: policy.zone_name(dst).to_owned(),
                        access: if deny { Access::Deny } else { cell.access },
                        services: if deny {
                            Vec::new()
                        } else {
                            cell.services
                                .iter()
                                .map(|s| policy.service_name(s).to_owned())
                                .collect()
                        },
                        same_microsegment: !deny && cell.same_microsegment,
                        note: cell.note.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    Matrix {
        zones: policy.zone_names().map(str::to_owned).collect(),
        rows,
    }
}

/// The roles in file order.
pub fn roles(policy: &Policy) -> Vec<RoleSummary> {
    policy
        .roles
        .iter()
        .map(|role| RoleSummary {
            name: role.name.clone(),
            description: role.description.clone(),
            groups: role.groups.clone(),
            group_match: match role.group_match {
                crate::model::GroupMatch::Exact => "exact",
                crate::model::GroupMatch::Path => "path",
            },
            grants: role
                .grants
                .iter()
                .map(|g| super::markdown::grant_text(policy, g))
                .collect(),
            constraints: super::markdown::constraints_text(policy, role),
            permissions: role.permissions.iter().copied().collect(),
            requestable: role
                .requestable
                .as_ref()
                .map(|r| super::requestable::terms_text(&role.groups, r)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[settings]
broker_zone = "ADMIN"

[[zone]]
name = "ADMIN"
cidrs = ["10.10.0.0/16"]

[[zone]]
name = "WORK"
cidrs = ["10.40.0.0/16"]

[[zone]]
name = "DMZ"
cidrs = ["10.50.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[service]]
name = "https"
ports = [443]

[[cell]]
from = "ADMIN"
to = "WORK"
access = "broker-only"
services = ["ssh", "https"]
note = "through a session"

[[cell]]
from = "WORK"
to = "DMZ"
access = "allow"
services = ["https"]

[[cell]]
from = "DMZ"
to = "ADMIN"
access = "deny"

[[role]]
name = "ops"
description = "operators"
groups = ["ops"]
permissions = ["audit:read"]

[[role.grant]]
zones = ["WORK"]
services = ["ssh"]
logins = ["root"]
"#;

    #[test]
    fn every_zone_pair_has_a_cell_and_undeclared_ones_deny() {
        let policy = Policy::parse(POLICY).unwrap();
        let m = matrix(&policy);
        assert_eq!(m.zones, ["ADMIN", "WORK", "DMZ"]);
        assert_eq!(m.rows.len(), 3);
        assert!(m.rows.iter().all(|r| r.cells.len() == 3));
        let cell = |from: usize, to: usize| &m.rows[from].cells[to];
        assert_eq!(cell(0, 1).access, Access::BrokerOnly);
        assert_eq!(cell(0, 1).services, ["ssh", "https"]);
        assert_eq!(cell(0, 1).note.as_deref(), Some("through a session"));
        assert_eq!(cell(1, 2).access, Access::Allow);
        assert_eq!(cell(1, 2).services, ["https"]);
        assert_eq!(cell(2, 0).access, Access::Deny);
        assert_eq!(cell(0, 0).access, Access::Deny, "undeclared");
        assert!(cell(0, 0).services.is_empty());
        assert_eq!(
            (m.rows[2].from.as_str(), cell(2, 0).to.as_str()),
            ("DMZ", "ADMIN")
        );
    }

    #[test]
    fn roles_read_as_the_markdown_export_words_them() {
        let policy = Policy::parse(POLICY).unwrap();
        let roles = roles(&policy);
        assert_eq!(roles.len(), 1);
        let ops = &roles[0];
        assert_eq!(ops.name, "ops");
        assert_eq!(ops.description.as_deref(), Some("operators"));
        assert_eq!(ops.groups, ["ops"]);
        assert_eq!(ops.group_match, "exact");
        assert_eq!(ops.grants, ["WORK: ssh as root"]);
        assert_eq!(ops.permissions, [Permission::AuditRead]);
        assert_eq!(ops.requestable, None);
    }

    #[test]
    fn requestable_roles_carry_their_terms() {
        let text = format!(
            "{POLICY}\n[[role]]\nname = \"work-oncall\"\ngroups = [\"devs\"]\n[[role.grant]]\nzones = [\"WORK\"]\nservices = [\"ssh\"]\n[role.requestable]\napprovers = [\"leads\"]\napprovals = 2\nmax_duration = \"4h\"\nreason_required = true\npreapproved = [\"bots\"]\n[role.requestable.break_glass]\nmax_duration = \"1h\"\n"
        );
        let policy = Policy::parse(&text).unwrap();
        let roles = roles(&policy);
        assert_eq!(
            roles[1].requestable.as_deref(),
            Some("requested by devs; approved by 2 of leads; at most 4h; reason required; preapproved for bots; break-glass up to 1h (self-approved, reason required)")
        );
        let md = crate::export::markdown(&policy);
        assert!(
            md.contains("| **work-oncall** | requested by devs; approved by 2 of leads;"),
            "{md}"
        );
        assert!(md.contains("devs (exact), by request only"), "{md}");
    }
}
