//! The privileges Proxmox VE knows and the roles it builds in, as facts.
//!
//! This table mirrors how pve-access-control 9.1 (`PVE::AccessControl`, 9.1.1) constructs
//! its built-in roles; it states those facts and copies no code. Proxmox sorts privileges
//! into categories, each split into `root` (only root@pam may hold them in a built-in role),
//! `admin`, `user` and `audit` groups, and derives the roles from the groups:
//! - `PVE<Category>Admin`: the category's admin, user and audit privileges;
//! - `PVEAdmin`: the admin, user and audit privileges of every category, minus
//!   `Mapping.Modify`;
//! - `PVE<Category>User`: the user and audit privileges, only for categories with user
//!   privileges (so there is no `PVESysUser` or `PVEUserUser`);
//! - `PVEAuditor`: every audit privilege;
//! - `PVETemplateUser`: `VM.Clone` and `VM.Audit`;
//! - `Administrator`: every privilege, including `Permissions.Modify` (in no category);
//! - `NoAccess`: none.

use std::collections::BTreeSet;

/// One category of privileges and its four groups.
struct Category {
    name: &'static str,
    root: &'static [&'static str],
    admin: &'static [&'static str],
    user: &'static [&'static str],
    audit: &'static [&'static str],
}

const CATEGORIES: [Category; 7] = [
    Category {
        name: "VM",
        root: &[],
        admin: &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        user: &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        audit: &["VM.Audit", "VM.GuestAgent.Audit"],
    },
    Category {
        name: "Sys",
        root: &[
            "Sys.PowerMgmt",
            "Sys.Modify",
            "Sys.Incoming",
            "Sys.AccessNetwork",
        ],
        admin: &["Sys.Console", "Sys.Syslog"],
        user: &[],
        audit: &["Sys.Audit"],
    },
    Category {
        name: "Datastore",
        root: &[],
        admin: &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        user: &["Datastore.AllocateSpace"],
        audit: &["Datastore.Audit"],
    },
    Category {
        name: "SDN",
        root: &[],
        admin: &["SDN.Allocate", "SDN.Audit"],
        user: &["SDN.Use"],
        audit: &["SDN.Audit"],
    },
    Category {
        name: "User",
        root: &["Realm.Allocate"],
        admin: &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        user: &[],
        audit: &[],
    },
    Category {
        name: "Pool",
        root: &[],
        admin: &["Pool.Allocate"],
        user: &["Pool.Audit"],
        audit: &["Pool.Audit"],
    },
    Category {
        name: "Mapping",
        root: &[],
        admin: &["Mapping.Modify"],
        user: &["Mapping.Use"],
        audit: &["Mapping.Audit"],
    },
];

/// The one privilege in no category.
const PERMISSIONS_MODIFY: &str = "Permissions.Modify";

/// A privilege name Proxmox knows, as the `'static` string of this table.
pub(crate) fn privilege(name: &str) -> Option<&'static str> {
    all_privileges().into_iter().find(|p| *p == name)
}

/// Every privilege Proxmox knows.
pub(crate) fn all_privileges() -> BTreeSet<&'static str> {
    let mut all = BTreeSet::from([PERMISSIONS_MODIFY]);
    for c in &CATEGORIES {
        all.extend(c.root.iter().chain(c.admin).chain(c.user).chain(c.audit));
    }
    all
}

/// The names of the built-in roles, sorted.
pub(crate) fn builtin_role_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "PVEAdmin",
        "PVEAuditor",
        "PVETemplateUser",
        "Administrator",
        "NoAccess",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for c in &CATEGORIES {
        names.push(format!("PVE{}Admin", c.name));
        if !c.user.is_empty() {
            names.push(format!("PVE{}User", c.name));
        }
    }
    names.sort();
    names
}

/// The privileges of a built-in role; `None` for a name Proxmox does not build in.
pub(crate) fn builtin_role(name: &str) -> Option<BTreeSet<&'static str>> {
    match name {
        "Administrator" => return Some(all_privileges()),
        "NoAccess" => return Some(BTreeSet::new()),
        "PVETemplateUser" => return Some(BTreeSet::from(["VM.Clone", "VM.Audit"])),
        "PVEAdmin" => {
            let mut privs: BTreeSet<&'static str> = CATEGORIES
                .iter()
                .flat_map(|c| c.admin.iter().chain(c.user).chain(c.audit))
                .copied()
                .collect();
            privs.remove("Mapping.Modify");
            return Some(privs);
        }
        "PVEAuditor" => {
            return Some(
                CATEGORIES
                    .iter()
                    .flat_map(|c| c.audit.iter().copied())
                    .collect(),
            )
        }
        _ => {}
    }
    let rest = name.strip_prefix("PVE")?;
    CATEGORIES.iter().find_map(|c| {
        let kind = rest.strip_prefix(c.name)?;
        match kind {
            "Admin" => Some(
                c.admin
                    .iter()
                    .chain(c.user)
                    .chain(c.audit)
                    .copied()
                    .collect(),
            ),
            "User" if !c.user.is_empty() => Some(c.user.iter().chain(c.audit).copied().collect()),
            _ => None,
        }
    })
}
