#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser as _;
use portcullis_proto::access::Run;

use super::*;
use crate::cli::{Cli, Command};

fn parse(words: &[&str]) -> Result<RunArgs, clap::Error> {
    let cli = Cli::try_parse_from(["portcullis", "run"].iter().chain(words))?;
    match cli.command {
        Command::Run(args) => Ok(args),
        other => panic!("{other:?}"),
    }
}

fn approved(targets: &[&str]) -> AccessRequest {
    AccessRequest {
        id: "ar_1".into(),
        user_id: "u_1".into(),
        username: "ci".into(),
        role: "web-oncall".into(),
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        zone: None,
        state: RequestState::Approved,
        reason: None,
        break_glass: false,
        duration_secs: 600,
        created_at: 1,
        approved_at: Some(2),
        expires_at: 602,
        approvals_needed: 0,
        approvals: Vec::new(),
        decided_by: None,
        decision_reason: None,
        run: None,
    }
}

#[test]
fn the_command_follows_the_double_dash_and_goes_into_the_request() {
    let args = parse(&[
        "--role",
        "web-oncall",
        "--targets",
        "web-01,web-02",
        "--for",
        "30m",
        "--",
        "ansible-playbook",
        "-i",
        "inv",
        "site.yml",
    ])
    .unwrap();
    assert_eq!(args.command, ["ansible-playbook", "-i", "inv", "site.yml"]);
    let body = create_body(&args).unwrap();
    assert_eq!(body.targets, ["web-01", "web-02"]);
    assert_eq!(body.duration_secs, 1800);
    assert_eq!(
        body.run_command.as_deref(),
        Some(&args.command[..]),
        "the approvers see the command line"
    );
    assert!(!body.break_glass);
}

#[test]
fn a_run_needs_a_command_and_a_request_or_its_terms() {
    assert!(
        parse(&["--role", "r", "--targets", "a", "--for", "1m"]).is_err(),
        "no command"
    );
    assert!(
        parse(&["--role", "r", "--for", "1m", "--", "true"]).is_err(),
        "no targets"
    );
    assert!(
        parse(&["--targets", "a", "--for", "1m", "--", "true"]).is_err(),
        "no role"
    );
    assert!(parse(&["--request", "ar_1", "--", "true"]).is_ok());
    assert!(parse(&["--request", "ar_1", "--role", "r", "--", "true"]).is_err());
    assert!(parse(&[
        "--role",
        "r",
        "--targets",
        "a",
        "--for",
        "soon",
        "--",
        "true"
    ])
    .is_err());
}

#[test]
fn a_run_takes_named_targets_of_a_request_not_yet_run() {
    assert_eq!(run_targets(&approved(&["echo"])).unwrap(), ["echo"]);
    let mut zone = approved(&[]);
    zone.zone = Some("WORKLOADS".into());
    let err = run_targets(&zone).unwrap_err().to_string();
    assert!(err.contains("named targets"), "{err}");
    let mut ran = approved(&["echo"]);
    ran.run = Some(Run {
        command: vec!["true".into()],
        started_at: Some(5),
        finished_at: None,
        exit_status: None,
        outcome: None,
        sessions: Vec::new(),
    });
    assert!(run_targets(&ran)
        .unwrap_err()
        .to_string()
        .contains("one run"));
}

#[test]
fn the_keepalive_interval_defaults_to_30_s_and_is_bounded() {
    let base = ["--role", "r", "--targets", "a", "--for", "10m"];
    let with = |extra: &[&str]| {
        let mut words = base.to_vec();
        words.extend_from_slice(extra);
        words.extend_from_slice(&["--", "true"]);
        parse(&words)
    };
    assert_eq!(with(&[]).unwrap().keepalive, 30);
    assert_eq!(with(&["--keepalive", "1s"]).unwrap().keepalive, 1);
    assert_eq!(with(&["--keepalive", "2m"]).unwrap().keepalive, 120);
    for bad in ["0s", "10m", "soon"] {
        assert!(with(&["--keepalive", bad]).is_err(), "{bad}");
    }
}

#[test]
fn break_glass_needs_a_reason_and_goes_into_the_request() {
    let base = [
        "--role",
        "r",
        "--targets",
        "a",
        "--for",
        "10m",
        "--break-glass",
    ];
    let mut without = base.to_vec();
    without.extend_from_slice(&["--", "true"]);
    assert!(parse(&without).is_err(), "a reason is required");
    let mut with = base.to_vec();
    with.extend_from_slice(&["--reason", "site down", "--", "true"]);
    let args = parse(&with).unwrap();
    let body = super::create_body(&args).unwrap();
    assert!(body.break_glass);
    assert_eq!(body.reason.as_deref(), Some("site down"));
    assert!(parse(&["--request", "ar_1", "--break-glass", "--", "true"]).is_err());
}
