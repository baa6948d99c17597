//! Recording settings from the file to the decision: parsing, diagnostics with lines, the
//! resolution through `evaluate`, `explain` and the Markdown export.

use std::net::IpAddr;

use crate::recording::{Fallback, Recording};
use crate::ssh::SshMode;
use crate::{check, evaluate, explain, export, Identity, Outcome, Policy, Request, TargetFacts};

/// The client and the broker in B; targets in T (no recording), R (recorded), I (recorded
/// with input) and F (recorded, may go on unrecorded). Role `plain` requires nothing,
/// `recorded` requires recording, `keystrokes` requires it with input, `waiver` says
/// `record = false`.
const POLICY: &str = r#"
[settings]
broker_zone = "B"

[[zone]]
name = "B"
cidrs = ["10.0.5.0/24"]

[[zone]]
name = "T"
cidrs = ["10.1.0.0/16"]

[[zone]]
name = "R"
cidrs = ["10.2.0.0/16"]
record = true

[[zone]]
name = "I"
cidrs = ["10.3.0.0/16"]
record = true
record_input = true

[[zone]]
name = "F"
cidrs = ["10.4.0.0/16"]
record = true
unrecorded_fallback = true

[[service]]
name = "ssh"
ports = [22]

[[cell]]
from = "B"
to = "T"
access = "allow"
services = ["ssh"]

[[cell]]
from = "B"
to = "R"
access = "allow"
services = ["ssh"]

[[cell]]
from = "B"
to = "I"
access = "allow"
services = ["ssh"]

[[cell]]
from = "B"
to = "F"
access = "allow"
services = ["ssh"]

[[role]]
name = "plain"
groups = ["plain"]
[[role.grant]]
zones = ["*"]
services = ["ssh"]

[[role]]
name = "recorded"
groups = ["recorded"]
record = true
[[role.grant]]
zones = ["T", "F"]
services = ["ssh"]

[[role]]
name = "keystrokes"
groups = ["keystrokes"]
record = true
record_input = true
[[role.grant]]
zones = ["T", "R"]
services = ["ssh"]
"#;

const WAIVER: &str = r#"
[[role]]
name = "waiver"
groups = ["waiver"]
record = false
[[role.grant]]
zones = ["R"]
services = ["ssh"]
"#;

fn request(groups: &[&str], target: &str) -> Request {
    Request {
        source: "10.0.5.7".parse::<IpAddr>().unwrap(),
        target: TargetFacts {
            ip: target.parse().unwrap(),
            port: 22,
            vmid: None,
            tags: vec![],
            pool: None,
            declared_zone: None,
            service: None,
        },
        identity: Identity {
            subject: "s-1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Identity::default()
        },
        via_broker: true,
    }
}

fn recording(policy: &Policy, groups: &[&str], target: &str) -> Recording {
    let d = evaluate(policy, &request(groups, target), 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    d.constraints.recording
}

fn errors(text: &str) -> Vec<(Option<usize>, String)> {
    check(text)
        .errors
        .into_iter()
        .map(|d| (d.line, d.message))
        .collect()
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

const NOT_REQUIRED: Recording = Recording {
    required: false,
    input: false,
    fallback: Fallback::CloseChannel,
};

#[test]
fn nothing_set_means_not_recorded() {
    let policy = Policy::parse(POLICY).unwrap();
    assert_eq!(recording(&policy, &["plain"], "10.1.0.9"), NOT_REQUIRED);
    let dev = Policy::parse(include_str!("../../../../config/policy-dev.toml")).unwrap();
    let mut req = request(&["admins"], "127.0.0.1");
    req.source = "127.0.0.1".parse().unwrap();
    req.target.port = 7777;
    let d = evaluate(&dev, &req, 0);
    assert_eq!(d.outcome, Outcome::Allow, "{d:?}");
    assert_eq!(d.constraints.recording, Recording::default());
}

#[test]
fn a_zone_requires_it_for_every_role_and_no_role_waives_it() {
    let text = format!("{POLICY}{WAIVER}");
    let policy = Policy::parse(&text).unwrap();
    let r = recording(&policy, &["plain"], "10.2.0.9");
    assert!(r.required && !r.input, "{r:?}");
    assert_eq!(r.fallback, Fallback::CloseChannel);
    let r = recording(&policy, &["waiver"], "10.2.0.9");
    assert!(r.required, "record = false waived the zone's requirement");
    let report = check(&text);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message.contains("waive") && w.line == line_of(&text, "record = false")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_granting_role_requires_it_and_other_roles_do_not_undo_it() {
    let policy = Policy::parse(POLICY).unwrap();
    let r = recording(&policy, &["recorded"], "10.1.0.9");
    assert!(r.required && !r.input, "{r:?}");
    let r = recording(&policy, &["plain", "recorded"], "10.1.0.9");
    assert!(
        r.required,
        "a second granting role waived the first's requirement"
    );
    // A role that does not grant the target adds nothing: `recorded` does not grant I.
    let d = evaluate(&policy, &request(&["plain", "recorded"], "10.3.0.9"), 0);
    assert_eq!(d.roles, vec!["plain"]);
}

#[test]
fn input_is_captured_only_where_a_requiring_place_asks() {
    let policy = Policy::parse(POLICY).unwrap();
    assert!(!recording(&policy, &["plain"], "10.2.0.9").input);
    assert!(!recording(&policy, &["recorded"], "10.1.0.9").input);
    assert!(
        recording(&policy, &["plain"], "10.3.0.9").input,
        "the zone asks"
    );
    assert!(
        recording(&policy, &["keystrokes"], "10.1.0.9").input,
        "the role asks"
    );
    assert!(recording(&policy, &["keystrokes", "plain"], "10.2.0.9").input);
}

#[test]
fn going_on_unrecorded_comes_only_from_the_zone() {
    let policy = Policy::parse(POLICY).unwrap();
    let r = recording(&policy, &["plain"], "10.4.0.9");
    assert!(r.required);
    assert_eq!(r.fallback, Fallback::ContinueUnrecorded);
    // A role that requires the recording itself keeps it hard, in the same zone.
    let r = recording(&policy, &["recorded"], "10.4.0.9");
    assert_eq!(r.fallback, Fallback::CloseChannel);
    assert_eq!(
        recording(&policy, &["recorded"], "10.1.0.9").fallback,
        Fallback::CloseChannel
    );
    let text = POLICY.replace(
        "name = \"recorded\"\ngroups = [\"recorded\"]\nrecord = true\n",
        "name = \"recorded\"\ngroups = [\"recorded\"]\nrecord = true\nunrecorded_fallback = true\n",
    );
    let role_line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("unrecorded_fallback"))
        .map(|(i, _)| i + 1)
        .last();
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(l, m)| m.contains("unrecorded_fallback is a zone setting") && *l == role_line),
        "{errs:?}"
    );
}

#[test]
fn a_required_recording_takes_ssh_through_the_gateway() {
    let policy = Policy::parse(POLICY).unwrap();
    let d = evaluate(&policy, &request(&["plain"], "10.1.0.9"), 0);
    assert_eq!(d.constraints.ssh.mode, SshMode::Certificate);
    let d = evaluate(&policy, &request(&["plain"], "10.2.0.9"), 0);
    assert_eq!(d.constraints.ssh.mode, SshMode::Gateway);
    let d = evaluate(&policy, &request(&["recorded"], "10.1.0.9"), 0);
    assert_eq!(d.constraints.ssh.mode, SshMode::Gateway);
}

#[test]
fn the_decision_round_trips_with_its_recording_and_old_ones_read_as_not_required() {
    let policy = Policy::parse(POLICY).unwrap();
    let d = evaluate(&policy, &request(&["keystrokes"], "10.2.0.9"), 0);
    let text = toml::to_string(&d.constraints).unwrap();
    let back: crate::Constraints = toml::from_str(&text).unwrap();
    assert_eq!(back, d.constraints);
    assert!(back.recording.required && back.recording.input);
    let old: crate::Constraints = toml::from_str("logins = []").unwrap();
    assert_eq!(old.recording, Recording::default());
}

#[test]
fn unknown_keys_and_bad_values_are_errors_with_their_line() {
    for (bad, needle) in [
        ("record = \"yes\"", "record = \"yes\""),
        ("recording = true", "recording = true"),
        ("record_input = 1", "record_input = 1"),
    ] {
        let text = POLICY.replace("record = true\nrecord_input = true\n", &format!("{bad}\n"));
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert_eq!(errs[0].0, line_of(&text, needle), "{bad}: {errs:?}");
    }
    // A grant has no recording setting.
    let text = POLICY.replace(
        "zones = [\"T\", \"F\"]\n",
        "zones = [\"T\", \"F\"]\nrecord = true\n",
    );
    let errs = errors(&text);
    assert!(errs.iter().any(|(_, m)| m.contains("record")), "{errs:?}");
}

#[test]
fn input_or_fallback_without_record_is_an_error() {
    let text = POLICY.replace(
        "cidrs = [\"10.1.0.0/16\"]\n",
        "cidrs = [\"10.1.0.0/16\"]\nrecord_input = true\nunrecorded_fallback = true\n",
    );
    let errs = errors(&text);
    assert!(
        errs.iter().any(
            |(l, m)| m.contains("record_input on zone `T` needs `record = true`")
                && *l == Some(line_of(POLICY, "10.1.0.0/16").unwrap() + 1)
        ),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|(l, m)| m.contains("unrecorded_fallback on zone `T`")
                && *l == Some(line_of(POLICY, "10.1.0.0/16").unwrap() + 2)),
        "{errs:?}"
    );
    let text = POLICY.replace(
        "groups = [\"plain\"]\n",
        "groups = [\"plain\"]\nrecord = false\nrecord_input = true\n",
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|(l, m)| m.contains("record_input on role `plain`")
                && *l == Some(line_of(POLICY, "groups = [\"plain\"]").unwrap() + 2)),
        "{errs:?}"
    );
}

#[test]
fn explain_and_the_markdown_export_show_it() {
    let policy = Policy::parse(POLICY).unwrap();
    let text = explain::render(&evaluate(&policy, &request(&["plain"], "10.4.0.9"), 0));
    assert!(
        text.contains("  recording: required (output only, typed input not captured); if it cannot be written, the session goes on unrecorded"),
        "{text}"
    );
    let text = explain::render(&evaluate(&policy, &request(&["plain"], "10.1.0.9"), 0));
    assert!(text.contains("  recording: not required\n"), "{text}");
    let md = export::markdown(&policy);
    assert!(
        md.contains("Sessions into **R**, **I**, **F** are recorded"),
        "{md}"
    );
    assert!(
        md.contains("recordings into **I** capture typed input"),
        "{md}"
    );
    assert!(md.contains("sessions into **F** go on unrecorded"), "{md}");
    assert!(md.contains("| sessions recorded |"), "{md}");
    assert!(
        md.contains("| sessions recorded, with typed input |"),
        "{md}"
    );
}
