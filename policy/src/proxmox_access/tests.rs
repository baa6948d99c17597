use std::collections::BTreeSet;

use super::builtin::{all_privileges, builtin_role, builtin_role_names};
use super::*;
use crate::request::{Identity, Outcome, Request, TargetFacts};
use crate::{check, evaluate, explain, export, Policy};

/// Two zones, `proxmox-api` and `ssh`; a role per way of naming an identity, one without.
pub(crate) const PVE_POLICY: &str = r#"
[settings]
broker_zone = "BROKER"

[[zone]]
name = "ADMIN"
cidrs = ["10.10.0.0/16"]

[[zone]]
name = "BROKER"
cidrs = ["10.10.5.0/24"]

[[zone]]
name = "PVE"
cidrs = ["10.20.0.0/24"]

[[service]]
name = "proxmox-api"
ports = [8006]

[[service]]
name = "ssh"
ports = [22]

[[cell]]
from = "ADMIN"
to = "PVE"
access = "broker-only"
services = ["proxmox-api", "ssh"]

[[cell]]
from = "BROKER"
to = "PVE"
access = "allow"
services = ["proxmox-api", "ssh"]

[[proxmox_role]]
name = "TerraformVM"
description = "What the bpg provider needs for VMs"
privileges = ["VM.Allocate", "VM.Config.Disk", "VM.Audit", "Datastore.AllocateSpace", "VM.Audit"]

[[role]]
name = "terraform"
groups = ["tf"]
proxmox = { user = "svc-terraform", roles = ["TerraformVM"], paths = ["/vms/4000", "//pool/prod/"] }
[[role.grant]]
zones = ["PVE"]
services = ["proxmox-api", "ssh"]

[[role]]
name = "ops"
groups = ["ops"]
proxmox = { user_template = "pc-{{subject}}", roles = ["PVEVMUser", "PVEAuditor"], paths = ["/vms", "/"], access_writes = true }
[[role.grant]]
zones = ["PVE"]
services = ["proxmox-api"]

[[role]]
name = "viewer"
groups = ["viewer"]
[[role.grant]]
zones = ["PVE"]
services = ["proxmox-api"]
"#;

fn policy() -> Policy {
    Policy::parse(PVE_POLICY).unwrap()
}

fn request(groups: &[&str], port: u16, subject: &str) -> Request {
    Request {
        source: "10.10.1.1".parse().unwrap(),
        target: TargetFacts {
            ip: "10.20.0.9".parse().unwrap(),
            port,
            vmid: None,
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: None,
        },
        identity: Identity {
            subject: subject.into(),
            preferred_username: Some("alice".into()),
            email: Some("alice@example.org".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        },
        via_broker: true,
    }
}

/// The errors of `PVE_POLICY` with `role` appended as one more role granting proxmox-api.
fn errors_with(extra: &str) -> Vec<String> {
    let text = format!("{PVE_POLICY}\n{extra}\n");
    check(&text).errors.into_iter().map(|d| d.message).collect()
}

fn role_with(proxmox: &str) -> String {
    format!(
        "[[role]]\nname = \"x\"\ngroups = [\"x\"]\nproxmox = {proxmox}\n[[role.grant]]\nzones = [\"PVE\"]\nservices = [\"proxmox-api\"]\n"
    )
}

fn one_error(extra: &str) -> String {
    let errors = errors_with(extra);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

// ---- the built-in roles (pve-access-control 9.1's construction) ----

#[test]
fn builtin_roles_are_the_seventeen_proxmox_builds() {
    assert_eq!(
        builtin_role_names(),
        [
            "Administrator",
            "NoAccess",
            "PVEAdmin",
            "PVEAuditor",
            "PVEDatastoreAdmin",
            "PVEDatastoreUser",
            "PVEMappingAdmin",
            "PVEMappingUser",
            "PVEPoolAdmin",
            "PVEPoolUser",
            "PVESDNAdmin",
            "PVESDNUser",
            "PVESysAdmin",
            "PVETemplateUser",
            "PVEUserAdmin",
            "PVEVMAdmin",
            "PVEVMUser",
        ]
    );
    for name in builtin_role_names() {
        assert!(builtin_role(&name).is_some(), "{name}");
    }
    assert_eq!(
        builtin_role("PVESysUser"),
        None,
        "Sys has no user privileges"
    );
    assert_eq!(builtin_role("PVEUserUser"), None);
    assert_eq!(builtin_role("TerraformVM"), None);
}

#[test]
fn builtin_role_privileges_follow_the_category_groups() {
    let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<_>>();
    let admin = builtin_role("PVEAdmin").unwrap();
    for held in [
        "User.Modify",
        "Group.Allocate",
        "Realm.AllocateUser",
        "Sys.Console",
    ] {
        assert!(admin.contains(held), "PVEAdmin holds {held}");
    }
    for not_held in [
        "Permissions.Modify",
        "Sys.Modify",
        "Sys.PowerMgmt",
        "Realm.Allocate",
        "Mapping.Modify",
    ] {
        assert!(!admin.contains(not_held), "PVEAdmin lacks {not_held}");
    }
    assert_eq!(
        builtin_role("PVESysAdmin").unwrap(),
        set(&["Sys.Audit", "Sys.Console", "Sys.Syslog"])
    );
    assert_eq!(
        builtin_role("PVEVMUser").unwrap(),
        set(&[
            "VM.Audit",
            "VM.Backup",
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.GuestAgent.Audit",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ])
    );
    assert_eq!(
        builtin_role("PVEAuditor").unwrap(),
        set(&[
            "Datastore.Audit",
            "Mapping.Audit",
            "Pool.Audit",
            "SDN.Audit",
            "Sys.Audit",
            "VM.Audit",
            "VM.GuestAgent.Audit",
        ])
    );
    assert_eq!(
        builtin_role("PVESDNAdmin").unwrap(),
        set(&["SDN.Allocate", "SDN.Audit", "SDN.Use"])
    );
    assert_eq!(builtin_role("PVEPoolUser").unwrap(), set(&["Pool.Audit"]));
    assert_eq!(
        builtin_role("PVETemplateUser").unwrap(),
        set(&["VM.Audit", "VM.Clone"])
    );
    assert_eq!(builtin_role("NoAccess").unwrap(), BTreeSet::new());
    assert_eq!(builtin_role("Administrator").unwrap(), all_privileges());
    assert!(all_privileges().contains("Permissions.Modify"));
    assert!(!all_privileges().contains("VM.Monitor"), "gone in 9.x");
    // 23 VM, 7 Sys, 4 Datastore, 3 SDN, 4 User, 2 Pool, 3 Mapping, and Permissions.Modify.
    assert_eq!(all_privileges().len(), 47);
}

// ---- ACL paths ----

#[test]
fn acl_paths_are_normalised_and_limited_to_the_proxmox_shapes() {
    for (written, normal) in [
        ("/", "/"),
        ("//", "/"),
        ("/vms", "/vms"),
        ("/vms/4000/", "/vms/4000"),
        ("//pool//prod", "/pool/prod"),
        ("/pool/prod/sub/leaf", "/pool/prod/sub/leaf"),
        ("/storage/local-lvm", "/storage/local-lvm"),
        ("/nodes/pve-1", "/nodes/pve-1"),
        ("/sdn/zones/z1/vnet1/100", "/sdn/zones/z1/vnet1/100"),
        ("/mapping/pci/gpu0", "/mapping/pci/gpu0"),
    ] {
        assert_eq!(
            acl_path::normalise(written).as_deref(),
            Ok(normal),
            "{written}"
        );
    }
    for refused in [
        "vms/4000",
        "/vms/42",
        "/vms/04000",
        "/vms/abc",
        "/pool/a/b/c/d",
        "/storage/a b",
        "/storage/..",
        "/vms/./4000",
        "/mapping/a/b/c",
        "/sdn/zones/z/v/0",
        "/cluster",
        "",
    ] {
        assert!(acl_path::normalise(refused).is_err(), "{refused}");
    }
    assert_eq!(acl_path::normalise("/pool").as_deref(), Ok("/pool"));
}

#[test]
fn acl_paths_under_access_are_refused_saying_why() {
    for path in [
        "/access",
        "/access/",
        "/access/groups/admins",
        "//access/realm/pve",
    ] {
        let err = acl_path::normalise(path).unwrap_err();
        assert!(err.contains("under /access"), "{path}: {err}");
    }
}

// ---- users and templates ----

#[test]
fn fixed_users_refuse_realms_and_pam_by_name() {
    assert_eq!(check_user_name("svc-terraform"), Ok(()));
    let err = check_user_name("root@pam").unwrap_err();
    assert!(err.contains("@pam is never used"), "{err}");
    assert!(
        err.contains("the realm comes from the controller's config"),
        "{err}"
    );
    assert!(check_user_name("svc@pve")
        .unwrap_err()
        .contains("names a realm"));
    assert!(check_user_name("a b").is_err());
    assert!(check_user_name("a/b").is_err());
    assert!(check_user_name("..").is_err());
    assert!(check_user_name("").is_err());
    assert!(check_user_name(&"a".repeat(MAX_USER_NAME_LEN)).is_ok());
    assert!(check_user_name(&"a".repeat(MAX_USER_NAME_LEN + 1)).is_err());
}

#[test]
fn templates_take_only_the_subject_and_say_why() {
    let t = UserTemplate::parse("pc-{{ subject }}").unwrap();
    assert_eq!(t.source(), "pc-{{subject}}");
    assert_eq!(t.render("f1e2-33").as_deref(), Ok("pc-f1e2-33"));
    for editable in ["{{preferred_username}}", "pc-{{email}}"] {
        let err = UserTemplate::parse(editable).unwrap_err();
        assert!(err.contains("a claim the user can edit"), "{err}");
    }
    assert!(UserTemplate::parse("{{groups}}")
        .unwrap_err()
        .contains("only `{{subject}}`"));
    assert!(UserTemplate::parse("svc")
        .unwrap_err()
        .contains("write `user"));
    assert!(UserTemplate::parse("{{subject}}@pam")
        .unwrap_err()
        .contains("@pam is never used"));
    assert!(UserTemplate::parse("pc {{subject}}").is_err());
    assert!(UserTemplate::parse("{{subject").is_err());
    assert!(UserTemplate::parse("subject}}").is_err());
}

#[test]
fn rendering_refuses_subjects_outside_the_name_set_instead_of_mapping_them() {
    let t = UserTemplate::parse("pc-{{subject}}").unwrap();
    assert_eq!(t.render("a_b").as_deref(), Ok("pc-a_b"));
    let err = t.render("a/b").unwrap_err();
    assert!(err.contains("cannot hold"), "{err}");
    for bad in ["auth0|123", "a@b", "a b", "ü", "a:b", "a\nb"] {
        assert!(t.render(bad).is_err(), "{bad:?}");
    }
    assert!(t.render("").unwrap_err().contains("no subject"));
    let long = "a".repeat(MAX_USER_NAME_LEN);
    assert!(t
        .render(&long)
        .unwrap_err()
        .contains("not a valid user name"));
}

// ---- the policy file ----

#[test]
fn the_example_policy_compiles_with_normalised_paths_and_no_warnings() {
    let report = check(PVE_POLICY);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let policy = policy();
    let tf = policy.roles.iter().find(|r| r.name == "terraform").unwrap();
    let identity = tf.proxmox.as_ref().unwrap();
    assert_eq!(identity.paths, ["/vms/4000", "/pool/prod"]);
    assert_eq!(policy.proxmox_roles.len(), 1);
    assert_eq!(policy.proxmox_roles[0].privileges.len(), 4, "VM.Audit once");
}

#[test]
fn forbidden_builtin_roles_are_refused_naming_role_privilege_and_why() {
    let err = one_error(&role_with(
        r#"{ user = "svc", roles = ["PVEAdmin"], paths = ["/"] }"#,
    ));
    assert!(
        err.contains("Proxmox role `PVEAdmin` holds `User.Modify`"),
        "{err}"
    );
    assert!(
        err.contains("never be able to grant or change access"),
        "{err}"
    );
    let err = one_error(&role_with(
        r#"{ user = "svc", roles = ["Administrator"], paths = ["/"] }"#,
    ));
    for p in [
        "Permissions.Modify",
        "Sys.Modify",
        "Realm.Allocate",
        "User.Modify",
    ] {
        assert!(err.contains(&format!("`{p}`")), "{p}: {err}");
    }
    let err = one_error(&role_with(
        r#"{ user = "svc", roles = ["PVEUserAdmin"], paths = ["/"] }"#,
    ));
    assert!(err.contains("`PVEUserAdmin`"), "{err}");
    // Roles without them are fine, PVESysAdmin (Console, Syslog, Audit) among them.
    assert!(errors_with(&role_with(
        r#"{ user = "svc", roles = ["PVESysAdmin", "PVEVMAdmin", "NoAccess"], paths = ["/"] }"#,
    ))
    .is_empty());
}

#[test]
fn declared_roles_with_forbidden_privileges_are_refused() {
    for privilege in [
        "Permissions.Modify",
        "User.Modify",
        "Sys.Modify",
        "Realm.Allocate",
        "Group.Allocate",
        "Realm.AllocateUser",
    ] {
        let err = one_error(&format!(
            "[[proxmox_role]]\nname = \"Sneaky\"\nprivileges = [\"VM.Audit\", \"{privilege}\"]\n"
        ));
        assert!(
            err.contains(&format!("Proxmox role `Sneaky` holds `{privilege}` (")),
            "{err}"
        );
    }
}

#[test]
fn declared_roles_need_known_privileges_and_their_own_names() {
    let err = one_error("[[proxmox_role]]\nname = \"R\"\nprivileges = [\"VM.Monitor\"]\n");
    assert!(
        err.contains("unknown Proxmox privilege `VM.Monitor`"),
        "{err}"
    );
    let err = one_error("[[proxmox_role]]\nname = \"R\"\nprivileges = []\n");
    assert!(err.contains("declares no privileges"), "{err}");
    for reserved in ["PVEVMUser", "pveCustom", "Administrator"] {
        let err = one_error(&format!(
            "[[proxmox_role]]\nname = \"{reserved}\"\nprivileges = [\"VM.Audit\"]\n"
        ));
        assert!(err.contains("reserved"), "{err}");
    }
    let err = one_error("[[proxmox_role]]\nname = \"TerraformVM\"\nprivileges = [\"VM.Audit\"]\n");
    assert!(err.contains("declared twice"), "{err}");
}

#[test]
fn unknown_roles_fail_closed() {
    let err = one_error(&role_with(
        r#"{ user = "svc", roles = ["PVEVMUsr"], paths = ["/vms"] }"#,
    ));
    assert!(err.contains("unknown Proxmox role `PVEVMUsr`"), "{err}");
    assert!(err.contains("[[proxmox_role]]"), "{err}");
}

#[test]
fn an_identity_needs_one_user_roles_and_valid_paths() {
    let err = one_error(&role_with(
        r#"{ user = "a", user_template = "{{subject}}", roles = ["PVEVMUser"], paths = ["/vms"] }"#,
    ));
    assert!(err.contains("exactly one of `user`"), "{err}");
    let err = one_error(&role_with(r#"{ roles = ["PVEVMUser"], paths = ["/vms"] }"#));
    assert!(err.contains("exactly one of `user`"), "{err}");
    let err = one_error(&role_with(r#"{ user = "a", paths = ["/vms"] }"#));
    assert!(err.contains("needs `roles`"), "{err}");
    let err = one_error(&role_with(r#"{ user = "a", roles = ["PVEVMUser"] }"#));
    assert!(err.contains("needs `paths`"), "{err}");
    let err = one_error(&role_with(
        r#"{ user = "a", roles = ["PVEVMUser"], paths = ["/access/groups"] }"#,
    ));
    assert!(err.contains("under /access"), "{err}");
    let err = one_error(&role_with(
        r#"{ user = "root@pam", roles = ["PVEVMUser"], paths = ["/vms"] }"#,
    ));
    assert!(err.contains("@pam is never used"), "{err}");
    let err = one_error(&role_with(
        r#"{ user_template = "{{preferred_username}}", roles = ["PVEVMUser"], paths = ["/vms"] }"#,
    ));
    assert!(err.contains("a claim the user can edit"), "{err}");
    let err = one_error(&role_with(
        r#"{ user = "a", roles = ["PVEVMUser"], paths = ["/vms"], realm = "pve" }"#,
    ));
    assert!(err.contains("unknown field `realm`"), "{err}");
}

#[test]
fn an_identity_no_proxmox_api_grant_uses_is_a_warning() {
    let text = format!(
        "{PVE_POLICY}\n[[role]]\nname = \"x\"\ngroups = [\"x\"]\nproxmox = {{ user = \"a\", roles = [\"PVEVMUser\"], paths = [\"/vms\"] }}\n[[role.grant]]\nzones = [\"PVE\"]\nservices = [\"ssh\"]\n"
    );
    let report = check(&text);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0]
        .message
        .contains("grants no `proxmox-api`"));
}

// ---- the decision ----

#[test]
fn a_fixed_service_user_is_the_grant() {
    let d = evaluate(&policy(), &request(&["tf"], 8006, "s-1"), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(
        d.proxmox,
        Some(ProxmoxGrant {
            user: "svc-terraform".into(),
            roles: vec!["TerraformVM".into()],
            paths: vec!["/vms/4000".into(), "/pool/prod".into()],
            access_writes: false,
        })
    );
}

#[test]
fn access_writes_are_off_unless_the_role_lets_them_through() {
    let fixed = evaluate(&policy(), &request(&["tf"], 8006, "s-1"), 0);
    assert!(!fixed.proxmox.expect("terraform's grant").access_writes);
    let ops = evaluate(&policy(), &request(&["ops"], 8006, "s-1"), 0);
    assert!(ops.proxmox.expect("ops' grant").access_writes);
}

#[test]
fn a_template_renders_the_subject_never_the_username() {
    let d = evaluate(&policy(), &request(&["ops"], 8006, "f1e2"), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    let grant = d.proxmox.unwrap();
    assert_eq!(grant.user, "pc-f1e2");
    assert_eq!(grant.roles, ["PVEVMUser", "PVEAuditor"]);
    assert_eq!(grant.paths, ["/vms", "/"]);
}

#[test]
fn a_subject_that_cannot_be_a_user_name_is_denied_with_why() {
    let d = evaluate(&policy(), &request(&["ops"], 8006, "a/b"), 0);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        d.reason.contains("role `ops` grants `proxmox-api`"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("cannot hold"), "{}", d.reason);
    assert!(d.roles.is_empty() && d.proxmox.is_none());
    assert!(d.role_rule.unwrap().contains("role ops: Proxmox identity"));
}

#[test]
fn two_granting_roles_with_identities_are_denied_naming_them() {
    let d = evaluate(&policy(), &request(&["tf", "ops"], 8006, "s"), 0);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        d.reason.contains("roles terraform, ops each grant"),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("exactly one"), "{}", d.reason);
    assert!(d.proxmox.is_none() && d.roles.is_empty());
}

#[test]
fn without_an_identity_the_session_is_a_plain_tunnel() {
    let d = evaluate(&policy(), &request(&["viewer"], 8006, "s"), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(d.proxmox, None);
    // One role with an identity and one without: the one identity decides.
    let d = evaluate(&policy(), &request(&["viewer", "ops"], 8006, "s"), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(d.proxmox.unwrap().user, "pc-s");
}

#[test]
fn only_proxmox_api_sessions_carry_an_identity() {
    let d = evaluate(&policy(), &request(&["tf"], 22, "s"), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(d.service.as_deref(), Some("ssh"));
    assert_eq!(d.proxmox, None);
    // Nor do several identities deny an SSH session.
    let d = evaluate(&policy(), &request(&["tf", "ops"], 22, "a/b"), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
}

#[test]
fn the_grant_is_serialised_only_when_present() {
    let d = evaluate(&policy(), &request(&["viewer"], 8006, "s"), 0);
    let json = serde_json_like(&d);
    assert!(!json.contains("proxmox\""), "{json}");
    let d = evaluate(&policy(), &request(&["tf"], 8006, "s"), 0);
    assert!(serde_json_like(&d).contains("svc-terraform"));
}

/// The decision as TOML (the crate has no JSON dependency): enough to see what serde writes.
fn serde_json_like(d: &crate::Decision) -> String {
    toml::to_string(d).unwrap()
}

#[test]
fn explain_and_markdown_show_the_identity() {
    let d = evaluate(&policy(), &request(&["ops"], 8006, "f1e2"), 0);
    let text = explain::render(&d);
    assert!(
        text.contains(
            "proxmox: the token is pc-f1e2@<realm from the controller's config>, with PVEVMUser, PVEAuditor on /vms, /"
        ),
        "{text}"
    );
    let d = evaluate(&policy(), &request(&["viewer"], 8006, "s"), 0);
    assert!(explain::render(&d).contains("a plain tunnel, no token"));
    let d = evaluate(&policy(), &request(&["tf"], 22, "s"), 0);
    assert!(!explain::render(&d).contains("proxmox:"));
    let md = export::markdown(&policy());
    assert!(md.contains("## Proxmox API identities"), "{md}");
    assert!(
        md.contains("| **terraform** | svc-terraform with TerraformVM on /vms/4000, /pool/prod |"),
        "{md}"
    );
    assert!(
        md.contains("| **ops** | pc-{{subject}} with PVEVMUser, PVEAuditor on /vms, / |"),
        "{md}"
    );
    assert!(md.contains(
        "| TerraformVM | Datastore.AllocateSpace, VM.Allocate, VM.Audit, VM.Config.Disk | What the bpg provider needs for VMs |"
    ), "{md}");
}

#[test]
fn the_seeds_commented_example_is_valid_when_uncommented() {
    let seed = include_str!("../../../config/policy.toml");
    let mut in_block = false;
    let live: Vec<String> = seed
        .lines()
        .map(|line| {
            in_block = (in_block && line.starts_with("# ")) || line == "# [[proxmox_role]]";
            let example = in_block || line.starts_with("# proxmox = ");
            match line.strip_prefix("# ") {
                Some(code) if example => code.to_owned(),
                _ => line.to_owned(),
            }
        })
        .collect();
    let live = live.join("\n");
    assert_ne!(live, seed);
    let report = check(&live);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let policy = Policy::parse(&live).unwrap();
    assert_eq!(policy.proxmox_roles.len(), 1);
    let infra = policy
        .roles
        .iter()
        .find(|r| r.name == "infrastructure")
        .unwrap();
    assert_eq!(
        infra.proxmox.as_ref().unwrap().grant("f1e2").unwrap().user,
        "pc-f1e2"
    );
}
