#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_policy::diff::{Live, SessionImpact, UserImpact};
use portcullis_policy::Policy;

use super::render;

const OLD: &str = r#"
[settings]
broker_zone = "LOCAL"
[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]
[[service]]
name = "echo"
ports = "any"
[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]
[[role]]
name = "user"
groups = ["users"]
[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
"#;

#[test]
fn no_change_says_so_and_a_change_names_its_rule() {
    let old = Policy::parse(OLD).unwrap();
    let same = portcullis_policy::diff(&old, &old);
    let text = render("a -> b", &same, None);
    assert!(
        text.ends_with("No change: the two policies decide alike.\n"),
        "{text}"
    );

    let new = Policy::parse(&OLD.replace(
        "groups = [\"users\"]\n",
        "groups = [\"users\"]\n[role.constraints]\nmax_session_secs = 60\n",
    ))
    .unwrap();
    let d = portcullis_policy::diff(&old, &new);
    let text = render("a -> b", &d, None);
    assert!(
        text.contains("Decisions (0 now denied, 0 now allowed, 1 on other terms):"),
        "{text}"
    );
    assert!(
        text.contains(
            "  CHANGED role user: LOCAL -> LOCAL echo\n          max session: none -> 60s\n"
        ),
        "{text}"
    );
}

#[test]
fn the_live_part_lists_users_and_sessions_with_outside_text_escaped() {
    let old = Policy::parse(OLD).unwrap();
    let d = portcullis_policy::diff(&old, &old);
    let live = Live {
        users: vec![UserImpact {
            user: "uma".into(),
            groups: vec!["users".into()],
            changes: Vec::new(),
        }],
        targets: Vec::new(),
        sessions: vec![SessionImpact {
            session: "s_1".into(),
            user: "evil\u{1b}[31m".into(),
            target: "web".into(),
            reason: "the matrix has no cell".into(),
        }],
    };
    let text = render("the loaded policy -> new.toml", &d, Some(&live));
    assert!(
        text.contains("Users (with the groups of their last login):\n  uma (users):"),
        "{text}"
    );
    assert!(
        text.contains("Live sessions the reload would end:\n  s_1  evil"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a control character reached the terminal: {text:?}"
    );
    let quiet = render("x", &d, Some(&Live::default()));
    assert!(quiet.contains("No change"), "{quiet}");
}
