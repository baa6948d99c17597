#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser as _;
use portcullis_proto::access::{AccessRequest, Approval, RequestState, Run};
use portcullis_proto::api::ErrorBody;

use super::*;
use crate::cli::http::ApiError;
use crate::cli::{Cli, Command};

fn parse(words: &[&str]) -> Result<RequestCommand, clap::Error> {
    let cli = Cli::try_parse_from(["portcullis", "request"].iter().chain(words))?;
    match cli.command {
        Command::Request(cmd) => Ok(cmd),
        other => panic!("{other:?}"),
    }
}

fn sample(state: RequestState) -> AccessRequest {
    AccessRequest {
        id: "ar_1".into(),
        user_id: "u_1".into(),
        username: "ana".into(),
        role: "web-oncall".into(),
        targets: vec!["web-01".into(), "web-02".into()],
        zone: None,
        state,
        reason: Some("INC-1".into()),
        break_glass: false,
        duration_secs: 7200,
        created_at: 1_700_000_000,
        approved_at: None,
        expires_at: 1_700_086_400,
        approvals_needed: 1,
        approvals: vec![Approval {
            user_id: "u_2".into(),
            username: "bob".into(),
            at: 1_700_000_100,
            reason: None,
        }],
        decided_by: None,
        decision_reason: None,
        run: None,
    }
}

#[test]
fn create_takes_targets_or_a_zone_and_a_duration() {
    let RequestCommand::Create(args) = parse(&[
        "create",
        "--role",
        "web-oncall",
        "--targets",
        "web-01,web-02",
        "--for",
        "2h",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(args.targets, ["web-01", "web-02"]);
    assert_eq!(args.duration, 7200);
    let RequestCommand::Create(args) = parse(&[
        "create",
        "--role",
        "r",
        "--zone",
        "WORKLOADS",
        "--for",
        "90s",
    ])
    .unwrap() else {
        panic!()
    };
    assert_eq!(args.zone.as_deref(), Some("WORKLOADS"));
    assert_eq!(args.duration, 90);
    let RequestCommand::Create(args) =
        parse(&["create", "--role", "r", "--zone", "Z", "--for", "30m"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(args.duration, 1800);

    // Neither, both, no duration, a bad one, break-glass without a reason: refused.
    assert!(parse(&["create", "--role", "r", "--for", "1h"]).is_err());
    assert!(parse(&[
        "create",
        "--role",
        "r",
        "--targets",
        "a",
        "--zone",
        "Z",
        "--for",
        "1h"
    ])
    .is_err());
    assert!(parse(&["create", "--role", "r", "--targets", "a"]).is_err());
    assert!(parse(&["create", "--role", "r", "--targets", "a", "--for", "0s"]).is_err());
    assert!(parse(&["create", "--role", "r", "--targets", "a", "--for", "soon"]).is_err());
    assert!(parse(&[
        "create",
        "--role",
        "r",
        "--targets",
        "a",
        "--for",
        "1h",
        "--break-glass"
    ])
    .is_err());
    assert!(parse(&[
        "create",
        "--role",
        "r",
        "--targets",
        "a",
        "--for",
        "1h",
        "--break-glass",
        "--reason",
        "x"
    ])
    .is_ok());
}

#[test]
fn list_states_and_decisions_parse() {
    let RequestCommand::List { state, all, .. } = parse(&["list", "--state", "pending"]).unwrap()
    else {
        panic!()
    };
    assert_eq!(state, Some(RequestState::Pending));
    assert!(!all);
    assert!(parse(&["list", "--state", "granted"]).is_err());
    assert!(parse(&["list", "--state", "pending", "--all"]).is_err());
    let RequestCommand::Deny(args) = parse(&["deny", "ar_1", "--reason", "no"]).unwrap() else {
        panic!()
    };
    assert_eq!(
        (args.id.as_str(), args.reason.as_deref()),
        ("ar_1", Some("no"))
    );
    assert!(parse(&["approve"]).is_err(), "an id is required");
}

#[test]
fn list_shows_open_requests_unless_asked() {
    use render::listed;
    assert!(listed(RequestState::Pending, None, false));
    assert!(listed(RequestState::Approved, None, false));
    assert!(!listed(RequestState::Expired, None, false));
    assert!(listed(RequestState::Expired, None, true));
    assert!(listed(
        RequestState::Denied,
        Some(RequestState::Denied),
        false
    ));
    assert!(!listed(
        RequestState::Pending,
        Some(RequestState::Denied),
        false
    ));
}

#[test]
fn the_table_shows_scope_state_and_approvals() {
    let mut zone = sample(RequestState::Approved);
    zone.id = "ar_2".into();
    zone.targets.clear();
    zone.zone = Some("WORKLOADS".into());
    zone.break_glass = true;
    let text = render::table(&[sample(RequestState::Pending), zone]).render();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID"), "{text}");
    assert!(lines[0].contains("APPROVALS"), "{text}");
    assert!(
        lines[1].contains("web-01,web-02") && lines[1].contains("1/2"),
        "{text}"
    );
    assert!(lines[1].contains("(to approve)"), "{text}");
    assert!(lines[2].contains("zone WORKLOADS"), "{text}");
    assert!(lines[2].contains("approved (break-glass)"), "{text}");
}

#[test]
fn show_lists_approvals_decision_and_run() {
    let mut request = sample(RequestState::Revoked);
    request.decided_by = Some("carol".into());
    request.decision_reason = Some("done".into());
    request.run = Some(Run {
        command: vec!["ansible-playbook".into(), "site.yml".into()],
        started_at: Some(1_700_000_200),
        finished_at: Some(1_700_000_300),
        exit_status: Some(2),
        outcome: Some("exited".into()),
        sessions: vec!["s_1".into(), "s_2".into()],
    });
    let text = render::fields(&request);
    for want in [
        "bob at 2023-11-14T22:15:00Z",
        "carol: done",
        "ansible-playbook site.yml",
        "exited (status 2)",
        "s_1, s_2",
        "INC-1",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // Escaped: a reason cannot move the cursor.
    request.reason = Some("x\u{1b}[2J".into());
    assert!(!render::fields(&request).contains('\u{1b}'));
}

#[test]
fn json_is_the_api_shape() {
    let value = serde_json::to_value(sample(RequestState::Pending)).unwrap();
    assert_eq!(value["state"], "pending");
    assert_eq!(value["approvals"][0]["username"], "bob");
}

#[test]
fn a_403_asking_for_a_fresh_login_says_how() {
    let err: anyhow::Error = ApiError {
        status: 403,
        body: ErrorBody {
            error: "forbidden".into(),
            message: "your login is 2h old: log in again: `portcullis login`".into(),
            field: None,
            step_up: None,
        },
    }
    .into();
    let err = api::log_in_again(err);
    let text = format!("{err:#}");
    assert!(
        text.starts_with("your login is 2h old: log in again"),
        "{text}"
    );
    assert!(text.contains("with MFA"), "{text}");
    assert_eq!(crate::cli::exit::code_of(&err), crate::cli::exit::FORBIDDEN);
    // Any other 403 is left alone.
    let other: anyhow::Error = ApiError {
        status: 403,
        body: ErrorBody {
            error: "forbidden".into(),
            message: "you do not approve web-oncall".into(),
            field: None,
            step_up: None,
        },
    }
    .into();
    assert_eq!(
        format!("{:#}", api::log_in_again(other)),
        "forbidden: you do not approve web-oncall"
    );
}
