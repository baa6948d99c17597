//! The admission's decisions, one test per refusal (its code and its reason, word for word: a
//! client and its user read them) and per go-ahead, on facts made by hand and a
//! [`ManualClock`].

use std::time::Duration;

use portcullis_proto::clock::{Clock as _, ManualClock};
use portcullis_proto::grant::{GrantClaims, GrantError, GRANT_ISSUER};
use portcullis_proto::link::{EndReason, LinkError, Response, Trouble};
use portcullis_proto::proxy::{ClientHello, RefusalCode};
use portcullis_proto::PROTOCOL_VERSION;

use super::check::{self, Counted, Facts, Permit};
use crate::proxy::handshake::Refusal;
use crate::table::Admission;

const CLIENT_KEY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_KEY: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
const ADMIT_GRACE: Duration = Duration::from_secs(5);

/// A grant of session `s_1` from 192.0.2.7 with [`CLIENT_KEY`] to 198.51.100.9:22.
fn claims() -> GrantClaims {
    GrantClaims {
        iss: GRANT_ISSUER.to_owned(),
        aud: GrantClaims::audience_for("w_1"),
        sub: "u_1".to_owned(),
        sid: "s_1".to_owned(),
        tid: "t_1".to_owned(),
        ckh: CLIENT_KEY.to_owned(),
        src: "192.0.2.7".to_owned(),
        dst: "198.51.100.9:22".to_owned(),
        lim: 2,
        iat: 1_000,
        exp: 1_300,
        gw: None,
        pve: None,
    }
}

/// Facts under which [`claims`] are admitted: the grant's client, with the grant's key, a live
/// session, a controller heard just now on `clock`.
fn facts(clock: &ManualClock) -> Facts<'static> {
    Facts {
        peer: [192, 0, 2, 7].into(),
        client_key: Some(CLIENT_KEY),
        session_ended: None,
        controller_heard: Some(clock.instant()),
        controller_trouble: None,
        admit_grace: ADMIT_GRACE,
    }
}

fn hello(protocol_version: u32) -> ClientHello {
    ClientHello {
        protocol_version,
        grant: "a.b.c".to_owned(),
    }
}

fn refusal(code: RefusalCode, reason: &str) -> Refusal {
    Refusal::new(code, reason)
}

#[test]
fn a_hello_of_this_release_on_a_running_worker_goes_on_to_the_grant() {
    assert_eq!(check::check_hello(&hello(PROTOCOL_VERSION), false), Ok(()));
}

#[test]
fn a_hello_of_another_protocol_version_is_refused_unsupported_version_before_draining() {
    let other = PROTOCOL_VERSION + 1;
    let expected = refusal(
        RefusalCode::UnsupportedVersion,
        &format!(
            "protocol version {other} is not supported; this worker speaks version \
             {PROTOCOL_VERSION}: use a client of the same release"
        ),
    );
    assert_eq!(
        check::check_hello(&hello(other), false),
        Err(expected.clone())
    );
    assert_eq!(check::check_hello(&hello(other), true), Err(expected));
}

#[test]
fn a_draining_worker_refuses_draining() {
    assert_eq!(
        check::check_hello(&hello(PROTOCOL_VERSION), true),
        Err(refusal(
            RefusalCode::Draining,
            "the worker is shutting down; retry to reach another worker"
        ))
    );
}

#[test]
fn an_expired_grant_is_refused_expired_grant() {
    assert_eq!(
        check::refuse_grant(GrantError::Expired),
        refusal(RefusalCode::ExpiredGrant, "the grant has expired")
    );
}

#[test]
fn a_grant_for_another_worker_is_refused_wrong_worker() {
    assert_eq!(
        check::refuse_grant(GrantError::WrongAudience),
        refusal(RefusalCode::WrongWorker, "the grant is for another worker")
    );
}

#[test]
fn a_grant_that_does_not_verify_is_refused_invalid_grant_in_the_verifiers_words() {
    let errors = [
        GrantError::Malformed("not a JWS".to_owned()),
        GrantError::WrongAlgorithm,
        GrantError::MissingKeyId,
        GrantError::UnknownKey("k_9".to_owned()),
        GrantError::BadSignature,
        GrantError::WrongIssuer,
        GrantError::Signing("no key".to_owned()),
    ];
    for error in errors {
        let reason = error.to_string();
        assert_eq!(
            check::refuse_grant(error),
            refusal(RefusalCode::InvalidGrant, &reason)
        );
    }
}

#[test]
fn a_connection_whose_facts_all_hold_is_permitted_to_the_grants_endpoint() {
    let clock = ManualClock::at_unix(1_000);
    assert_eq!(
        check::check(&claims(), &facts(&clock), clock.instant()),
        Ok(Permit {
            endpoint: "198.51.100.9:22".parse().unwrap()
        })
    );
}

#[test]
fn a_client_from_another_address_is_refused_wrong_source() {
    let clock = ManualClock::at_unix(1_000);
    let facts = Facts {
        peer: [192, 0, 2, 8].into(),
        ..facts(&clock)
    };
    assert_eq!(
        check::check(&claims(), &facts, clock.instant()),
        Err(refusal(
            RefusalCode::WrongSource,
            "the grant is for source 192.0.2.7, not 192.0.2.8"
        ))
    );
}

#[test]
fn a_client_with_another_key_or_none_is_refused_wrong_client_key() {
    let clock = ManualClock::at_unix(1_000);
    for client_key in [Some(OTHER_KEY), None] {
        let facts = Facts {
            client_key,
            ..facts(&clock)
        };
        assert_eq!(
            check::check(&claims(), &facts, clock.instant()),
            Err(refusal(
                RefusalCode::WrongClientKey,
                "the TLS client key is not the one the grant names"
            )),
            "client key {client_key:?}"
        );
    }
}

#[test]
fn a_connection_of_an_ended_session_is_refused_session_ended_with_why() {
    let clock = ManualClock::at_unix(1_000);
    let facts = Facts {
        session_ended: Some(EndReason::Canceled),
        ..facts(&clock)
    };
    assert_eq!(
        check::check(&claims(), &facts, clock.instant()),
        Err(refusal(
            RefusalCode::SessionEnded,
            "the session has ended (canceled)"
        ))
    );
}

#[test]
fn without_a_controller_heard_within_the_admit_grace_a_connection_is_refused_controller_unreachable(
) {
    let unreachable = refusal(
        RefusalCode::ControllerUnreachable,
        "no controller has been heard recently; no new connections are admitted",
    );
    let clock = ManualClock::at_unix(1_000);
    let never = Facts {
        controller_heard: None,
        ..facts(&clock)
    };
    assert_eq!(
        check::check(&claims(), &never, clock.instant()),
        Err(unreachable.clone())
    );

    let heard = facts(&clock);
    clock.advance(ADMIT_GRACE - Duration::from_millis(1));
    assert!(check::check(&claims(), &heard, clock.instant()).is_ok());
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        check::check(&claims(), &heard, clock.instant()),
        Err(unreachable)
    );
}

#[test]
fn a_controller_that_answers_but_cannot_reach_its_database_is_named_in_the_refusal() {
    let clock = ManualClock::at_unix(1_000);
    let heard = clock.instant();
    clock.advance(ADMIT_GRACE);
    let troubled = Facts {
        controller_heard: Some(heard),
        controller_trouble: Some((clock.instant(), Trouble::StoreUnreachable)),
        ..facts(&clock)
    };
    assert_eq!(
        check::check(&claims(), &troubled, clock.instant()),
        Err(refusal(
            RefusalCode::ControllerUnreachable,
            "the controller is up but cannot reach its database; no new connections are \
             admitted until it can"
        ))
    );
    // A trouble older than the grace says nothing about now: no controller was heard.
    clock.advance(ADMIT_GRACE);
    assert_eq!(
        check::check(&claims(), &troubled, clock.instant()),
        Err(refusal(
            RefusalCode::ControllerUnreachable,
            "no controller has been heard recently; no new connections are admitted"
        ))
    );
}

#[test]
fn a_grant_naming_its_endpoint_other_than_by_ip_and_port_is_refused_invalid_grant() {
    let clock = ManualClock::at_unix(1_000);
    for dst in ["db.internal:5432", "198.51.100.9", "[2001:db8::1]"] {
        let claims = GrantClaims {
            dst: dst.to_owned(),
            ..claims()
        };
        assert_eq!(
            check::check(&claims, &facts(&clock), clock.instant()),
            Err(refusal(
                RefusalCode::InvalidGrant,
                "the grant's endpoint is not IP:PORT"
            )),
            "endpoint {dst}"
        );
    }
}

#[test]
fn the_checks_refuse_with_the_first_that_fails_in_their_order() {
    let clock = ManualClock::at_unix(1_000);
    let claims = GrantClaims {
        dst: "db.internal:5432".to_owned(),
        ..claims()
    };
    let mut facts = Facts {
        peer: [192, 0, 2, 8].into(),
        client_key: None,
        session_ended: Some(EndReason::Expired),
        controller_heard: None,
        controller_trouble: None,
        admit_grace: ADMIT_GRACE,
    };
    let code = |facts: &Facts<'_>| {
        check::check(&claims, facts, clock.instant())
            .map_err(|r| r.code)
            .err()
    };
    assert_eq!(code(&facts), Some(RefusalCode::WrongSource));
    facts.peer = [192, 0, 2, 7].into();
    assert_eq!(code(&facts), Some(RefusalCode::WrongClientKey));
    facts.client_key = Some(CLIENT_KEY);
    assert_eq!(code(&facts), Some(RefusalCode::SessionEnded));
    facts.session_ended = None;
    assert_eq!(code(&facts), Some(RefusalCode::ControllerUnreachable));
    facts.controller_heard = Some(clock.instant());
    assert_eq!(code(&facts), Some(RefusalCode::InvalidGrant));
}

#[test]
fn a_sessions_first_connection_here_asks_the_controller_and_a_later_one_is_admitted() {
    assert_eq!(check::count(Admission::First), Ok(Counted::AskController));
    assert_eq!(check::count(Admission::Local), Ok(Counted::Admit));
}

#[test]
fn a_session_at_its_connection_limit_is_refused_connection_limit() {
    assert_eq!(
        check::count(Admission::LimitReached),
        Err(refusal(
            RefusalCode::ConnectionLimit,
            "the session's connection limit is reached"
        ))
    );
}

#[test]
fn a_session_that_ended_before_it_was_counted_is_refused_session_ended_with_why() {
    assert_eq!(
        check::count(Admission::Ended(EndReason::WorkerLost)),
        Err(refusal(
            RefusalCode::SessionEnded,
            "the session has ended (worker_lost)"
        ))
    );
}

#[test]
fn a_first_connection_the_controller_admits_is_admitted() {
    assert_eq!(check::answer(Ok::<_, String>(Response::Admitted)), Ok(()));
}

#[test]
fn a_first_connection_the_controller_refuses_is_refused_session_ended_in_its_words() {
    let reply = Response::Refused {
        reason: "the session has ended (canceled)".to_owned(),
    };
    assert_eq!(
        check::answer(Ok::<_, String>(reply)),
        Err(refusal(
            RefusalCode::SessionEnded,
            "the session has ended (canceled)"
        ))
    );
}

#[test]
fn an_answer_the_controller_should_not_give_is_refused_controller_unreachable() {
    assert_eq!(
        check::answer(Ok::<_, String>(Response::Ok)),
        Err(refusal(
            RefusalCode::ControllerUnreachable,
            "unexpected controller answer: Ok"
        ))
    );
}

#[test]
fn no_answer_from_the_controller_is_refused_controller_unreachable_in_the_links_words() {
    assert_eq!(
        check::answer(Err::<Response, _>("the controller did not answer in time")),
        Err(refusal(
            RefusalCode::ControllerUnreachable,
            "the controller did not answer in time"
        ))
    );
}

#[test]
fn only_the_controllers_own_refusal_of_a_first_connection_is_left_to_the_controller_to_audit() {
    let refused = Response::Refused {
        reason: "the session has ended (canceled)".to_owned(),
    };
    let by_controller = check::answer(Ok::<_, String>(refused)).unwrap_err();
    assert!(check::decided_by_controller(&by_controller));
    let unanswered = check::answer(Err::<Response, _>("timed out")).unwrap_err();
    assert!(!check::decided_by_controller(&unanswered));
    let odd = check::answer(Ok::<_, String>(Response::Ok)).unwrap_err();
    assert!(!check::decided_by_controller(&odd));
}

#[test]
fn an_admission_lost_with_its_link_is_asked_again_and_nothing_else_is() {
    // Lost with the link: no controller decided it.
    assert!(check::ask_again(&LinkError::Closed));
    assert!(check::ask_again(&LinkError::NoLink));
    // Decided, or maybe still being decided by a controller that is slow: final.
    let final_ones = [
        LinkError::TimedOut {
            after: Duration::from_secs(5),
        },
        LinkError::Refused {
            message: "the controller's store failed this request; retry".to_owned(),
        },
        LinkError::FrameTooLarge { len: 1 << 30 },
        LinkError::Encode {
            reason: "bug".to_owned(),
        },
    ];
    for error in &final_ones {
        assert!(!check::ask_again(error), "{error:?}");
    }
}
