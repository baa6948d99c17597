use portcullis_proto::users::LocalLoginStep::{NewPassword, TotpCode, TotpEnrolment};

use super::*;

const NOW: i64 = 1_800_000_000;

fn enrolled() -> UserFacts {
    UserFacts {
        must_change_password: false,
        password_expires_at: None,
        totp_enrolled: true,
        disabled: false,
    }
}

fn fresh() -> UserFacts {
    UserFacts {
        must_change_password: true,
        totp_enrolled: false,
        ..enrolled()
    }
}

fn bootstrap() -> UserFacts {
    UserFacts {
        password_expires_at: Some(NOW + 3600),
        ..fresh()
    }
}

fn given(new_password: bool, totp_enrolment: bool, second: Option<SecondFactor>) -> Given {
    Given {
        new_password,
        totp_enrolment,
        second_factor: second,
    }
}

#[test]
fn a_one_time_password_must_change_and_totp_is_enrolled_first() {
    assert_eq!(
        plan(&fresh(), NOW, false, Given::default()),
        Plan::Continue(vec![NewPassword, TotpEnrolment])
    );
    assert_eq!(
        plan(&fresh(), NOW, false, given(true, false, None)),
        Plan::Continue(vec![TotpEnrolment])
    );
    assert_eq!(
        plan(&fresh(), NOW, false, given(false, true, None)),
        Plan::Continue(vec![NewPassword])
    );
    let Plan::Commit(commit) = plan(&fresh(), NOW, false, given(true, true, None)) else {
        panic!("everything was given");
    };
    assert_eq!(
        commit,
        Commit {
            set_password: true,
            enrol_totp: true,
            second_factor: None
        }
    );
    assert_eq!(commit.amr(), ["pwd", "otp", "mfa"]);
}

#[test]
fn password_only_skips_enrolment_but_never_for_the_bootstrap_user() {
    let plain = UserFacts {
        must_change_password: false,
        ..fresh()
    };
    let Plan::Commit(commit) = plan(&plain, NOW, true, Given::default()) else {
        panic!("a password alone is enough when allowed");
    };
    assert_eq!(commit.amr(), ["pwd"]);
    assert_eq!(
        plan(&plain, NOW, false, Given::default()),
        Plan::Continue(vec![TotpEnrolment])
    );
    assert_eq!(
        plan(&fresh(), NOW, true, Given::default()),
        Plan::Continue(vec![NewPassword])
    );
    assert_eq!(
        plan(&bootstrap(), NOW, true, given(true, false, None)),
        Plan::Continue(vec![TotpEnrolment])
    );
    // Enrolling is still possible when optional.
    let Plan::Commit(commit) = plan(&plain, NOW, true, given(false, true, None)) else {
        panic!("an offered enrolment is taken");
    };
    assert!(commit.enrol_totp);
}

#[test]
fn an_enrolled_user_gives_a_totp_or_a_recovery_code() {
    assert_eq!(
        plan(&enrolled(), NOW, false, Given::default()),
        Plan::Continue(vec![TotpCode])
    );
    assert_eq!(
        plan(&enrolled(), NOW, true, Given::default()),
        Plan::Continue(vec![TotpCode]),
        "allow_password_only does not skip an enrolled user's code"
    );
    for second in [SecondFactor::Totp, SecondFactor::Recovery] {
        let Plan::Commit(commit) = plan(&enrolled(), NOW, false, given(false, false, Some(second)))
        else {
            panic!("a code is enough");
        };
        assert_eq!(commit.second_factor, Some(second));
        assert!(!commit.set_password && !commit.enrol_totp);
        assert_eq!(commit.amr(), ["pwd", "otp", "mfa"]);
    }
    // An enrolled user whose password must change gives both.
    let both = UserFacts {
        must_change_password: true,
        ..enrolled()
    };
    assert_eq!(
        plan(&both, NOW, false, Given::default()),
        Plan::Continue(vec![NewPassword, TotpCode])
    );
}

#[test]
fn an_expired_password_and_a_disabled_user_are_refused() {
    let expired = UserFacts {
        password_expires_at: Some(NOW - 1),
        ..bootstrap()
    };
    assert_eq!(
        plan(&expired, NOW, false, given(true, true, None)),
        Plan::Refuse(Refusal::Expired { bootstrap: true })
    );
    let at_the_second = UserFacts {
        password_expires_at: Some(NOW),
        ..bootstrap()
    };
    assert!(matches!(
        plan(&at_the_second, NOW, false, Given::default()),
        Plan::Continue(_)
    ));
    let disabled = UserFacts {
        disabled: true,
        ..enrolled()
    };
    assert_eq!(
        plan(
            &disabled,
            NOW,
            false,
            given(false, false, Some(SecondFactor::Totp))
        ),
        Plan::Refuse(Refusal::Disabled)
    );
}

#[test]
fn the_message_names_each_missing_piece() {
    let text = message(&[NewPassword, TotpEnrolment], 14);
    assert!(text.contains("at least 14 characters"), "{text}");
    assert!(text.contains("authenticator app"), "{text}");
}
