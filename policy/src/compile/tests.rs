use crate::check;
use crate::Policy;

const SEED: &str = include_str!("../../../config/policy.toml");
const DEV: &str = include_str!("../../../config/policy-dev.toml");

fn errors(text: &str) -> Vec<(Option<usize>, String)> {
    check(text)
        .errors
        .into_iter()
        .map(|d| (d.line, d.message))
        .collect()
}

const MINIMAL: &str = r#"
[settings]
broker_zone = "B"

[[zone]]
name = "B"
cidrs = ["10.0.5.0/24"]

[[zone]]
name = "T"
cidrs = ["10.1.0.0/16"]

[[service]]
name = "ssh"
ports = [22]

[[cell]]
from = "B"
to = "T"
access = "allow"
services = ["ssh"]
"#;

#[test]
fn the_shipped_policies_are_valid_without_warnings() {
    for text in [SEED, DEV] {
        let report = check(text);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }
}

#[test]
fn hash_is_the_sha256_of_the_bytes() {
    let policy = Policy::parse(MINIMAL).unwrap();
    assert_eq!(policy.hash().len(), 64);
    let other = Policy::parse(&format!("{MINIMAL}\n# comment")).unwrap();
    assert_ne!(policy.hash(), other.hash());
    let empty = crate::compile::hex_sha256(b"");
    assert_eq!(
        empty,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn syntax_and_unknown_keys_report_lines() {
    let errs = errors("[settings]\nbroker_zone = \"B\"\nbogus = 1\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, Some(3), "{errs:?}");
    assert!(errs[0].1.contains("bogus"), "{errs:?}");
    let errs = errors("[settings\n");
    assert_eq!(errs[0].0, Some(1));
}

#[test]
fn unknown_zone_and_service_are_errors_with_lines() {
    let text = format!("{MINIMAL}\n[[cell]]\nfrom = \"T\"\nto = \"NOPE\"\naccess = \"allow\"\nservices = [\"telnet\"]\n");
    let errs = errors(&text);
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    assert!(
        errs.iter()
            .any(|(l, m)| m.contains("unknown zone `NOPE`") && *l == line_of("NOPE")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|(l, m)| m.contains("`telnet`") && *l == line_of("telnet")),
        "{errs:?}"
    );
}

#[test]
fn overlaps_and_duplicates_are_errors() {
    let text = MINIMAL.replace(
        "cidrs = [\"10.1.0.0/16\"]",
        "cidrs = [\"10.1.0.0/16\"]\nvmids = [\"100-200\"]\n\n[[zone]]\nname = \"U\"\ncidrs = [\"10.1.0.0/16\", \"10.2.0.1/16\"]\nvmids = [\"150-300\"]",
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(|(_, m)| m.contains("already in zone `T`")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|(_, m)| m.contains("overlaps 100-200")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|(_, m)| m.contains("host bits set")),
        "{errs:?}"
    );
    let twice = format!("{MINIMAL}\n[[cell]]\nfrom = \"B\"\nto = \"T\"\naccess = \"deny\"\n");
    assert!(errors(&twice)
        .iter()
        .any(|(l, m)| m.contains("defined twice") && l.is_some()));
}

#[test]
fn a_role_granting_what_the_matrix_forbids_is_an_error() {
    let text = format!(
        "{MINIMAL}\n[[service]]\nname = \"rdp\"\nports = [3389]\n\n[[role]]\nname = \"r\"\ngroups = [\"g\"]\n[[role.grant]]\nzones = [\"T\"]\nservices = [\"rdp\"]\n"
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(l, m)| m.contains("which the matrix forbids") && l.is_some()),
        "{errs:?}"
    );
}

#[test]
fn bad_templates_permissions_and_mfa_are_errors() {
    let text = format!(
        "{MINIMAL}\n[[role]]\nname = \"r\"\ngroups = [\"g\"]\npermissions = [\"root\"]\n[[role.grant]]\nzones = [\"T\"]\nservices = [\"ssh\"]\nlogins = [\"{{{{user}}}}\"]\n[role.constraints]\nmfa = {{ max_auth_age_secs = 60 }}\n"
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(_, m)| m.contains("unknown permission `root`")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|(_, m)| m.contains("unknown placeholder `user`")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|(_, m)| m.contains("constraints.mfa needs")),
        "{errs:?}"
    );
}

#[test]
fn rules_that_never_match_are_warnings() {
    let text = format!(
        "{MINIMAL}\n[[zone]]\nname = \"EMPTY\"\n\n[[cell]]\nfrom = \"T\"\nto = \"B\"\naccess = \"deny\"\nservices = [\"ssh\"]\n\n[[role]]\nname = \"nobody\"\n"
    );
    let report = check(&text);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let w: Vec<&str> = report.warnings.iter().map(|d| d.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("no address selector")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("never used")), "{w:?}");
    assert!(
        w.iter().any(|m| m.contains("never matches anyone")),
        "{w:?}"
    );
    assert!(report.warnings.iter().all(|d| d.line.is_some()));
}

#[test]
fn microsegment_flags_need_a_segmented_zone_to_itself() {
    let text = format!("{MINIMAL}\n[[cell]]\nfrom = \"T\"\nto = \"T\"\naccess = \"allow\"\nservices = [\"ssh\"]\nsame_microsegment = true\n");
    assert!(errors(&text)
        .iter()
        .any(|(_, m)| m.contains("needs `microsegments`")));
    let text = format!("{MINIMAL}\n[[cell]]\nfrom = \"T\"\nto = \"B\"\naccess = \"allow\"\nservices = [\"ssh\"]\nsame_microsegment = true\n");
    assert!(errors(&text)
        .iter()
        .any(|(_, m)| m.contains("a zone to itself")));
}

/// A role with SSH rights and modes at every level, on `MINIMAL`.
fn with_ssh(role_lines: &str) -> String {
    format!("{MINIMAL}\n[[role]]\nname = \"r\"\ngroups = [\"g\"]\n{role_lines}\n[[role.grant]]\nzones = [\"T\"]\nservices = [\"ssh\"]\n")
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[test]
fn ssh_rights_parse_with_the_defaults_for_unset_fields() {
    use crate::ssh::{SshMode, SshRights};
    let text = with_ssh("ssh = { forward_local = true, sftp = false }\nssh_mode = \"gateway\"");
    let policy = Policy::parse(&text).unwrap();
    let role = &policy.roles[0];
    assert_eq!(
        role.ssh,
        Some(SshRights {
            forward_local: true,
            sftp: false,
            ..SshRights::default()
        })
    );
    assert_eq!(role.ssh_mode, SshMode::Gateway);
    let plain = Policy::parse(&with_ssh("")).unwrap();
    assert_eq!(plain.roles[0].ssh, None);
    assert_eq!(plain.roles[0].ssh_mode, SshMode::Certificate);
    assert_eq!(plain.roles[0].grants[0].ssh_mode, SshMode::Certificate);
    // The table form works too.
    let table = format!("{}\n[role.ssh]\nagent = true\n", with_ssh(""));
    let role = &Policy::parse(&table).unwrap().roles[0];
    assert!(role.ssh.is_some_and(|r| r.agent && r.shell && !r.x11));
}

#[test]
fn an_unknown_ssh_right_is_refused_with_its_line() {
    let text = with_ssh("ssh = { shell = true, forward_everything = true }");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, line_of(&text, "forward_everything"), "{errs:?}");
    assert!(errs[0].1.contains("forward_everything"), "{errs:?}");
    let text = with_ssh("ssh = { shell = \"yes\" }");
    let errs = errors(&text);
    assert_eq!(errs[0].0, line_of(&text, "ssh = {"), "{errs:?}");
}

#[test]
fn a_bad_ssh_mode_is_refused_with_its_line_at_every_level() {
    let in_role = with_ssh("ssh_mode = \"tunnel\"");
    let in_grant = format!("{}ssh_mode = \"tunnel\"\n", with_ssh(""));
    let in_zone = with_ssh("").replace(
        "cidrs = [\"10.1.0.0/16\"]",
        "cidrs = [\"10.1.0.0/16\"]\nssh_mode = \"tunnel\"",
    );
    for text in [in_role, in_grant, in_zone] {
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, line_of(&text, "tunnel"), "{errs:?}");
        assert!(
            errs[0].1.contains("`tunnel`") && errs[0].1.contains("gateway"),
            "{errs:?}"
        );
    }
}
